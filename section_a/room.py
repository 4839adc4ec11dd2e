"""The chat room: who is connected, under which name, and how lines reach them.

Everything the room sends goes out under its one lock, so every member hears the
room in the same order and a reply (`/who`) comes after everything the room was
told before it. A line said or a notice joins the room's queue first, and whoever
holds the lock next writes everything queued by then, one send per reader: when
many say at once, or many join or leave, each reader gets the lot in one send,
and those that came second find theirs already written. A member gets what was
queued after it joined, never before. A write never blocks (outbox.py): what a
socket does not take waits in its backlog.

A member who said a line then waits while any reader lags (its backlog is past
--sendq): a room that writes faster than it is read slows its senders, whose
clients then wait in TCP, rather than losing lines or cutting readers that read.
A reader that lags and stopped reading, or lags too long, is cut (lag.py has the
rules, docs/delivery.md the reasoning). The waiting senders are the clock that
judges the laggards: nobody else needs to look at them.

Notices, replies and private lines never wait: they are small, and a thread that
leaves must never wait.
"""

from __future__ import annotations

import itertools
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass

from section_a import protocol
from section_a.lag import LagRules
from section_a.outbox import Flusher, Outbox, SharedPages
from section_a.sockets import peer_name, refuse, shut_down

logger = logging.getLogger(__name__)

MAX_CLIENTS = 1024  # members at once; a newcomer over it gets one line and is closed


@dataclass(eq=False, slots=True)
class Member:
    """One connected client: its name, its address and its output."""

    name: str
    peer: str
    outbox: Outbox
    since: int = 0  # how many items the room had queued when it joined: it gets the later ones


