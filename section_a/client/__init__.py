"""Stage A's terminal client: exactly two threads, the keyboard and the receiver.

`app.py` is the client (its threads, its command line); `display.py` what it shows
(readline, colours, the prompt redrawn under each line). Run it:
python -m section_a.client --host 127.0.0.1 --port 9034
"""
