"""What a connection has still to be sent: its backlog, and the one thread that drains them all.

Nobody ever blocks on a socket to send. Whoever writes to a reader (the room, in the
sending client's thread) makes a non-blocking send; what the socket does not take
at once waits in that reader's `Outbox`, and goes out before anything newer. The
`Flusher`, one thread for the whole server, waits (epoll) for those sockets to
drain and writes what waits.

    room (sender's thread) --send()--> Outbox --non-blocking send--> socket
                                         |  (what did not fit)
                                         v
                                      backlog --Flusher thread, when writable--> socket

Why one flusher rather than the reader's own thread: that thread is blocked in
recv(), and waking it to write would take a second descriptor per client (an
eventfd), halving how many clients fit under the descriptor limit.

A big block that goes to many readers is written once into a memfd (`SharedPages`),
and each socket is handed those pages with sendfile(): the kernel then copies the
bytes once, not once per reader. sendfile() cannot be told not to wait, so every
client's socket is non-blocking (Python's timeout mode: its own recv() waits in poll()).

An outbox also keeps what the rules of lag.py need to judge its reader: how big its
backlog is, since when it has lagged, and when its socket last took anything. The
room (room.py) does the judging.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable

from section_a.lag import LagRules
from section_a.sockets import shut_down

logger = logging.getLogger(__name__)

# How many pieces of a backlog one writev() writes at most (the kernel's UIO_MAXIOV).
MAX_PIECES = 1024
# A block this big, for this many readers, is handed to every socket as the same pages
# (sendfile); a smaller one, or for fewer, is copied into each: that costs less than the
# memfd's fresh pages and the handing over.
SHARE_MIN = 32 * 1024
SHARE_READERS = 16
# How long recv() waits in timeout mode before it says so; the reader then waits again.
# Not a limit on anything: the mode is for sendfile(), and an idle client may idle for ever.
RECV_TIMEOUT = 24 * 3600.0


class Outbox:
    """One connection's output: a non-blocking send, and what did not fit yet.

    Every method may be called from any thread. Order is kept: while anything
    waits, newer data goes behind it, never straight to the socket.
    """

    # One per client, most of them idle: slots and a list (empty, it holds no block,
    # where a deque holds one from the start) keep an idle client small.
    __slots__ = (
        "_flusher", "_lock", "_pieces", "backlog", "closed", "fd", "lagging_since",
        "last_taken", "on_caught_up", "reason", "rules", "sock",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, rules: LagRules, flusher: Flusher) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.rules = rules
        # The kernel's own buffer is part of what a stuck reader holds: bounded by the limit too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rules.sendq)
        # A non-blocking descriptor, for sendfile(); so the outbox writes to the descriptor
        # (os.write), since the socket's own send() would wait in poll() for room.
        sock.settimeout(RECV_TIMEOUT)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Chat lines are small and wanted now: no Nagle delay waiting for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closed = False
        self.reason = ""  # why the room cut this reader, for the log and the others
        self.backlog = 0  # bytes waiting
        self.lagging_since = 0.0  # when the backlog passed the limit; 0 while it is under
        self.last_taken = time.monotonic()  # when the socket last took anything
        self.on_caught_up: Callable[[Outbox], None] = _nobody
        self._flusher = flusher
        self._lock = threading.Lock()
        self._pieces: list[bytes] = []  # the backlog, oldest first

    def send(self, data: bytes, pages: int = -1) -> bool:
        """Send `data` now, or queue it behind what waits; never blocks.

        `pages`, if given, is a descriptor that holds `data` from its start (`SharedPages`):
        the socket is handed its pages rather than a copy. Returns True while the backlog
        is over the limit (the reader lags).
        """
        with self._lock:
            if self.closed:
                return False
            if not self._pieces:
                sent = self._send_now(data, pages)
                if sent == len(data) or sent < 0:
                    return False
                data = data[sent:]
                self._flusher.arm(self)
            self._pieces.append(data)
            self.backlog += len(data)
            if not self.lagging_since and self.rules.lags(self.backlog):
                self.lagging_since = time.monotonic()
            return bool(self.lagging_since)

    def flush(self) -> None:
        """Write what waits, as much as the socket takes now (the flusher calls it)."""
        with self._lock:
            while self._pieces and not self.closed:
                pieces = self._pieces[:MAX_PIECES]
                try:
                    sent = os.writev(self.fd, pieces)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._close()  # the peer is gone; its own thread sees why, in recv()
                    return
                self.last_taken = time.monotonic() if sent else self.last_taken
                self.backlog -= sent
                if sent < sum(map(len, pieces)):
                    self._drop(sent)
                    self._flusher.arm(self)  # the socket is full: the rest when it drains
                    break
                del self._pieces[: len(pieces)]
            caught_up = bool(self.lagging_since) and self.rules.caught_up(self.backlog)
            if caught_up:
                self.lagging_since = 0.0
        if caught_up:
            self.on_caught_up(self)  # outside the lock: the room takes its own

    def _drop(self, sent: int) -> None:
        # Called with the lock held: take `sent` bytes off the front of the backlog.
        whole = 0
        while sent >= len(self._pieces[whole]):
            sent -= len(self._pieces[whole])
            whole += 1
        del self._pieces[:whole]
        if sent:
            self._pieces[0] = self._pieces[0][sent:]

    def _send_now(self, data: bytes, pages: int) -> int:
        # Called with the lock held: the bytes the socket took at once; -1 if the peer is gone.
        try:
            if pages >= 0:
                sent = os.sendfile(self.fd, pages, 0, len(data))
            else:
                sent = os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            self._close()
            return -1
        self.last_taken = time.monotonic()
        return sent

    def cut(self, reason: str) -> None:
        """Give up on this reader: drop its backlog and wake its thread, which then leaves."""
        with self._lock:
            if self.closed:
                return
            self.reason = reason
            self._close()
        shut_down(self.sock)

    def close(self) -> None:
        """Stop sending for good (its owner, before closing the socket)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        # Called with the lock held.
        self.closed = True
        self._pieces.clear()
        self.backlog = 0
        self.lagging_since = 0.0
        self._flusher.forget(self)


