"""A reader's output: a send that never waits, a backlog, and a writer thread while it has one.

Whoever writes to a reader (the room, in the sending client's thread) must never
wait for that reader. So a write is one send() that does not wait (MSG_DONTWAIT);
what the socket does not take waits in the reader's `Outbox`, and anything newer
goes behind it. A backlog has a thread of its own, the *writer*, made when the
backlog appears and ended when it is empty; it blocks in send(), as any thread may,
because nobody waits for it:

    sender's thread                    writer thread (only while there is a backlog)
    ---------------                    ----------------------------------------------
    room.say() -> Outbox.send()        send(backlog)  blocks, at most PATIENCE a call
        | send(MSG_DONTWAIT)               |  (SO_SNDTIMEO: the kernel ends the wait)
        | the rest -> backlog              v
        | starts the writer            judges its reader by lag.py after each send:
        v                              caught up, stalled, or cut
    Pace.wait(): while a reader lags   (the writer tells the Pace; the member's thread
    and reads, its senders wait         joins the writer when it leaves)
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field

from section_a.lag import LagRules
from section_a.sockets import set_deadline, shut_down

logger = logging.getLogger(__name__)


class Pace:
    """The readers that lag and still read: a member who said a line waits while there are any.

    A writer adds its outbox when its reader starts lagging and removes it once it
    caught up, stalled or was cut. Its sends return every PATIENCE at the latest, so
    a waiting sender is always woken by someone.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.lagging: set[Outbox] = set()
        self._open = True
        self.waiting = 0  # senders waiting now (for logs and tests)
        self.waits = 0  # how many times a sender had to wait, in all

    def mark(self, outbox: Outbox, waited_for: bool) -> None:
        with self._changed:
            if waited_for:
                self.lagging.add(outbox)
            else:
                self.lagging.discard(outbox)
                if not self.lagging:
                    self._changed.notify_all()

    def wait(self) -> None:
        """Return once no reader that reads lags (at once, mostly), or the room closes."""
        if not self.lagging:  # the common case, without the lock: a reader that starts
            return  # to lag just now holds up the next line said, not this one
        with self._changed:
            if self.lagging and self._open:
                logger.debug("a sender waits: %d readers lag", len(self.lagging))
                self.waits += 1
                self.waiting += 1
                self._changed.wait_for(lambda: not (self.lagging and self._open))
                self.waiting -= 1

    def release(self) -> None:
        """Nobody waits any more: the room is closing."""
        with self._changed:
            self._open = False
            self._changed.notify_all()


@dataclass(eq=False, slots=True)  # one per client: slots, no __dict__ for each
class Outbox:
    """What one reader has still to be sent, and the rules it is judged by."""

    sock: socket.socket
    rules: LagRules
    pace: Pace
    name: str = "writer"  # its writer thread's
    # Its state, from then on (0.0: not since any time):
    backlog: int = 0  # bytes given to send() that the socket has not taken yet
    lagging_since: float = 0.0  # monotonic time it started to lag
    stalled_since: float = 0.0  # since when its socket took nothing
    closed: bool = False
    reason: str = ""  # why it was cut, if it was
    _pending: list[bytes] = field(default_factory=list)  # the backlog, less the writer's hand
    _writer: threading.Thread | None = None
    _writing: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # Linux would let the kernel's buffer grow to 4 MiB: a stuck reader would hold
        # that much more than --sendq says.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.rules.sendq)
        if self.sock.family in (socket.AF_INET, socket.AF_INET6):
            # Chat lines are small and wanted now: no Nagle delay waiting for an ACK.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        """Send `data` after everything before it, without waiting for the reader.

        Only the room calls this, under its lock: one call at a time. So while no writer
        runs, nothing else uses the socket, and the common case, a socket that takes it
        all, needs no lock of ours. Only this method sets `_writing`, and only the writer,
        as its last act, clears it.
        """
        if self.closed:  # for good: set once, under the lock, and never cleared
            return
        if not self._writing:  # nothing waits: the socket may take it all at once
            try:  # one send that never waits: the room writes under its lock
                sent = self.sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:  # the peer is gone: its own thread finds out in recv()
                with self._lock:
                    self._close()
                return
            if sent == len(data):
                return
            data = data[sent:]
        with self._lock:
            if self.closed:
                return
            if not self._writing:
                self._writing = True
                self._writer = threading.Thread(target=self._write, name=self.name)
                self._writer.start()
            self._pending.append(data)
            self.backlog += len(data)
            why = self._judge(time.monotonic())
        if why:
            self.cut(why)

    def _write(self) -> None:
        # The writer thread: blocking sends, until the backlog is empty or the reader goes.
        # Each waits PATIENCE at most. Set here, by the one thread that blocks in send(),
        # not as the reader joins: setsockopt() with a bytes value takes the stack of every
        # client thread a page (4 KiB) deeper, for good (bench: memory per idle client).
        try:
            set_deadline(self.sock, socket.SO_SNDTIMEO, self.rules.patience)
        except OSError:  # closed under us: the reader is gone
            self.close()
            return
        while True:
            with self._lock:
                if self.closed or not self._pending:
                    self._writing = False
                    return
                data = memoryview(b"".join(self._pending))
                self._pending.clear()
            while data:
                try:
                    sent = self.sock.send(data)  # at most PATIENCE: SO_SNDTIMEO
                except BlockingIOError:  # it took nothing for PATIENCE
                    sent = 0
                except OSError:  # reset, or shut down to wake us: the reader is gone
                    self.close()
                    return
                data = data[sent:]
                with self._lock:
                    if self.closed:
                        return
                    self.backlog -= sent
                    now = time.monotonic()
                    if sent:
                        self.stalled_since = 0.0
                    elif not self.stalled_since:  # nothing taken since the send began
                        self.stalled_since = now - self.rules.patience
                    why = self._judge(now)
                if why:
                    self.cut(why)
                    return

    def _judge(self, now: float) -> str:
        # Called with the lock held: lag.py's rules applied; the Pace told; why to cut, or "".
        if not self.lagging_since and self.rules.lags(self.backlog):
            self.lagging_since = now
        elif self.lagging_since and self.rules.caught_up(self.backlog):
            self.lagging_since = 0.0
        self.pace.mark(self, bool(self.lagging_since and not self.stalled_since))
        return self.rules.why_cut(now, self.backlog, self.lagging_since, self.stalled_since)

    def cut(self, reason: str) -> None:
        """Give up on this reader: drop its backlog and wake its thread, which then leaves."""
        with self._lock:
            if self.closed:
                return
            self.reason = reason
            self._close()
        shut_down(self.sock)

    def close(self, timeout: float | None = None) -> None:
        """Stop sending for good, and join the writer (the member's thread, as it leaves)."""
        with self._lock:
            self._close()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            if writer.is_alive():
                shut_down(self.sock)  # wakes its send(): close() would not
            writer.join(timeout)

    def _close(self) -> None:
        # Called with the lock held.
        self.closed = True
        self._pending.clear()
        self.backlog = 0
        if self.lagging_since:  # the Pace knows only readers that lag
            self.lagging_since = 0.0
            self.pace.mark(self, False)
