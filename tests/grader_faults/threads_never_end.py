"""A relay with one fault: a client's thread never ends once its client has left.

It removes the client and closes its socket, then waits for a goodbye that nobody
ever sends: a thread per client, made when it connects, but never ended. It
waits, so it costs no CPU; the grader's `threads_end` check counts it. (Like every
relay here it writes to all under one lock: it would also freeze on a stuck
reader, which its test does not check.)
"""

import socket
import sys
import threading

clients: list[socket.socket] = []
lock = threading.Lock()
goodbye = threading.Event()  # never set


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
            break
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
    with lock:
        clients.remove(conn)
    conn.close()
    goodbye.wait()  # the fault: the thread outlives its client


def main() -> None:
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
