"""What an accept loop does when accept() fails: one policy, for both stages' accept loops.

    accept() --> (conn, addr) .............. returned: the caller starts a thread for it
        |
        +--> out of capacity ............... sleep CAPACITY_BACKOFF, then accept again;
        |    (CAPACITY_ERRNOS)               a warning at most once a CAPACITY_LOG_INTERVAL
        +--> the peer gave up .............. accept again at once
        |    (PEER_GONE_ERRNOS)
        +--> anything else ................. None: this listener can accept no more
                                             (an error logged, unless its owner is stopping)

An Acceptor is not a thread: the thread that calls accept() blocks in the kernel's
accept() until a connection comes or the listener is shut down. Stage B's proactor runs
one such thread per listener; stage A's main thread is its one accept loop. Stage A
imports this module; stage B imports nothing from stage A.

Out of capacity. The process is out of something it shares: descriptors (EMFILE, ENFILE),
kernel buffers or memory (ENOBUFS, ENOMEM). accept() tried again at once fails again at
once: a core spins and the log floods. So the loop sleeps a little and tries again, while
the pending connections wait in the kernel's listen queue, and warns at most once a
second. A thread that could not be started for a connection is the same shortage: the
caller closes that connection and calls back_off() (trio's serve_listeners does the same).

The peer gave up. The connection died in the listen queue before we took it, or (Linux,
accept(2)) accept() reports a network error of the new connection. The listener is fine.

Anything else says the listener itself cannot accept: EBADF, ENOTSOCK, EINVAL (closed,
not a socket, not listening, or shut down). Tried again, it fails for ever, and a loop
that backed off for ever would hide a dead listener behind a warning a second; so
accepting on it ends, with one error logged. The stop uses this same path: shutdown() of
the listener wakes a thread blocked in accept() on Linux (close() would not), accept()
fails with EINVAL, and since the owner is stopping, nothing is logged.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable

from section_b.sockets import Address, peer_name

__all__ = [
    "CAPACITY_BACKOFF",
    "CAPACITY_ERRNOS",
    "CAPACITY_LOG_INTERVAL",
    "PEER_GONE_ERRNOS",
    "Acceptor",
]

logger = logging.getLogger(__name__)

CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
CAPACITY_BACKOFF = 0.1  # seconds between accept attempts while out of capacity
CAPACITY_LOG_INTERVAL = 1.0  # seconds; the capacity warning is logged at most this often
# accept(2) on Linux: ECONNABORTED, EPERM (a firewall), then "network errors for the new
# socket", and the "other errors" it says various kernels return (ENOSR onwards).
PEER_GONE_ERRNOS = frozenset({
    errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.ENOPROTOOPT,
    errno.EHOSTDOWN, errno.ENONET, errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH,
    errno.ENOSR, errno.ESOCKTNOSUPPORT, errno.EPROTONOSUPPORT, errno.ETIMEDOUT,
})  # fmt: skip


class Acceptor:
    """Accepts on `listener` by the policy above, in the calling thread.

    `stopping()` is the owner's: once it is true, a failed accept() ends accepting quietly.
    The listener must be blocking (a timeout's TimeoutError would count as a failure).
    """

    def __init__(self, listener: socket.socket, stopping: Callable[[], bool]) -> None:
        self.listener = listener
        self.name = peer_name(listener.getsockname())  # for the log, even once it is closed
        self._stopping = stopping
        self._last_warning = -CAPACITY_LOG_INTERVAL
        self._out_of_capacity = False

    def accept(self) -> tuple[socket.socket, Address] | None:
        """Block until the next connection; None once the listener can accept no more."""
        while True:
            try:
                conn, addr = self.listener.accept()
            except OSError as error:
                if self._stopping():
                    return None  # shut down to wake us: the stop, not a failure
                if error.errno in CAPACITY_ERRNOS:
                    self.back_off(error)
                elif error.errno not in PEER_GONE_ERRNOS:
                    logger.error("accept on %s failed, no longer accepting: %s", self.name, error)
                    return None
                continue
            if self._out_of_capacity:
                self._out_of_capacity = False
                logger.warning("accepting again on %s after running out of capacity", self.name)
            return conn, addr

    def back_off(self, error: object) -> None:
        """Out of capacity: wait CAPACITY_BACKOFF before the next accept(), and say so (rarely)."""
        self._out_of_capacity = True
        now = time.monotonic()
        if now - self._last_warning >= CAPACITY_LOG_INTERVAL:
            self._last_warning = now
            logger.warning(
                "out of capacity on %s (%s): accept paused, retried every %.1fs",
                self.name,
                error,
                CAPACITY_BACKOFF,
            )
        time.sleep(CAPACITY_BACKOFF)
