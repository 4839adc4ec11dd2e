"""Stage A: the chat server, with one thread per connected client.

    main thread                        one thread per client
    -----------                        ---------------------
    accept() --conn--> Thread(serve_client)  -->  recv() -> protocol -> room -> sockets
       ^                                          (until EOF, /quit, cut, or shutdown)
       |
    signal thread: sigwait() for SIGINT/SIGTERM, then shut the listener down (wakes
    accept); the main thread then tells the room to close (wakes every recv), joins
    every client thread and the signal thread, and the exit is 0

The main thread does nothing but accept: for every connection it starts a thread
that runs `session.serve_client`, and keeps it in a set so that it can join it at
shutdown (the thread removes itself when its client leaves). The signal thread
waits for the stop (serving.py says why a thread of its own). With n idle clients
the process has n + 2 threads, and a reader with a backlog a writer thread while
it has one (outbox.py). What an accept error means is stage B's policy, the same
for both servers (section_b/accepting.py). The options and the order of starting
and stopping both stages share (serving.py): `make diff` shows what stage C does.

Run it: python -m section_a.server --port 9034   (then: nc 127.0.0.1 9034)
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable

from section_a import serving
from section_a.sockets import peer_name, shut_down
from section_b.accepting import Acceptor

logger = logging.getLogger("chat")


class ThreadedServer:
    """Accepts connections in the calling thread and serves each in a thread of its own."""

    def __init__(self, listener: socket.socket, handler: serving.Handler) -> None:
        self.listener = listener
        self.handler = handler
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def serve(self, ready: Callable[[], None]) -> None:
        """Accept until SIGINT or SIGTERM; each connection gets a new thread."""
        stopping = threading.Event()

        def stop() -> None:  # the signal thread's whole life
            serving.wait_for_stop()
            stopping.set()
            shut_down(self.listener)  # wakes accept(): close would not (Linux)

        # A daemon: should serve() fail, its sigwait() must not keep the process alive.
        signals = threading.Thread(target=stop, name="signals", daemon=True)
        signals.start()
        acceptor = Acceptor(self.listener, stopping=stopping.is_set)
        ready()
        while (accepted := acceptor.accept()) is not None:
            conn, addr = accepted
            thread = threading.Thread(
                target=self._serve, args=(conn, addr), name=f"client-{peer_name(addr)}"
            )
            with self._lock:
                self._threads.add(thread)
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": out of memory or a limit
                with self._lock:
                    self._threads.discard(thread)
                conn.close()
                acceptor.back_off(exc)
        signals.join()  # at once after a stop; else the listener failed: wait for a signal

    def _serve(self, conn: socket.socket, addr: object) -> None:
        try:
            self.handler(conn, addr)
        except Exception:
            logger.exception("client %s: unexpected error", peer_name(addr))
        finally:
            conn.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def close(self, timeout: float) -> list[str]:
        """Close the listener, join every client thread; the names of those still alive."""
        self.listener.close()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]


def main(argv: list[str] | None = None) -> int:
    description = "Stage A chat server: one thread per connected client."
    return serving.run(description, argv, ThreadedServer)


if __name__ == "__main__":
    sys.exit(main())
