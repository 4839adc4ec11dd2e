"""The chat room: who is connected, under which name, and how lines reach them.

The room is shared by every client thread, so it is the one place with shared
state, and it keeps its lock short: the lock guards the member list and the
names, and is never held across a send. A broadcast iterates over a snapshot of
the members (a tuple, replaced on every join and leave) and hands the bytes to
each member's `Outbox`, which never blocks (see outbox.py). So a reader that
stops reading costs the others nothing: its own backlog grows until the room
cuts it, while everyone else goes on.

When the whole room lags, the senders are slowed instead (see flow.py): the
room counts members whose backlog is high, and the sessions wait on
`flow.wait_for_room()` before they read more.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from dataclasses import dataclass

from section_a import protocol
from section_a.fanout import Fanout
from section_a.flow import FlowControl
from section_a.outbox import Flusher, Outbox, shut_down

logger = logging.getLogger(__name__)

MAX_CLIENTS = 1024  # members at once; a newcomer over it gets one line and is closed
SENDQ = 1024 * 1024  # bytes of backlog a member may have before it is cut


@dataclass(eq=False)
class Member:
    """One connected client: its name, its address and its output."""

    name: str
    peer: str
    outbox: Outbox
    since: int = 0  # the room's entry that announced it: it is sent only later ones

    def send(self, data: bytes) -> bool:
        return self.outbox.send(data)


def peer_name(addr: object) -> str:
    """`host:port` for an IPv4 or IPv6 address tuple."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


class ChatRoom:
    """The members of one chat, and the routing of lines between them."""

    def __init__(
        self,
        max_clients: int = MAX_CLIENTS,
        sendq: int = SENDQ,
        max_line: int = protocol.MAX_LINE,
        rate: float = 0.0,
        burst: int = 1,
    ) -> None:
        self.max_clients = max_clients
        self.sendq = sendq
        self.max_line = max_line
        self.rate = rate  # lines a second per client; 0: no flood control
        self.burst = burst
        self.closing = threading.Event()  # set once, by close()
        self.flow = FlowControl(sendq)
        self._flusher = Flusher()
        self._lock = threading.Lock()
        self._members: tuple[Member, ...] = ()
        self._names: dict[str, Member] = {}  # lower-cased name -> member
        self._guests = itertools.count(1)
        self._fanout = Fanout(
            self._lock, lambda: self._members, self.flow.low_mark, self._flusher.call_later
        )
        self._flusher.start()

    @property
    def members(self) -> tuple[Member, ...]:
        return self._members

    def join(self, conn: socket.socket, addr: object) -> Member | None:
        """Admit a new connection under a guest name, or refuse it (None)."""
        peer = peer_name(addr)
        with self._lock:
            refusal = (
                protocol.SHUTTING_DOWN
                if self.closing.is_set()
                else protocol.error(protocol.SERVER_FULL)
                if len(self._members) >= self.max_clients
                else None
            )
            if refusal is None:
                name = next(n for n in (f"guest-{i}" for i in self._guests) if n not in self._names)
                others = [m.name for m in self._members]
                # The welcome is queued first, so it is the first line whatever else races in.
                outbox = Outbox(
                    conn, self.sendq, self._flusher, self.flow, protocol.welcome(name, others)
                )
                member = Member(name, peer, outbox)
                # Told of the newcomer: exactly those its welcome names as here (since < it).
                member.since = self._fanout.post_later(protocol.joined(name), exclude=member)
                self._members += (member,)
                self._names[name] = member
                count = len(self._members)
        if refusal is not None:
            logger.warning("refused %s: %s", peer, refusal.decode().strip())
            refuse(conn, refusal)
            return None
        self.flow.member_joined()
        outbox.flush()
        logger.info(
            "%s joined from %s; %d clients, %d threads",
            name,
            peer,
            count,
            threading.active_count(),
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
            cut = member.outbox.reason or cut  # the outbox's reason: it gave up on this reader
            # Once the room is closing, everyone is leaving: nobody needs telling.
            closing = self.closing.is_set()
            if not closing:
                self._fanout.post_later(protocol.left(member.name, cut))
        self.flow.member_left(lagging=member.outbox.close())
        # This thread is still running: it ends right after, so it is not counted.
        (logger.warning if cut else logger.info)(
            "%s left (%s)%s; %d clients, %d threads",
            member.name,
            member.peer,
            f": {cut or why}" if cut or why else "",
            count,
            threading.active_count() - 1,
        )

    def broadcast(self, data: bytes, exclude: Member | None = None) -> None:
        """Give `data` to every member but `exclude`; returns once it is handed to all.

        Never blocks on a reader: at most it waits for a pass already under way.
        """
        with self._lock:
            number = self._fanout.post(data, exclude)
        self._fanout.deliver(number)

    def tell(self, member: Member, data: bytes) -> None:
        """Send `data` to `member` alone, after everything the room was told before it."""
        self._fanout.settle()
        member.send(data)

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
            notice = self._fanout.post(protocol.renamed(old, new), member) if old != new else 0
        if notice:
            self._fanout.deliver(notice)
            logger.info("%s is now %s", old, new)
        return None

    def find(self, name: str) -> Member | None:
        return self._names.get(name.lower())

    def names(self) -> list[str]:
        return [m.name for m in self._members]

    def close(self) -> None:
        """Tell everyone the server is going, and wake every member's thread to leave.

        New joins are refused from now on; paused senders are released. The
        members' threads then leave by themselves; their owner joins them.
        """
        self._fanout.settle()  # who came and went, before the news that the server is going
        with self._lock:
            self.closing.set()  # under the lock: no join slips in after the snapshot
            members = self._members
        self.flow.close()
        for member in members:
            member.outbox.send(protocol.SHUTTING_DOWN)
            shut_down(member.outbox.sock)
        logger.info("told %d clients the server is shutting down", len(members))

    def stop_flusher(self, timeout: float | None = None) -> None:
        """End the room's flusher thread (after every member has left)."""
        self._flusher.stop(timeout)


def refuse(conn: socket.socket, line: bytes) -> None:
    """Send one line to a connection that will not be served (never blocks)."""
    try:
        conn.send(line, socket.MSG_DONTWAIT)
    except OSError:
        pass  # it is being refused anyway; nothing more to tell it
    shut_down(conn)
