"""Driving a chat server from outside, for the tests and the bench alike.

`load.py` is the load generator: a `Swarm` of clients (`clients.py`) in one selector
loop (`loop.py`), sending and checking load lines (`lines.py`, pure code), with its
verdicts in `results.py`; `sockets.py` holds single sockets a test keeps itself, and
`proc.py` reads a process from /proc. Nothing here imports pytest or a server's code.
"""