def _nobody(outbox: Outbox) -> None:
    """Whom an outbox tells that its reader caught up, until the room says."""


class SharedPages:
    """`data` in a memfd, whose pages `Outbox.send` hands to about `readers` sockets.

    `with SharedPages(data, readers) as pages:` gives the descriptor, closed after, or -1
    (each socket then gets a copy) for a block under SHARE_MIN bytes or fewer than
    SHARE_READERS readers, where copies cost less, and when no descriptor or memory is
    left for a memfd. A page a socket was handed stays in its buffer until sent, and
    nothing writes to the memfd again, so it sends what was written.
    """

    __slots__ = ("fd",)  # a class, not a @contextmanager generator: made for every write

    def __init__(self, data: bytes, readers: int) -> None:
        self.fd = -1
        if len(data) < SHARE_MIN or readers < SHARE_READERS:
            return
        try:
            self.fd = os.memfd_create("round", os.MFD_CLOEXEC)
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            self.__exit__()

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc_info: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Flusher:
    """The one thread that writes backlogs as their sockets drain.

    Outboxes `arm` themselves when they hold a backlog; the flusher waits in epoll
    for any of those sockets to become writable (one-shot, so an idle writable
    socket never spins it) and calls that outbox's `flush`.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        # An eventfd in the epoll set lets stop() wake the thread with no timeout loop.
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._outboxes: dict[int, Outbox] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="flusher")

    def start(self) -> None:
        self._thread.start()

    def arm(self, outbox: Outbox) -> None:
        """Flush `outbox` once its socket is writable (called with the outbox's lock held)."""
        events = select.EPOLLOUT | select.EPOLLONESHOT
        with self._lock:
            if self._stopping:
                return
            if outbox.fd in self._outboxes:
                self._epoll.modify(outbox.fd, events)
            else:
                self._outboxes[outbox.fd] = outbox
                self._epoll.register(outbox.fd, events)

    def forget(self, outbox: Outbox) -> None:
        """Stop watching `outbox`, before its socket is closed and its number reused."""
        with self._lock:
            if self._outboxes.get(outbox.fd) is outbox:
                del self._outboxes[outbox.fd]
                if not self._stopping:
                    self._epoll.unregister(outbox.fd)

    def _run(self) -> None:
        while True:
            for fd, _ in self._epoll.poll():
                if fd == self._wake:
                    return  # stop() wrote to the eventfd
                with self._lock:
                    outbox = self._outboxes.get(fd)
                if outbox is not None:
                    outbox.flush()

    def stop(self, timeout: float | None = None) -> None:
        """End the thread and release its descriptors; safe to call twice."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            os.eventfd_write(self._wake, 1)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("flusher: still running after stop(); its descriptors are left open")
            return  # closing them under it would turn its next wait into an error
        self._epoll.close()
        os.close(self._wake)
