"""A relay with one fault: a client that leaves is never removed, nor its socket closed.

Its thread ends, but the socket stays in the list: every later line is written to
it (and fails, quietly), and each departed client keeps a descriptor for ever.
The grader's `disconnects` and `churn` checks find the descriptors that never come
back. (Like every relay here it writes to all under one lock: it would also freeze
on a stuck reader, which its test does not check.)
"""

import socket
import sys
import threading

clients: list[socket.socket] = []
lock = threading.Lock()


def serve(conn: socket.socket) -> None:
    with lock:
        clients.append(conn)
    buffer = b""
    while True:
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            return  # the fault: not removed from `clients`, not closed
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            with lock:
                for other in clients:
                    if other is not conn:
                        try:
                            other.sendall(b"> " + line + b"\n")
                        except OSError:
                            pass


def main() -> None:
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
