"""The chat room: who is connected, under which name, and how lines reach them.

Everything the room sends goes out under its one lock, so every member hears the
room in the same order and a reply (`/who`) comes after everything the room was
told before it. A notice is written by the thread that produced it. A line said
joins the room's queue first, and whoever holds the lock next writes every line
queued by then: when many say at once, each reader gets their lines in one send,
and the senders that came second find their line already written. A write never
blocks (outbox.py): what a socket does not take waits in its backlog.

A member's line waits while any reader lags (its backlog is past --sendq): a
room that writes faster than it is read slows its senders, whose clients then
wait in TCP, rather than losing lines or cutting readers that read. A reader that
lags and stopped reading, or lags too long, is cut (lag.py has the rules,
docs/delivery.md the reasoning). The waiting senders are the clock that judges
the laggards: nobody else needs to look at them.

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
from section_a.outbox import Flusher, Outbox
from section_a.sockets import peer_name, shut_down

logger = logging.getLogger(__name__)

MAX_CLIENTS = 1024  # members at once; a newcomer over it gets one line and is closed


@dataclass(eq=False, slots=True)
class Member:
    """One connected client: its name, its address and its output."""

    name: str
    peer: str
    outbox: Outbox


class ChatRoom:
    """The members of one chat, and the routing of lines between them.

    Constructing a room starts no thread: `start()` starts its flusher, and
    `stop()` (after every member has left) ends it.
    """

    def __init__(self, max_clients: int = MAX_CLIENTS, rules: LagRules | None = None) -> None:
        self.max_clients = max_clients
        self.rules = rules or LagRules()
        self.closing = threading.Event()  # set once, by close()
        self._flusher = Flusher()
        self._lock = threading.Condition()  # senders wait on it while someone lags
        self._members: tuple[Member, ...] = ()  # replaced whole: a snapshot is always safe
        self._names: dict[str, Member] = {}  # lower-cased name -> member
        self._laggards: set[Outbox] = set()
        # Lines said but not written yet: (line, sender), in order. Senders append under
        # the small queue lock, without waiting for the room's; numbered to know who is done.
        self._queue_lock = threading.Lock()
        self._queue: list[tuple[bytes, Member]] = []
        self._queued = 0  # lines ever queued
        self._written = 0  # of those, how many have been written
        self._guests = itertools.count(1)
        self.waiting = 0  # senders waiting now, because someone lags (for logs and tests)
        self.waits = 0  # how many times a sender had to wait, in all

    def start(self) -> None:
        self._flusher.start()

    def stop(self, timeout: float | None = None) -> None:
        """End the room's flusher thread (after every member has left)."""
        self._flusher.stop(timeout)

    @property
    def members(self) -> tuple[Member, ...]:
        return self._members

    # ------------------------------------------------------------------ arriving, leaving

    def join(self, conn: socket.socket, addr: object) -> Member | None:
        """Admit a new connection under a guest name, or refuse it (None)."""
        peer = peer_name(addr)
        with self._lock:
            if self.closing.is_set():
                refusal = protocol.SHUTTING_DOWN
            elif len(self._members) >= self.max_clients:
                refusal = protocol.error(protocol.SERVER_FULL)
            else:
                name = next(n for n in (f"guest-{i}" for i in self._guests) if n not in self._names)
                outbox = Outbox(conn, self.rules, self._flusher)
                outbox.on_caught_up = self._caught_up
                member = Member(name, peer, outbox)
                self._send(member, protocol.welcome(name, [m.name for m in self._members]))
                self._write(protocol.joined(name))  # told: exactly those the welcome names
                self._members += (member,)
                self._names[name] = member
                count = len(self._members)
                refusal = b""
        if refusal:
            logger.warning("refused %s: %s", peer, refusal.decode().strip())
            refuse(conn, refusal)
            return None
        logger.info(
            "%s joined from %s; %d clients, %d threads", name, peer, count, threading.active_count()
        )
        return member

    def leave(self, member: Member, why: str = "", cut: str = "") -> None:
        """Remove `member` (once) and tell the others, unless the room is closing.

        `why` is for the log; `cut`, why the server disconnected the member, is for all.
        """
        with self._lock:
            if member not in self._members:
                return
            self._members = tuple(m for m in self._members if m is not member)
            del self._names[member.name.lower()]
            count = len(self._members)
            cut = member.outbox.reason or cut
            member.outbox.close()
            self._forget_laggard(member.outbox)
            if not self.closing.is_set():  # once closing, everyone is leaving: nobody to tell
                self._write(protocol.left(member.name, cut))
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
        """Give what `member` said to everyone else, once nobody lags.

        The line joins the room's queue before this thread waits for the lock, and
        whoever holds the lock next writes everything queued: the lines of every
        sender that waited meanwhile go to each reader in one send.
        """
        with self._queue_lock:
            self._queue.append((data, member))
            self._queued += 1
            mine = self._queued
        with self._lock:
            self._wait_while_anyone_lags()
            if self._written < mine:  # nobody has written it for us meanwhile
                self._write_queue()

    def tell(self, member: Member, data: bytes) -> None:
        """Send `data` to `member` alone, after everything the room was told before it."""
        with self._lock:
            self._send(member, data)

    def who(self, member: Member) -> None:
        """Tell `member` who is here, in the order of what it was told."""
        with self._lock:
            names = [m.name for m in self._members]
            self._send(member, protocol.notice(f"here now ({len(names)}): {', '.join(names)}"))

    def rename(self, member: Member, new: str) -> str | None:
        """Give `member` the name `new`; returns why not, or None when done."""
        problem = protocol.name_problem(new)
        if problem:
            return problem
        with self._lock:
            holder = self._names.get(new.lower())
            if holder is not None and holder is not member:
                return f"the name {new} is taken"
            old = member.name
            del self._names[old.lower()]
            self._names[new.lower()] = member
            member.name = new
            if old != new:
                self._write(protocol.renamed(old, new), exclude=member)
        if old != new:
            logger.info("%s is now %s", old, new)
        return None

    def find(self, name: str) -> Member | None:
        return self._names.get(name.lower())

    def _write_queue(self) -> None:
        # Called with the lock held: every queued line to every member but its sender.
        with self._queue_lock:
            queue, self._queue = self._queue, []
            self._written = self._queued
        if len(queue) == 1:
            data, sender = queue[0]
            self._write(data, exclude=sender)
            return
        everything = b"".join(data for data, _ in queue)
        senders = {sender for _, sender in queue}
        for member in self._members:
            if member in senders:  # all but its own
                data = b"".join(data for data, sender in queue if sender is not member)
            else:
                data = everything
            if data and member.outbox.send(data):
                self._laggards.add(member.outbox)

    def _write(self, data: bytes, exclude: Member | None = None) -> None:
        # Called with the lock held: `data` to every member but `exclude`.
        for member in self._members:
            if member is not exclude and member.outbox.send(data):
                self._laggards.add(member.outbox)

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
            self.closing.set()  # under the lock: no join slips in after the snapshot
            self._lock.notify_all()
            members = self._members
            for member in members:
                member.outbox.send(protocol.SHUTTING_DOWN)
        for member in members:
            shut_down(member.outbox.sock)
        logger.info("told %d clients the server is shutting down", len(members))


def refuse(conn: socket.socket, line: bytes) -> None:
    """Send one line to a connection that will not be served (never blocks)."""
    try:
        conn.send(line, socket.MSG_DONTWAIT)
    except OSError:
        pass  # it is being refused anyway; nothing more to tell it
    shut_down(conn)
