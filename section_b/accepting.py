"""The accept thread: one thread waits on every listener at once and hands each connection on.

    listeners -----+
                   +--> selector --> accept() --> dispatch(conn, addr, handler)
    wake-up socket-+                              (the Proactor starts a thread there)
                         wake(): one byte on the socket pair; the thread closes
                         the listeners and ends

A selector over every listener and over one end of a socket pair lets one thread serve
any number of listeners, and lets wake() end it without a polling timeout. (Inside the
proactor, this is a tiny reactor: it waits for readiness, then does the accept itself.)
The listeners are non-blocking, so a stale readiness never blocks the thread in accept().

Each accept error has one rule. Running out of descriptors or memory (CAPACITY_ERRNOS)
pauses accepting for CAPACITY_BACKOFF seconds, and the warning is logged at most once a
second: accepting again at once would fail again and spin a core. A dispatch that raises
RuntimeError (no thread could be started) is the same shortage. A connection lost before
it was accepted (RETRY_ERRNOS) is skipped. Any other accept error closes that listener
only, with a log line.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeAlias

from section_b.sockets import Address

__all__ = ["Acceptor", "Dispatch", "Handler"]

logger = logging.getLogger(__name__)

Handler: TypeAlias = Callable[[socket.socket, Address], None]
# Takes a new connection on, or raises RuntimeError when it cannot (no thread to run it).
Dispatch: TypeAlias = Callable[[socket.socket, Address, Handler], None]

# The process is out of something it shares (descriptors, buffers, memory): an accept
# tried again at once fails again, so wait a little instead (trio's serve_listeners does too).
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
CAPACITY_BACKOFF = 0.1  # seconds between accept attempts while out of capacity
CAPACITY_LOG_INTERVAL = 1.0  # seconds; the capacity warning is logged at most this often
# That connection died before we took it, or (Linux, see accept(2)) accept() reports a
# pending network error of the new connection: the listener itself is fine.
RETRY_ERRNOS = frozenset({
    errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.ENOPROTOOPT,
    errno.EHOSTDOWN, errno.ENONET, errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH,
})  # fmt: skip


class Acceptor:
    """Accept on `listeners` in a thread of its own; hand each connection to `dispatch`.

    From start() on it owns the listeners, and its thread closes them when it ends.
    `stopping` is its owner's: once it is set, a back-off ends at once and no accept follows.
    """

    def __init__(
        self,
        listeners: dict[socket.socket, Handler],
        dispatch: Dispatch,
        stopping: threading.Event,
        name: str,
    ) -> None:
        self._listeners = listeners
        self._dispatch = dispatch
        self._stopping = stopping
        self._selector = selectors.DefaultSelector()
        wakeup, self._wakeup = socket.socketpair()
        self._selector.register(wakeup, selectors.EVENT_READ, None)
        for listener, handler in listeners.items():
            self._selector.register(listener, selectors.EVENT_READ, (listener, handler))
        self.thread = threading.Thread(target=self._accept_loop, args=(wakeup,), name=name)
        self._last_capacity_log = -CAPACITY_LOG_INTERVAL
        self._out_of_capacity = False

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Make the accept thread end (it closes the listeners as it goes); call it once."""
        try:
            self._wakeup.send(b"\0")
        except OSError:
            pass  # the accept thread is gone already, and its end of the pair with it
        self._wakeup.close()

    def _accept_loop(self, wakeup: socket.socket) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select():
                    if key.data is None:  # the wake-up socket: wake() was called
                        return
                    self._accept(*key.data)
        finally:
            for listener in self._listeners:
                listener.close()  # from now on, a new connection is refused
            self._selector.close()
            wakeup.close()

    def _accept(self, listener: socket.socket, handler: Handler) -> None:
        try:
            conn, addr = listener.accept()
        except BlockingIOError:
            return  # the connection went away between select() and accept()
        except OSError as error:
            if error.errno in CAPACITY_ERRNOS:
                self._back_off(error)
            elif error.errno not in RETRY_ERRNOS:
                logger.error("accept on %s failed, closing it: %s", listener, error)
                self._selector.unregister(listener)
                listener.close()
            return
        if self._out_of_capacity:
            self._out_of_capacity = False
            logger.warning("accepting again after running out of capacity")
        conn.setblocking(True)  # handlers get a plain blocking socket, whatever the listener
        try:
            self._dispatch(conn, addr, handler)
        except RuntimeError as error:
            self._back_off(error)

    def _back_off(self, error: object) -> None:
        self._out_of_capacity = True
        now = time.monotonic()
        if now - self._last_capacity_log >= CAPACITY_LOG_INTERVAL:
            self._last_capacity_log = now
            logger.warning(
                "out of capacity (%s): accept paused, retried every %.1fs", error, CAPACITY_BACKOFF
            )
        self._stopping.wait(CAPACITY_BACKOFF)  # a sleep that stop() can cut short
