"""A generic proactor: listening sockets in, a thread per connection out.

The following diagram and table show how a connection flows through the threads:

                  accept threads: 1 per listener            connection threads: 1 per connection
               +---------------------------------+         +-----------------------------+
+----------+   | "NAME-accept-HOST:PORT"         |  conn   | "conn-HOST:PORT"            |
| listener |==>|   blocks in listener.accept();  |========>|   on_connect(addr)          |
+----------+   |   a connection: start a thread  | starts  |   handler(conn, addr)       |
               |   for it, and accept again      |         |   conn.close()              |
+----------+   +---------------------------------+         |   on_disconnect(addr)       |
| listener |==> its own accept thread, the same            +-----------------------------+
+----------+

             accept thread                              connection thread
started by   start()                                    its listener's accept thread
woken by     stop(): shutdown() of its listener;        stop(): shutdown() of its socket;
             accept() fails with EINVAL (Linux)         recv() returns b"", send() fails
ends when    accept() fails for good (accepting.py)     the handler returns or raises
closes       its listener, as it ends                   its connection, as it ends
joined by    stop(), first                              stop(), after every accept thread

Your thread is the initiator: add_listener() gives the proactor a listening socket and
the handler for its connections, start() starts the accept threads and returns at once,
stop() wakes and joins every thread the proactor started. Threads: 1 per listener, plus
1 per live connection, and none that watches several sockets: each wait is one blocking
call in a thread of its own.

Accept thread. What an accept error means, and the back-off when the process runs out
of descriptors, is accepting.py's policy, the same as stage A's. Over max_connections it
refuses the new connection politely instead of starting a thread: on_refused(conn, addr)
(e.g. to send one line; it has REFUSE_TIMEOUT seconds), then close. Waiting would leave
the client connected with no answer.

Connection thread. Whatever the handler does, the connection is then closed. An
exception is logged with the peer and counted in `failed`; nothing else is affected.

A proactor (Schmidt et al., POSA2) reports the *completion* of an operation ("here is
your connection") to a handler, where a reactor reports *readiness* ("this socket can
be read") and leaves the I/O to its handler. Here the operation is accepting, and a
thread blocked in it is what completes it: docs/proactor.md maps the pattern's roles.

Stage B is three modules, each importing only those above it (and nothing from stage A):

    sockets.py    wake_blocked() and peer_name(): the socket facts it relies on
    accepting.py  what an accept error means (stage A's server uses it too)
    proactor.py   here: start and stop, the threads, the counters

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
from typing import Any, TypeAlias

from section_b.accepting import Acceptor
from section_b.sockets import Address, peer_name, wake_blocked

__all__ = ["Address", "Handler", "Proactor", "peer_name", "start_proactor", "stop_proactor",
           "wake_blocked"]  # fmt: skip

logger = logging.getLogger(__name__)

Handler: TypeAlias = Callable[[socket.socket, Address], None]  # serves one connection

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
        self._accept_threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # guards the dicts, the counters and closing the sockets
        self._stopping = threading.Event()

    def add_listener(self, listener: socket.socket, handler: Handler) -> None:
        """Serve connections to `listener` (already listening) with `handler`; before start()."""
        if listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0:
            raise ValueError(f"{listener!r} is not listening: call listen() first")
        with self._lock:
            if self._accept_threads or self._stopping.is_set():
                raise RuntimeError("add_listener() comes before start()")
            listener.setblocking(True)  # its thread blocks in accept(); a timeout would end it
            self._listeners[listener] = handler

    def start(self) -> Proactor:
        """Start an accept thread per listener and return at once."""
        with self._lock:
            if self._accept_threads or self._stopping.is_set():
                raise RuntimeError("a Proactor can be started once")
            if not self._listeners:
                raise RuntimeError("add_listener() before start()")
            for listener, handler in self._listeners.items():
                acceptor = Acceptor(listener, self._stopping.is_set)
                self._accept_threads.append(
                    threading.Thread(
                        target=self._accept,
                        args=(acceptor, handler),
                        name=f"{self.name}-accept-{acceptor.name}",
                    )
                )
            for thread in self._accept_threads:
                thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> list[str]:
        """Stop accepting, wake and join every thread; return the names of those still alive.

        Safe to call twice and from any thread. From a handler, it wakes that handler's
        connection too but does not wait for its own thread, which ends when it returns.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._stopping.is_set():
                self._stopping.set()
                for listener in self._listeners:
                    if self._accept_threads:
                        # Linux: shutdown() wakes a thread blocked in accept() on the
                        # listener (accept fails with EINVAL); close() would not wake it.
                        # Its accept thread then closes it.
                        wake_blocked(listener)
                    else:  # never started: no thread owns it
                        listener.close()
            for conn in self._connections.values():
                wake_blocked(conn)
            threads = [*self._accept_threads, *self._connections]
        threads = [thread for thread in threads if thread is not threading.current_thread()]
        # The accept threads first: they start every connection thread, so once they have
        # ended, a connection thread that has not started never will (its start() failed).
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

    def _accept(self, acceptor: Acceptor, handler: Handler) -> None:
        """An accept thread: block in accept(), start a thread per connection, until stop()."""
        try:
            while (accepted := acceptor.accept()) is not None:
                try:
                    self._dispatch(*accepted, handler)
                except RuntimeError as error:  # no thread to run it: the same shortage
                    acceptor.back_off(error)
        finally:
            with self._lock:  # not during stop()'s shutdown: the fd number could be reused
                acceptor.listener.close()

    def _dispatch(self, conn: socket.socket, addr: Address, handler: Handler) -> None:
        # Raises RuntimeError when no thread could be started for the connection.
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
        # is started: it joins the accept threads first, and skips one that never started.
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
