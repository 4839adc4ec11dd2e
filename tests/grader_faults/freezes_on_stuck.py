"""A relay with one fault: one client that stops reading freezes the whole room.

Each line is written to every other client with a blocking `sendall()`, all under
one lock. Once a client stops reading, the kernel's buffers towards it fill, its
`sendall()` blocks for ever, holding the lock, and nobody hears anybody again.
The grader's `stuck_reader` check finds the lines that stop arriving.
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
            with lock:  # the fault: a blocking write to each, under the one lock
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
