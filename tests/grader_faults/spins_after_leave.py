"""A relay with one fault: a client's thread spins once its client has left.

`recv()` returns b"" at the end of the stream, at once and for ever after; this
thread takes that for "nothing yet" and asks again, burning a core per departed
client. The grader's `no_busy_wait` check measures the CPU after the clients left.
(Like every relay here it writes to all under one lock: it would also freeze on a
stuck reader, which its test does not check.)
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
            continue  # the fault: the end of the stream read as "nothing yet"
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
