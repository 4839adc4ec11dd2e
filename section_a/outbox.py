"""What a connection has still to be sent: a bounded backlog, and the one thread that drains them.

A broadcast must never wait for a slow reader. So nobody ever blocks on a socket
to send: whoever sends (the sender's own thread, for a broadcast) tries a
non-blocking send, and what the socket does not take right away is queued in the
recipient's `Outbox`. The queued bytes are written later by the `Flusher`, one
thread for the whole server, which waits (epoll) for those sockets to drain.

    sender's thread --send()--> Outbox --non-blocking send--> socket
                                  |  (what did not fit)
                                  v
                               backlog --Flusher thread, when writable--> socket

Why one flusher thread rather than the recipient's own thread: the recipient's
thread is blocked in recv(), and waking it to write would take a second file
descriptor per client (an eventfd) and halve how many clients fit under the
descriptor limit. One extra thread for the whole server is cheaper.

The backlog is bounded: past `limit` bytes the outbox gives up on its reader,
closes and shuts its socket down, which wakes the reader's thread to leave.
Crossing the flow control's marks is reported, so the room can tell a reader that
lags alone from a room that lags as a whole (see flow.py); so is a reader past the
limit that still reads, which a congested room waits for.
"""

from __future__ import annotations

import fcntl
import heapq
import itertools
import logging
import os
import select
import socket
import sys
import termios
import threading
import time
from collections import deque
from collections.abc import Callable

from section_a.flow import FlowControl

logger = logging.getLogger(__name__)

FLUSH_CHUNK = 256 * 1024  # bytes joined for one send when draining a backlog
# The kernel's send buffer is part of what a slow reader holds up: left to autotune it grows
# to megabytes (Linux doubles what is asked, up to net.core.wmem_max), and a stuck reader
# would be cut only that much later than its limit says. So it is bounded too.
KERNEL_SNDBUF = 1024 * 1024
# Past --sendq a reader is cut if it lags alone: the room is not congested, and it made no
# progress (took or drained less than the low mark: it stopped reading) in the last
# STUCK_WINDOWS whole windows of STUCK_AFTER seconds, nor since. A reader of a congested
# room, one that is draining, or one that began to lag only a moment ago, is slow with the
# others, not stuck: it is cut only past this many times the limit, which still bounds memory.
SLOW_LIMIT_FACTOR = 4
# Seconds of no progress at all before a lagging reader can be judged stuck: windows of
# STUCK_AFTER, STUCK_WINDOWS of them in a row. Not a test of its own (a busy reader on a
# loaded machine can go hundreds of milliseconds between reads): it keeps a burst that fills
# a healthy reader's backlog faster than it reads, for a moment, from looking like a stop.
# Measured at full size (50 readers, 10,000 lines each, plus one stuck reader): judged from
# the moment the backlog passed the high mark, 1 run in about 40 cut a healthy reader; over
# one window of 2 s, 1 in 30.
STUCK_AFTER = 2.0
STUCK_WINDOWS = 2