class ChatRoom:
    """The members of one chat, and the routing of lines between them.

    Two locks: the small one (`_queue_lock`) guards who is here and what is queued,
    and is held for a moment at a time; the room's lock (`_lock`) is held by whoever
    writes, for as long as the writing takes. So a newcomer, a leaver or a sender is
    never kept waiting by a write in progress: its item waits in the queue for the
    next one.

    Constructing a room starts no thread: `start()` starts its flusher, `stop()` ends it.
    """

    def __init__(self, max_clients: int = MAX_CLIENTS, rules: LagRules | None = None) -> None:
        self.max_clients = max_clients
        self.rules = rules or LagRules()
        self.closing = threading.Event()  # set once, by close()
        self._flusher = Flusher()
        self._lock = threading.Condition()  # senders wait on it while someone lags
        self._laggards: set[Outbox] = set()
        self._queue_lock = threading.Lock()
        self._members: tuple[Member, ...] = ()  # replaced whole: a snapshot is always safe
        self._names: dict[str, Member] = {}  # lower-cased name -> member
        self._guests = itertools.count(1)
        # What was said or announced but not written yet: (data, the member it skips),
        # in order, numbered, to know what is written and what a newcomer may get.
        self._queue: list[tuple[bytes, Member | None]] = []
        self._queued = 0  # items ever queued
        self._written = 0  # of those, how many have been written
        self.waiting = 0  # senders waiting now, because someone lags (for logs and tests)
        self.waits = 0  # how many times a sender had to wait, in all

    def start(self) -> None:
        self._flusher.start()

    def stop(self, timeout: float | None = None) -> None:
        """End the room's flusher thread (after every member has left)."""
        self._flusher.stop(timeout)

    # ------------------------------------------------------------------ arriving, leaving

    def join(self, conn: socket.socket, addr: object) -> Member | None:
        """Admit a new connection under a guest name, or refuse it (None)."""
        peer = peer_name(addr)
        outbox = Outbox(conn, self.rules, self._flusher)
        outbox.on_caught_up = self._caught_up
        with self._queue_lock:
            if self.closing.is_set():
                refusal = protocol.SHUTTING_DOWN
            elif len(self._members) >= self.max_clients:
                refusal = protocol.error(protocol.SERVER_FULL)
            else:
                name = next(n for n in (f"guest-{i}" for i in self._guests) if n not in self._names)
                member = Member(name, peer, outbox)
                # Nobody writes to it before it is a member: its welcome goes first.
                outbox.send(protocol.welcome(name, [m.name for m in self._members]))
                # Its notice is the last item it does not get: it goes to those the welcome names.
                member.since = self._enqueue(protocol.joined(name))
                self._members += (member,)
                self._names[name] = member
                count = len(self._members)
                refusal = b""
        if refusal:
            logger.warning("refused %s: %s", peer, refusal.decode().strip())
            refuse(conn, refusal)
            return None
        self._deliver(member.since)
        logger.info(
            "%s joined from %s; %d clients, %d threads", name, peer, count, threading.active_count()
        )
        return member

    def leave(self, member: Member, why: str = "", cut: str = "") -> None:
        """Remove `member` (once) and tell the others, unless the room is closing.

        `why` is for the log; `cut`, why the server disconnected the member, is for all.
        """
        with self._queue_lock:
            if self._names.get(member.name.lower()) is not member:  # it has left already
                return
            at = self._members.index(member)
            self._members = self._members[:at] + self._members[at + 1 :]
            del self._names[member.name.lower()]
            count = len(self._members)
            cut = member.outbox.reason or cut
            member.outbox.close()
            # Once closing, everyone is leaving: nobody to tell.
            notice = 0 if self.closing.is_set() else self._enqueue(protocol.left(member.name, cut))
        with self._lock:
            self._forget_laggard(member.outbox)
            if self._written < notice:
                self._write_queue()
        # This thread is still running: it ends right after, so it is not counted.
        (logger.warning if cut else logger.info)(
            "%s left (%s)%s; %d clients, %d threads",
            member.name,
            member.peer,
            f": {cut or why}" if cut or why else "",
            count,
            threading.active_count() - 1,
        )

    # ------------------------------------------------------------------ lines

    def say(self, member: Member, data: bytes) -> None:
        """Give what `member` said to everyone else; return once nobody lags.

        The line joins the room's queue before this thread waits for the lock, and
        whoever holds the lock next writes everything queued: the lines of every
        sender that waited meanwhile go to each reader in one send.
        """
        with self._queue_lock:
            mine = self._enqueue(data, skip=member)
        with self._lock:
            if self._written < mine:  # nobody has written it for us meanwhile
                self._write_queue()
            self._wait_while_anyone_lags()

    def tell(self, member: Member, data: bytes) -> None:
        """Send `data` to `member` alone, after everything the room was told before it."""
        with self._lock:
            self._write_queue()
            self._send(member, data)

    def who(self, member: Member) -> None:
        """Tell `member` who is here, in the order of what it was told."""
        with self._lock:
            names = [m.name for m in self._write_queue()]
            self._send(member, protocol.notice(f"here now ({len(names)}): {', '.join(names)}"))

    def rename(self, member: Member, new: str) -> str | None:
        """Give `member` the name `new`; returns why not, or None when done."""
        problem = protocol.name_problem(new)
        if problem:
            return problem
        with self._queue_lock:
            holder = self._names.get(new.lower())
            if holder is not None and holder is not member:
                return f"the name {new} is taken"
            old = member.name
            del self._names[old.lower()]
            self._names[new.lower()] = member
            member.name = new
            notice = self._enqueue(protocol.renamed(old, new), skip=member) if old != new else 0
        if notice:
            self._deliver(notice)
            logger.info("%s is now %s", old, new)
        return None

    def find(self, name: str) -> Member | None:
        return self._names.get(name.lower())

    # ------------------------------------------------------------------ the queue

    def _enqueue(self, data: bytes, skip: Member | None = None) -> int:
        # Called with the queue lock held: `data` for every member but `skip`; its number.
        self._queue.append((data, skip))
        self._queued += 1
        return self._queued

    def _deliver(self, number: int) -> None:
        # Make sure the queue's item `number` is written, by this thread if nobody has.
        with self._lock:
            if self._written < number:
                self._write_queue()

    def _write_queue(self) -> tuple[Member, ...]:
        # Called with the lock held: every queued item to each member it is for, one send
        # each. Returns the members written to: those whose joining is written too.
        with self._queue_lock:
            queue, self._queue = self._queue, []
            done, self._written = self._written, self._queued
            members = self._members
        if not queue:
            return members
        everything = b"".join(data for data, _ in queue)
        skipped = {skip for _, skip in queue}
        with SharedPages(everything, readers=len(members) - len(skipped)) as pages:
            for member in members:
                late = max(member.since - done, 0)  # items queued before it joined: not for it
                if member in skipped or late:  # a part of it: a copy of its own
                    parts = [data for data, skip in queue[late:] if skip is not member]
                    data, given = b"".join(parts), -1
                else:
                    data, given = everything, pages
                if data and member.outbox.send(data, given):
                    self._laggards.add(member.outbox)
        return members

    def _send(self, member: Member, data: bytes) -> None:
        # Called with the lock held: `data` to `member` alone.
        if member.outbox.send(data):
            self._laggards.add(member.outbox)

    # ------------------------------------------------------------------ readers that lag

    def _wait_while_anyone_lags(self) -> None:
        # Called with the lock held. Returns once nobody lags, cutting the laggards that
        # must go as it looks at them.
        while self._laggards and not self.closing.is_set():
            now = time.monotonic()
            wake = math.inf
            for outbox in list(self._laggards):
                if not outbox.lagging_since:  # caught up meanwhile, or cut
                    self._forget_laggard(outbox)
                    continue
                why = self.rules.why_cut(now, outbox.lagging_since, outbox.last_taken)
                if why:
                    logger.debug("cutting a reader: %s", why)
                    outbox.cut(why)  # its thread wakes, and leaves
                    self._forget_laggard(outbox)
                else:
                    wake = min(wake, self.rules.next_look(outbox.lagging_since, outbox.last_taken))
            if self._laggards:
                logger.debug("a sender waits: %d readers lag", len(self._laggards))
                self.waiting += 1
                self.waits += 1
                self._lock.wait(wake - now)
                self.waiting -= 1

    def _caught_up(self, outbox: Outbox) -> None:
        # The flusher, once a laggard has caught up.
        with self._lock:
            self._forget_laggard(outbox)

    def _forget_laggard(self, outbox: Outbox) -> None:
        # Called with the lock held.
        self._laggards.discard(outbox)
        if not self._laggards:
            self._lock.notify_all()  # the waiting senders go on

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Tell everyone the server is going, and wake every member's thread to leave.

        New joins are refused from now on; waiting senders are released. The
        members' threads then leave by themselves; their owner joins them.
        """
        with self._lock:
            with self._queue_lock:  # no join slips in after this
                self.closing.set()
            self._lock.notify_all()
            members = self._write_queue()  # what was said before goes out before the goodbye
            for member in members:
                member.outbox.send(protocol.SHUTTING_DOWN)
        for member in members:
            shut_down(member.outbox.sock)
        logger.info("told %d clients the server is shutting down", len(members))
