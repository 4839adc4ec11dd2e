"""A relay with one fault: it drops the last byte of every line.

It strips the line ending with one slice too many (`line[:-2]`, as if every line
ended in \\r\\n), so "hello" reaches the others as "hell". The grader's `relays`
check finds no line arriving whole. (It writes to all under one lock: it would also
freeze on a stuck reader, which its test does not check.)
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
            break
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            text = (line + b"\n")[:-2]  # the fault: one byte too many cut off
            with lock:
                for other in clients:
                    if other is not conn:
                        try:
                            other.sendall(b"> " + text + b"\n")
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
