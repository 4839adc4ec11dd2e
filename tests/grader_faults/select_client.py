"""A chat client with one fault: one thread, watching the keyboard and the socket with select().

It chats correctly, ends at the end of its input and when the server goes; but it is
the design the assignment rules out for the client too: not a keyboard thread and a
receiver thread, but one thread multiplexing both. The grader's `client_two_threads`
check counts 1.

Run: python select_client.py HOST PORT
"""

import os
import select
import socket
import sys


def main() -> int:
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    while True:
        ready, _, _ = select.select([sys.stdin.fileno(), sock], [], [])
        if sock in ready:
            data = sock.recv(4096)
            if not data:
                return 3
            os.write(sys.stdout.fileno(), data)
        if sys.stdin.fileno() in ready:
            typed = os.read(sys.stdin.fileno(), 4096)
            if not typed:
                return 0
            sock.sendall(typed)


if __name__ == "__main__":
    sys.exit(main())
