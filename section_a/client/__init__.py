"""Stage A's terminal client: two threads, each blocking in its own call, one lock on the terminal.

`app.py` is the two threads, how they start, wake and end each other (its docstring draws
them), the options and the exit statuses; `terminal.py` the terminal they share: our own line
editor, or plain lines; `painter.py` how a server line is shown (sanitised, then coloured).
Run it: python -m section_a.client --port 9034
"""

from section_a.client.app import MAX_INCOMING
from section_a.client.terminal import PROMPT

__all__ = ["MAX_INCOMING", "PROMPT"]  # public for tools that drive the client (the demo)
