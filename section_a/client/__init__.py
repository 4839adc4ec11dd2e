"""Stage A's terminal client: exactly two threads, the keyboard and the receiver.

`app.py` is the keyboard thread and who starts and joins the receiver;
`receiver.py` the receiver thread and the inbox it hands lines over in;
`console.py` where the user's lines come from and output goes (readline, the prompt
redrawn under each line); `painter.py` how a server line is shown (sanitised, then
coloured); `command_line.py` the options and exit statuses. Run it:
python -m section_a.client --host 127.0.0.1 --port 9034
"""

from section_a.client.app import PROMPT
from section_a.client.receiver import MAX_INCOMING

__all__ = ["MAX_INCOMING", "PROMPT"]  # public for tools that drive the client (the demo)
