"""The chat room: who is connected, under which name, and how lines reach them.

Every write to the room happens under its one lock: a line said, a notice, a
reply, a welcome. So every member hears the room in the same order, a reply
(`/who`) comes after everything the room was told before it, and a newcomer's
welcome comes before anything said after it joined. A write never waits for a
reader (outbox.py): what a socket does not take at once waits in that reader's
backlog, which a thread of its own then writes.

A member who said a line then waits, outside the lock, while any reader lags and
still reads (lag.py). Notices, replies and private lines never wait: they are
small, and a thread that leaves must never wait.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from dataclasses import dataclass

from section_a import protocol
from section_a.lag import LagRules
from section_a.outbox import Outbox, Pace
from section_a.sockets import peer_name, shut_down

logger = logging.getLogger(__name__)

MAX_CLIENTS = 1024  # members at once; a newcomer over it gets one line and is closed
LEAVE_TIMEOUT = 1.0  # seconds a leaving member's thread waits for its writer to end


@dataclass(eq=False, slots=True)
class Member:
    """One connected client: its name, its address and its output."""

    name: str
    peer: str
    outbox: Outbox


class ChatRoom:
    """The members of one chat, and the routing of lines between them."""

    def __init__(self, max_clients: int = MAX_CLIENTS, rules: LagRules | None = None) -> None:
        self.max_clients = max_clients
        self.rules = rules or LagRules()
        self.pace = Pace()  # where senders wait while a reader lags
        self.closing = threading.Event()  # set once, by close()
        self._lock = threading.Lock()
        self._members: dict[str, Member] = {}  # lower-cased name -> member, in joining order
        self._guests = itertools.count(1)

    def join(self, conn: socket.socket, addr: object) -> Member | None:
        """Admit a new connection under a guest name, or refuse it (None)."""
        peer = peer_name(addr)
        with self._lock:
            if self.closing.is_set():
                refusal = protocol.SHUTTING_DOWN
            elif len(self._members) >= self.max_clients:
                refusal = protocol.error(protocol.SERVER_FULL)
            else:
                name = next(n for i in self._guests if (n := f"guest-{i}") not in self._members)
                member = Member(name, peer, Outbox(conn, self.rules, self.pace, f"writer-{peer}"))
                member.outbox.send(protocol.welcome(name, [m.name for m in self._members.values()]))
                self._broadcast(protocol.joined(name))
                self._members[name] = member
                count = len(self._members)
                refusal = b""
        if refusal:
            logger.warning("refused %s: %s", peer, refusal.decode().strip())
            try:
                conn.send(refusal, socket.MSG_DONTWAIT)  # never waits: a refused peer may not read
            except OSError:
                pass  # it is being refused anyway: nothing more to tell it
            shut_down(conn)
            return None
        logger.info("%s joined from %s; %d clients", name, peer, count)
        return member

    def leave(self, member: Member, why: str = "") -> None:
        """Remove `member` (once) and tell the others, unless the room is closing.

        `why` it left is for the log; why the server cut it (its outbox's reason), for all.
        """
        with self._lock:
            if self._members.get(member.name.lower()) is not member:  # it has left already
                return
            del self._members[member.name.lower()]
            count = len(self._members)
            cut = member.outbox.reason
            if not self.closing.is_set():  # once closing, everyone is leaving: nobody to tell
                self._broadcast(protocol.left(member.name, cut))
        member.outbox.close(LEAVE_TIMEOUT)  # ends and joins its writer, if it has one
        # No thread count here: threading.active_count() takes a lock that every thread
        # start and end takes too (about 5% of a churn's CPU); /proc counts them for free.
        (logger.warning if cut else logger.info)(
            "%s left (%s)%s; %d clients",
            member.name,
            member.peer,
            f": {cut or why}" if cut or why else "",
            count,
        )

    def say(self, member: Member, data: bytes) -> None:
        """Give what `member` said to everyone else; return once no reader that reads lags."""
        with self._lock:
            self._broadcast(data, skip=member)
        self.pace.wait()

    def tell(self, member: Member, data: bytes) -> None:
        """Send `data` to `member` alone, after everything the room was told before it."""
        with self._lock:
            member.outbox.send(data)

    def who(self, member: Member) -> None:
        """Tell `member` who is here."""
        with self._lock:
            names = [m.name for m in self._members.values()]
            member.outbox.send(protocol.notice(f"here now ({len(names)}): {', '.join(names)}"))

    def rename(self, member: Member, new: str) -> str | None:
        """Give `member` the name `new`; returns why not, or None when done."""
        problem = protocol.name_problem(new)
        if problem:
            return problem
        with self._lock:
            holder = self._members.get(new.lower())
            if holder is not None and holder is not member:
                return f"the name {new} is taken"
            old = member.name
            if old == new:
                return None
            self._members = {  # in the same place: /who keeps the order of joining
                new.lower() if m is member else key: m for key, m in self._members.items()
            }
            member.name = new
            self._broadcast(protocol.renamed(old, new), skip=member)
        logger.info("%s is now %s", old, new)
        return None

    def find(self, name: str) -> Member | None:
        return self._members.get(name.lower())

    def _broadcast(self, data: bytes, skip: Member | None = None) -> None:
        # Called with the lock held: one send to every member but `skip`, none of them waits.
        for member in self._members.values():
            if member is not skip:
                member.outbox.send(data)

    def close(self) -> None:
        """Tell everyone the server is going, and wake every member's thread to leave.

        New joins are refused from now on; waiting senders are released. The
        members' threads then leave by themselves; their owner joins them.
        """
        with self._lock:
            self.closing.set()
            members = list(self._members.values())
            self._broadcast(protocol.SHUTTING_DOWN)
        self.pace.release()
        for member in members:
            shut_down(member.outbox.sock)
        logger.info("told %d clients the server is shutting down", len(members))
