"""A relay with one fault: room for ten clients, and the eleventh is never served.

A fixed table of MAX_CLIENTS places, as in C; a newcomer past it is accepted and
left hanging, its socket never read nor written. The grader's `many_clients` check
finds the 99 others not all reached. (It writes to all under one lock: it would also
freeze on a stuck reader, which its test does not check.)
"""

import socket
import sys
import threading

MAX_CLIENTS = 10
clients: list[socket.socket] = []
lock = threading.Lock()


def serve(conn: socket.socket) -> None:
    with lock:
        if len(clients) == MAX_CLIENTS:
            return  # the fault: no place, and no word to the newcomer either
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


def main() -> None:
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
