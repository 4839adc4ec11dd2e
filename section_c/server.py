"""Stage C: the chat server of stage A, with its accept loop replaced by the proactor.

    main thread            proactor's accept thread       one thread per client
    -----------            ------------------------       ---------------------
    start_proactor() -->   accept() --conn--> Thread(serve_client) --> recv() -> protocol
    sigwait() for the stop                                                -> room -> sockets
       |  SIGINT/SIGTERM: the room is told to close (wakes every recv), then
       |  stop_proactor() shuts the listener down (wakes accept), wakes and joins every thread

Everything a client sees is stage A's: the same protocol, room, outboxes and
session, imported from section_a, and the same start and stop (serving.py). What
changed is who accepts and who owns the threads: stage A's main thread ran the
accept loop and kept the client threads; here `start_proactor(listener, handler)`
does both, and the main thread takes the signal to stop itself (stage A's signal
thread's job: sigwait(), see serving.py). What an accept
error means is the same in both: stage B's one policy (section_b/accepting.py).
With n idle clients the process has n + 2 threads, as stage A: the main thread,
the proactor's accept thread (one per listener; the server has one) and the n
client threads; and, as in stage A, a writer for each reader while it has a backlog.

Run it: python -m section_c.server --port 9034   (then: nc 127.0.0.1 9034)
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable

from section_a import serving
from section_b import Proactor, start_proactor, stop_proactor

logger = logging.getLogger("chat")


class ProactorServer:
    """Hands the listener to a proactor, which accepts and serves each connection in a thread."""

    def __init__(self, listener: socket.socket, handler: serving.Handler) -> None:
        self.listener = listener
        self.handler = handler
        self.proactor: Proactor | None = None

    def serve(self, ready: Callable[[], None]) -> None:
        """Start the proactor, and wait for SIGINT or SIGTERM: accepting goes on in its thread."""
        self.proactor = start_proactor(self.listener, self.handler, name="chat")
        ready()
        serving.wait_for_stop()

    def close(self, timeout: float) -> list[str]:
        """Stop the proactor: it closes the listener, wakes and joins every thread."""
        return stop_proactor(self.proactor, timeout) if self.proactor else []


def main(argv: list[str] | None = None) -> int:
    description = "Stage C chat server: stage A's chat on the stage B proactor."
    return serving.run(description, argv, ProactorServer)


if __name__ == "__main__":
    sys.exit(main())
