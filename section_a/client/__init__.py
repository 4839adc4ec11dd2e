"""Stage A's terminal client: two threads, each blocking in its own call, one lock on the terminal.

`app.py` is the two threads and how they start, wake and end each other (its
docstring draws them); `terminal.py` the terminal they share: plain lines, or our
own line editor; `painter.py` how a server line is shown (sanitised, then coloured);
`command_line.py` the options and exit statuses. Run it:
python -m section_a.client --host 127.0.0.1 --port 9034
"""

from section_a.client.app import MAX_INCOMING
from section_a.client.terminal import PROMPT

__all__ = ["MAX_INCOMING", "PROMPT"]  # public for tools that drive the client (the demo)
