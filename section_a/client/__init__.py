"""Stage A's terminal client: exactly two threads, the keyboard and the receiver.

`app.py` is the client (its threads, its command line); `console.py` where the
user's lines come from and output goes (readline, the prompt redrawn under each
line); `painter.py` how a server line is shown (sanitised, then coloured). Run it:
python -m section_a.client --host 127.0.0.1 --port 9034
"""