class Outbox:
    """One connection's output: a direct non-blocking send, else a bounded backlog.

    Every method may be called from any thread. Order is kept: while anything is
    queued, new data goes behind it, never straight to the socket.
    """

    def __init__(
        self,
        sock: socket.socket,
        limit: int,
        flusher: Flusher,
        flow: FlowControl,
        first: bytes = b"",
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.limit = limit
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, min(limit, KERNEL_SNDBUF))
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Chat lines are small and wanted now: no Nagle delay waiting for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closed = False
        self.reason = ""  # why the outbox gave up on its reader (a cut), for the log
        self._flusher = flusher
        self._flow = flow
        self._lock = threading.Lock()
        # `first` waits for the owner's first flush(): whatever is sent meanwhile queues behind it.
        self._queue: deque[bytes] = deque([first] if first else [])
        self._size = len(first)
        self._lagging = False
        # Progress while lagging, in windows of STUCK_AFTER seconds (see _check_stuck):
        self._taken = 0  # bytes the socket took from the backlog in this window
        self._kernel_queue_at_window = 0  # what the kernel had still to send when it began
        self._stalled_windows = 0  # whole windows in a row, up to the last, with no progress
        self._progressed = False  # the last whole window saw progress
        self._holding = False  # past the limit, still reading: told to the flow control
        self._check_due = False  # a _check_stuck is scheduled

    @property
    def backlog(self) -> int:
        return self._size

    def send(self, data: bytes) -> bool:
        """Send `data` or queue it; never blocks. False if the outbox is closed."""
        with self._lock:
            if self.closed:
                return False
            if self._queue:
                # Whoever sends also writes what the socket takes of the backlog now: left to
                # the flusher alone (one thread, against every sender for the GIL), a reader
                # behind could fall further behind, alone, until it was cut.
                self._write_backlog()
            if not self._queue:
                sent = self._send_now(data)
                if sent < 0:
                    return False
                if sent == len(data):
                    return True
                data = data[sent:]
                self._flusher.arm(self)
            self._queue.append(data)
            self._size += len(data)
            if self._cut_if_over():
                return False
            self._track_lag()
            return True

    def _cut_if_over(self) -> bool:
        # Called with the lock held: past the limit, cut a stuck reader, or anyone past 4x.
        if self._size <= self.limit:
            return False
        stalled = self._stalled_windows >= STUCK_WINDOWS
        slow = self._flow.congested or not stalled or self._taken >= self._flow.low_mark
        bound = self.limit * SLOW_LIMIT_FACTOR if slow else self.limit
        if self._size > bound:
            self._close(f"backlog over {bound} bytes")
            return True
        return False

    def _check_stuck(self) -> None:
        # Run by the flusher every STUCK_AFTER seconds while the backlog is over the high
        # mark: closes a window. A reader stalled if in a whole window what it took from its
        # backlog, and what the kernel's queue for it went down by (a reader that reads
        # drains it even while our backlog waits behind it), came to less than the low mark.
        # Run by the clock, not by sends, so that it holds in a quiet room too.
        with self._lock:
            self._check_due = False
            if self.closed or not self._lagging:
                return
            self._write_backlog()  # offer it data once more: progress is judged on our side too
            queue = self._kernel_queue()
            # A trickle is no progress: the kernel of a stopped reader still takes a little
            # now and then (a couple of KiB a window, seen here), as it packs its queue.
            progress = self._taken + max(0, self._kernel_queue_at_window - queue)
            stalled = progress < self._flow.low_mark
            self._stalled_windows = self._stalled_windows + 1 if stalled else 0
            self._progressed = not stalled
            self._taken, self._kernel_queue_at_window = 0, queue
            if not self._cut_if_over():
                self._track_lag()
                self._schedule_check()

    def _schedule_check(self) -> None:
        # Called with the lock held: close the current window STUCK_AFTER from now.
        self._check_due = True
        self._flusher.call_later(STUCK_AFTER, self._check_stuck)

    def flush(self) -> None:
        """Write as much of the backlog as the socket takes now; ask the flusher for the rest."""
        with self._lock:
            self._write_backlog()
            self._track_lag()

    def _write_backlog(self) -> None:
        # Called with the lock held.
        while self._queue and not self.closed:
            if len(self._queue) > 1 and len(self._queue[0]) < FLUSH_CHUNK:
                self._coalesce()
            head = self._queue[0]
            sent = self._send_now(head)
            if sent < 0:
                return
            self._size -= sent
            self._taken += sent
            if sent < len(head):
                self._queue[0] = head[sent:]
                self._flusher.arm(self)
                return
            self._queue.popleft()

    def _send_now(self, data: bytes) -> int:
        # Called with the lock held: bytes the socket took at once; -1 if the peer is gone.
        try:
            return self.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
        except OSError:
            self._close("")  # its own thread sees why, in recv()
            return -1

    def _kernel_queue(self) -> int:
        # Bytes the kernel has yet to deliver (Linux SIOCOUTQ). A reader that reads drains
        # it even while our own backlog waits behind it; a stuck reader never does.
        try:
            answer = fcntl.ioctl(self.fd, termios.TIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return 0
        return int.from_bytes(answer, sys.byteorder)

    def _coalesce(self) -> None:
        # Join small queued pieces so that one send() writes many of them.
        pieces = []
        size = 0
        while self._queue and size < FLUSH_CHUNK:
            piece = self._queue.popleft()
            pieces.append(piece)
            size += len(piece)
        self._queue.appendleft(b"".join(pieces))

    def _track_lag(self) -> None:
        # Report crossings of the flow control's marks (see flow.py), with hysteresis.
        if not self._lagging and self._size > self._flow.high_mark:
            self._lagging = True
            self._taken, self._stalled_windows = 0, 0  # no whole window seen yet
            self._progressed = False
            self._kernel_queue_at_window = self._kernel_queue()
            self._flow.started_lagging()
            if not self._check_due:
                self._schedule_check()
        elif self._lagging and self._size <= self._flow.low_mark:
            self._lagging = False
            self._flow.stopped_lagging()
        # Past the limit but reading (in this window, or the last whole one): it holds a
        # congested room (flow.py). A reader that stopped takes nothing, and holds nothing.
        reading = self._progressed or self._taken >= self._flow.low_mark
        holding = self._size > self.limit and reading
        if holding != self._holding:
            self._holding = holding
            (self._flow.started_holding if holding else self._flow.stopped_holding)()

    def close(self) -> bool:
        """Stop sending for good; returns the lag state to hand back to flow control."""
        with self._lock:
            if not self.closed:
                self._close("", shut=False)
            return self._lagging

    def _close(self, reason: str, shut: bool = True) -> None:
        # Called with the lock held. Shutting the socket down wakes its reader's thread
        # (blocked in recv) so that it leaves; closing the socket is left to its owner.
        self.closed = True
        self.reason = self.reason or reason
        self._queue.clear()
        self._size = 0
        if self._lagging:  # a closed outbox lags no more: its thread may take a while to leave
            self._lagging = False
            self._flow.stopped_lagging()
        if self._holding:
            self._holding = False
            self._flow.stopped_holding()
        self._flusher.forget(self)
        if shut:
            shut_down(self.sock)


def shut_down(sock: socket.socket) -> None:
    """Wake every thread blocked on `sock` and send FIN after what is already sent.

    On Linux, close() from another thread does not wake a thread blocked in recv()
    on the same socket; shutdown() does (recv returns b""). So a socket is shut
    down to wake its reader, and closed only by the thread that owns it.
    """
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down, or the peer is gone: either way nobody is left to wake


class Flusher:
    """The one thread that writes queued output as sockets drain.

    Outboxes `arm` themselves when they hold a backlog; the flusher waits in epoll
    for any of those sockets to become writable (one-shot, so an idle writable
    socket never spins it) and calls that outbox's `flush`. It also runs the
    room's few timed jobs (`call_later`): the epoll wait times out when one is due.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        # An eventfd in the epoll set lets stop() wake the thread with no timeout loop.
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._outboxes: dict[int, Outbox] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._timers: list[tuple[float, int, Callable[[], None]]] = []  # a heap, soonest first
        self._order = itertools.count()  # ties keep their order, and never compare callables
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

    def call_later(self, delay: float, job: Callable[[], None]) -> None:
        """Run `job` in the flusher's thread in `delay` seconds (never, once stopping)."""
        with self._lock:
            if self._stopping:
                return
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), job))
            os.eventfd_write(self._wake, 1)  # it may be waiting with no timeout, or a later one

    def _run(self) -> None:
        while True:
            with self._lock:
                # Looked at before every wait, not only when woken: stop() and call_later()
                # wake the thread through the same eventfd, and one read takes both wakes.
                if self._stopping:
                    return
                due = self._timers[0][0] if self._timers else None
            timeout = -1.0 if due is None else max(0.0, due - time.monotonic())
            for fd, _ in self._epoll.poll(timeout):
                if fd == self._wake:
                    os.eventfd_read(self._wake)  # stopping, or a timer was added: look again
                    continue
                with self._lock:
                    outbox = self._outboxes.get(fd)
                if outbox is not None:
                    outbox.flush()
            self._run_due_jobs()

    def _run_due_jobs(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._timers or self._timers[0][0] > now or self._stopping:
                    return
                _, _, job = heapq.heappop(self._timers)
            try:
                job()
            except Exception:  # a bug in one job must not end the thread every slow reader needs
                logger.exception("flusher: a timed job failed")

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
