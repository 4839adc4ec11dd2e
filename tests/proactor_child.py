"""An echo proactor under a low descriptor limit, for the fd-exhaustion test.

Run as `python -m tests.proactor_child LIMIT LOGFILE` from the repository root. It lowers
RLIMIT_NOFILE to LIMIT before anything else opens a file, prints the port it listens on,
serves until its stdin is closed, then stops the proactor and exits 0 (1 if a thread was
left). The log goes to LOGFILE, one line per record, starting with the time it was made.
"""

from __future__ import annotations

import resource
import sys


def main() -> int:
    limit, logfile = int(sys.argv[1]), sys.argv[2]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    import logging
    import socket

    from section_b.proactor import Address, start_proactor

    def echo(conn: socket.socket, addr: Address) -> None:
        while data := conn.recv(4096):
            conn.sendall(data)

    logging.basicConfig(filename=logfile, format="%(created).3f %(levelname)s %(message)s")
    listener = socket.create_server(("127.0.0.1", 0))
    with start_proactor(listener, echo) as proactor:
        print(listener.getsockname()[1], flush=True)
        sys.stdin.read()
        return 1 if proactor.stop() else 0


if __name__ == "__main__":
    sys.exit(main())
