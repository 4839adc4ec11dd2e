"""A generic proactor: listening sockets in, a thread per connection out.

    listeners --> accept thread -----------> a thread per connection --> handler(conn, addr)
                  1 per Proactor; waits on    "conn-HOST:PORT"; ends      returns or raises;
                  all listeners at once       when the handler does       then conn is closed

    start()  starts the accept thread; the accept thread starts each connection thread.
    stop()   wakes the accept thread (a byte on a wake-up socket), which closes the listeners;
             wakes every connection thread (shutdown of its socket); joins them all.

A proactor (Schmidt et al., POSA2) reports the *completion* of an operation ("here is
your connection") to a handler, where a reactor reports *readiness* ("this socket can
be read") and leaves the I/O to its handler. Here the operation is accepting; each
completed one gets a thread of its own, so handlers may block. docs/proactor.md maps
the pattern's roles onto this code.

Threads: 1 accept thread per Proactor, plus 1 per live connection; nothing else.

Stage B is three modules, each importing only those above it:

    sockets.py    wake_blocked() and peer_name(): the socket facts it relies on
    accepting.py  the accept thread: every listener at once, and what an accept error means
    proactor.py   here: start and stop, a thread per connection, the counters

Listeners. The proactor owns the sockets given to add_listener() (before start()): it makes
them non-blocking, and the accept thread closes them when it ends.

Connection threads. Each runs on_connect, then the handler, on a blocking socket; whatever the
handler does, the connection is then closed, on_disconnect runs and the thread ends. An
exception is logged with the peer and counted in `failed`; nothing else is affected.

Over max_connections, a new connection is refused politely rather than made to wait: the
accept thread calls on_refused(conn, addr) (e.g. to send one line; it has REFUSE_TIMEOUT
seconds), then closes it. Waiting would leave the client connected with no answer.

>>> import socket
>>> def upper(conn, addr):
...     while data := conn.recv(1024):
...         conn.sendall(data.upper())
>>> listener = socket.create_server(("127.0.0.1", 0))
>>> with start_proactor(listener, upper) as proactor:
...     with socket.create_connection(listener.getsockname()) as client:
...         client.sendall(b"hello")
...         client.recv(1024)
b'HELLO'
>>> proactor.stop()  # the with block stopped it already; stopping again is harmless
[]
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from section_b.accepting import Acceptor, Handler
from section_b.sockets import Address, peer_name, wake_blocked

__all__ = ["Address", "Handler", "Proactor", "peer_name", "start_proactor", "stop_proactor",
           "wake_blocked"]  # fmt: skip

logger = logging.getLogger(__name__)

REFUSE_TIMEOUT = 1.0  # seconds on_refused may spend on a socket: it runs in the accept thread


class Proactor:
    """Accept connections on one or more listeners; serve each in a thread of its own.

    Counters (read them; the proactor writes them): `accepted` connections handed to a
    handler, `refused` turned away (over max_connections, or no thread could be started),
    `failed` handlers that raised. on_connect(addr) and on_disconnect(addr) run in the
    connection's thread, before the handler and after the connection is closed.

    Its threads are not daemons: stop(), or leaving a with block, is how they end.
    """

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        on_refused: Handler | None = None,
        on_connect: Callable[[Address], None] | None = None,
        on_disconnect: Callable[[Address], None] | None = None,
        name: str = "proactor",
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self.max_connections = max_connections
        self.on_refused = on_refused
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.name = name
        self.accepted = self.refused = self.failed = 0
        self._listeners: dict[socket.socket, Handler] = {}
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._lock = threading.Lock()  # guards the two dicts, the counters and the sockets
        self._stopping = threading.Event()
        self._acceptor: Acceptor | None = None

    def add_listener(self, listener: socket.socket, handler: Handler) -> None:
        """Serve connections to `listener` (already listening) with `handler`; before start()."""
        if listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0:
            raise ValueError(f"{listener!r} is not listening: call listen() first")
        with self._lock:
            if self._acceptor is not None or self._stopping.is_set():
                raise RuntimeError("add_listener() comes before start()")
            listener.setblocking(False)
            self._listeners[listener] = handler

    def start(self) -> Proactor:
        """Start accepting in the proactor's thread and return at once."""
        with self._lock:
            if self._acceptor is not None or self._stopping.is_set():
                raise RuntimeError("a Proactor can be started once")
            if not self._listeners:
                raise RuntimeError("add_listener() before start()")
            self._acceptor = Acceptor(
                self._listeners, self._dispatch, self._stopping, name=f"{self.name}-accept"
            )
            self._acceptor.start()
        return self

    def stop(self, timeout: float = 2.0) -> list[str]:
        """Stop accepting, wake and join every thread; return the names of those still alive.

        Safe to call twice and from any thread. From a handler, it wakes that handler's
        connection too but does not wait for its own thread, which ends when it returns.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._stopping.is_set():
                self._stopping.set()  # also ends a capacity back-off at once
                if self._acceptor is not None:
                    self._acceptor.wake()  # it wakes, and closes the listeners
                else:
                    for listener in self._listeners:  # never started
                        listener.close()
            for conn in self._connections.values():
                wake_blocked(conn)
            threads = [*self._connections]
            if self._acceptor is not None:
                threads.insert(0, self._acceptor.thread)
        threads = [thread for thread in threads if thread is not threading.current_thread()]
        # The accept thread first: it starts every connection thread, so once it has ended,
        # a connection thread that has not started never will (its start() failed).
        for thread in threads:
            if thread.ident is None:  # not started: nothing to join
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in threads if thread.is_alive()]
        if alive:
            logger.warning("%s: still running after %.1fs: %s", self.name, timeout, alive)
        return alive

    @property
    def connection_count(self) -> int:
        """The number of connections being served now."""
        with self._lock:
            return len(self._connections)

    def threads(self) -> list[threading.Thread]:
        """The live connection threads, each named after its peer ("conn-HOST:PORT")."""
        with self._lock:
            return list(self._connections)

    def __enter__(self) -> Proactor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _dispatch(self, conn: socket.socket, addr: Address, handler: Handler) -> None:
        # The accept thread's Dispatch: a RuntimeError from here makes it back off.
        thread = threading.Thread(
            target=self._serve, args=(conn, addr, handler), name=f"conn-{peer_name(addr)}"
        )
        with self._lock:
            if self._stopping.is_set():
                conn.close()
                return
            full = self.max_connections is not None and (
                len(self._connections) >= self.max_connections
            )
            if full:
                self.refused += 1
            else:
                self._connections[thread] = conn
                self.accepted += 1  # before start(): the handler may answer before it returns
        if full:
            self._refuse(conn, addr)
            return
        # Started without the lock: start() waits until the new thread runs, and threads
        # that end meanwhile need the lock to leave. stop() may see this thread before it
        # is started: it joins the accept thread first, and skips one that never started.
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread": out of memory, or a ulimit
            with self._lock:
                del self._connections[thread]
                self.accepted -= 1
                self.refused += 1
                conn.close()
            raise

    def _refuse(self, conn: socket.socket, addr: Address) -> None:
        try:
            conn.settimeout(REFUSE_TIMEOUT)  # a peer that does not read cannot stall accepting
            if self.on_refused is not None:
                self.on_refused(conn, addr)
        except Exception:
            logger.exception("on_refused for %s raised", peer_name(addr))
        finally:
            conn.close()

    def _serve(self, conn: socket.socket, addr: Address, handler: Handler) -> None:
        try:
            if self.on_connect is not None:
                self.on_connect(addr)
            handler(conn, addr)
        except Exception:
            with self._lock:
                self.failed += 1
            logger.exception("handler for %s raised; its connection is closed", peer_name(addr))
        finally:
            with self._lock:  # not during stop()'s shutdown: the fd number could be reused
                conn.close()
            try:
                if self.on_disconnect is not None:
                    self.on_disconnect(addr)
            except Exception:
                logger.exception("on_disconnect for %s raised", peer_name(addr))
            with self._lock:
                del self._connections[threading.current_thread()]


def start_proactor(listener: socket.socket, handler: Handler, **options: Any) -> Proactor:
    """Like the course's startProactor(sockfd, func): serve `listener` with `handler`, started.

    `options` are Proactor's keywords (max_connections, on_refused, ...).
    """
    proactor = Proactor(**options)
    proactor.add_listener(listener, handler)
    return proactor.start()


def stop_proactor(proactor: Proactor, timeout: float = 2.0) -> list[str]:
    """Like the course's stopProactor(tid): stop it; the names of threads still alive."""
    return proactor.stop(timeout)
