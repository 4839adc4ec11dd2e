"""A relay with one fault: one thread for everyone, watching every socket with select().

It relays correctly, but it is the design the assignment rules out: no thread per
client. The grader's `thread_per_client` check counts 1 thread however many connect.
(It writes with a blocking `sendall()`: it would also freeze on a stuck reader,
which its test does not check.)
"""

import select
import socket
import sys


def main() -> None:
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    buffers: dict[socket.socket, bytes] = {}
    while True:
        ready, _, _ = select.select([listener, *buffers], [], [])
        for sock in ready:
            if sock is listener:
                conn, _ = listener.accept()
                buffers[conn] = b""
                continue
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                del buffers[sock]
                sock.close()
                continue
            *lines, buffers[sock] = (buffers[sock] + data).split(b"\n")
            for line in lines:
                for other in buffers:
                    if other is not sock:
                        try:
                            other.sendall(b"> " + line + b"\n")
                        except OSError:
                            pass


if __name__ == "__main__":
    main()
