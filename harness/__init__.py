"""Driving a chat server from outside, for the tests and the bench alike.

`load.py` is the load generator (many clients in one thread, and what they measured);
`proc.py` reads a process from /proc. Nothing here imports pytest or a server's code
beyond `section_a.serving.raise_fd_limit`.
"""
