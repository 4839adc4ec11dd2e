"""Group delivery: every line for the room goes through one queue, one send per reader a pass.

A line for the whole room costs one send() per reader. At 1,000 readers that is
1,000 system calls a line, and a thread that does them one line at a time pays
the kernel 1,000 times for every line, however many lines arrive together. So
the room delivers the way a database commits its log (a "group commit"):

    thread A: post(line a) -- nobody delivering: A delivers ----- pass 1: a --+
    thread B:   post(line b) -- A is: wait --------------+                    |
    thread C:     post(line c) -- A is: wait ------------+--> B delivers: pass 2: b c
                                                             (C's line went with it)

A thread that posts a line always waits until the line is delivered, so when it
goes on (reads its next line, answers a command) everything it posted before is
out, exactly as if it had sent the line itself. While one thread delivers, the
lines posted meanwhile gather; when it is done, one of their posters takes what
gathered in one pass: one send() per reader for all of them. When the room is
quiet a pass carries one line and costs what sending it directly would; the
busier the room, the more lines a pass carries. A thread delivers until its own
line is out and no further, so nobody's own reading is held up for long.

Notices (who joined, who left) need nobody to wait for them: they are posted
for later (`post_later`), and go out with the next line posted after them, or
within `LATER` seconds at most, delivered then by the room's flusher thread.
So the comings and goings of a busy server share passes too, and cost a joining
or leaving client's thread nothing. A reply to one member waits for what was
posted before it (`settle`): "* here now: ..." never arrives before a "joined"
that happened earlier.

A pass carries at most `max_bytes` (the room gives its flow control's low mark,
a sixteenth of --sendq): the rest waits for the next pass. So a reader's backlog
grows in small steps, and when the room lags as a whole, the flow control sees
most members over its high mark, and pauses the senders, long before any reader
nears --sendq (see flow.py). One pass of everything gathered could have pushed
a few readers past --sendq at once, before the room looked congested.

Because every line goes through one queue, everyone receives the room's lines
in the same order. Who receives an entry: every member who joined before it was
posted (`since`), except the one it names to leave out (a sender does not get
its own line back, a newcomer not its own "joined").

The lock is the room's, so that a member's joining or leaving and the notice
that says so take their place in the queue together. It is never held across a
send: sends go to each member's `Outbox`, which never blocks (see outbox.py).

Who waits is woken one by one, not all at once: a pass wakes the posters it
served, and hands the next pass to the one that has waited longest. (With a
condition's notify_all, every waiter woke and went after the room's lock at
the same moment, and all but one went back to sleep: in a churn of short
connections that was nearly half of all the waits for the room's lock.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

LATER = 0.05  # seconds a notice may wait to share a pass: too short for a person to notice

Later = Callable[[float, Callable[[], None]], None]  # runs a job in so many seconds


class Recipient(Protocol):
    """What a pass needs of a member: when it joined, and where its bytes go."""

    since: int  # the number of the entry that announced it; it gets only later ones

    def send(self, data: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class Entry:
    number: int  # entries are numbered from 1 in the order they are posted
    data: bytes
    exclude: object  # the member that must not get it, or None


class Fanout:
    """The room's queue of lines to deliver, and the group delivery of it."""

    def __init__(
        self,
        lock: threading.Lock,
        members: Callable[[], Sequence[Recipient]],
        max_bytes: int,
        later: Later,
    ) -> None:
        self._lock = lock
        # Posters waiting for a pass under way: the entry each waits for, oldest first,
        # and a lock, held until a pass wakes that poster (see _wake_after_pass).
        self._waiting: list[tuple[int, threading.Lock]] = []
        self._members = members  # called with the lock held, at the start of a pass
        self.max_bytes = max_bytes  # what one pass carries at most (always one entry)
        self._later = later
        self._due = False  # a delivery of what was posted for later is scheduled
        self._queue: list[Entry] = []
        self._posted = 0  # the number of the last entry posted
        self._delivered = 0  # every entry up to this number has been handed to its readers
        self._delivering = False
        self.passes = 0  # how many passes were made (the tests count them)

    @property
    def posted(self) -> int:
        return self._posted

    @property
    def waiting(self) -> int:
        """How many posters wait for a pass under way."""
        return len(self._waiting)

    def post(self, data: bytes, exclude: object = None) -> int:
        """Queue `data` for the room; returns its number. Call with the lock held."""
        self._posted += 1
        self._queue.append(Entry(self._posted, data, exclude))
        return self._posted

    def post_later(self, data: bytes, exclude: object = None) -> int:
        """Queue `data` with nobody to wait for it: out within LATER s. Call with the lock held."""
        number = self.post(data, exclude)
        if not self._due:
            self._schedule_due()
        return number

    def _schedule_due(self) -> None:
        # Called with the lock held: the flusher delivers what waits, LATER from now.
        self._due = True
        self._later(LATER, self._deliver_due)

    def settle(self) -> None:
        """Return once everything posted so far is delivered. Call without the lock."""
        with self._lock:
            number = self._posted
        self.deliver(number)

    def _deliver_due(self) -> None:
        # Run by the flusher's thread, LATER seconds after something was posted for later.
        with self._lock:
            self._due = False
            if self._delivering:  # that thread stops at its own entry: look again shortly
                self._schedule_due()
                return
        self.settle()

    def deliver(self, number: int) -> None:
        """Return once entry `number` has been delivered, delivering it if nobody else is.

        Call without the lock. Waits only for passes in progress and the entries ahead
        of its own, and no pass blocks.
        """
        with self._lock:
            while self._delivered < number:
                if self._delivering:
                    self._wait_for_a_pass(number)
                    continue
                self._delivering = True
                batch = self._take()
                members = self._members()
                self._lock.release()  # the pass itself runs without the lock
                try:
                    self._pass(batch, members)
                finally:
                    self._lock.acquire()
                    self._delivered = batch[-1].number
                    self._delivering = False
                    self.passes += 1
                    self._wake_after_pass()

    def _wait_for_a_pass(self, number: int) -> None:
        # Called with the lock held; returns with it held, once a pass has woken us.
        woken = threading.Lock()
        woken.acquire()
        self._waiting.append((number, woken))
        self._lock.release()
        try:
            woken.acquire()  # released by the pass that served us, or handed us the next
        finally:
            self._lock.acquire()

    def _wake_after_pass(self) -> None:
        # Called with the lock held, as a pass ends: wake the posters whose entries are
        # out, and the one that has waited longest of the rest, to deliver what gathered.
        waiting, self._waiting = self._waiting, []
        for number, woken in waiting:
            if number <= self._delivered:
                woken.release()
            else:
                self._waiting.append((number, woken))
        if self._waiting:  # (if this thread goes on to deliver its own, that one waits again)
            self._waiting.pop(0)[1].release()

    def _take(self) -> list[Entry]:
        # The oldest entries, up to max_bytes (at least one): the next pass.
        size = taken = 0
        for entry in self._queue:
            size += len(entry.data)
            if taken and size > self.max_bytes:
                break
            taken += 1
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    @staticmethod
    def _pass(batch: list[Entry], members: Sequence[Recipient]) -> None:
        """Give every member its part of `batch`: one send each."""
        first = batch[0].number
        block = b"".join(entry.data for entry in batch)
        excluded = {id(entry.exclude) for entry in batch}
        for member in members:
            if member.since < first and id(member) not in excluded:
                member.send(block)  # nearly everyone: the whole batch
                continue
            # A sender (not its own lines), or a newcomer (only what came after it joined).
            part = b"".join(
                entry.data
                for entry in batch
                if entry.exclude is not member and member.since < entry.number
            )
            if part:
                member.send(part)
