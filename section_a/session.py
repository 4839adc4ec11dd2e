"""One client's life, run in that client's own thread: join, read, act, leave.

`serve_client(room, conn, addr)` is the whole job of a client thread, and it is
the same in both servers: stage A's accept loop starts a thread that runs it, and
stage C's proactor does. It blocks in recv() on its own socket (a thread that
waits costs no CPU), feeds what arrives to the protocol's framer, and turns each
line into an action on the room. It never writes to a socket itself: replies go
through the member's outbox like everything else, so they are never blocked and
never interleaved with a broadcast.

Plain lines of one recv() are forwarded as one block, one send per recipient,
not one per line: that is most of the server's speed under load.

With flood control on (``--rate``), a `RateLimitedReader` stands between the
socket and the lines: it keeps reading, so a flooding client is noticed, but hands
out lines only as fast as the client's token bucket allows; past ``--sendq`` bytes
of lines waiting, the client is cut.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections import deque

from section_a import protocol
from section_a.flow import TokenBucket
from section_a.protocol import Blank, Help, Invalid, Me, Nick, Overlong, Quit, Say, Whisper, Who
from section_a.room import ChatRoom, Member

logger = logging.getLogger(__name__)

# Bytes read at once. It also bounds what each sender still has in hand when the room
# becomes congested and senders pause (flow.py): every reader may yet receive one read's
# worth of lines from every sender, so it is kept well below what a room can absorb.
RECV_SIZE = 4 * 1024
# A thread blocked in recv() holds a buffer of the size it asked for, so a client that
# sent little last time is read with a small one: idle clients then cost little memory.
IDLE_RECV_SIZE = 1024

Events = list[bytes | Overlong]


class Flooding(Exception):
    """A rate-limited client sent more than may wait for it."""


class LineReader:
    """Lines from a socket, as fast as they come."""

    def __init__(self, conn: socket.socket, framer: protocol.LineFramer) -> None:
        self.conn = conn
        self.framer = framer
        self._size = IDLE_RECV_SIZE

    def read(self) -> Events | None:
        """The lines of the next recv() (maybe none); None at EOF."""
        data = self.conn.recv(self._size)
        self._size = RECV_SIZE if len(data) >= IDLE_RECV_SIZE else IDLE_RECV_SIZE
        return self.framer.feed(data) if data else None


class RateLimitedReader(LineReader):
    """Lines from a socket, no faster than a token bucket allows; a flood is cut."""

    def __init__(
        self,
        conn: socket.socket,
        framer: protocol.LineFramer,
        bucket: TokenBucket,
        limit: int,
        closing: threading.Event,
    ) -> None:
        super().__init__(conn, framer)
        self.bucket = bucket
        self.limit = limit
        self.closing = closing  # set when the server shuts down: held lines are dropped
        self._held: deque[bytes | Overlong] = deque()  # read, waiting for a token
        self._held_bytes = 0
        self._eof = False

    def read(self) -> Events | None:
        while True:
            if self._held:
                granted = self.bucket.take(len(self._held))
                if granted:
                    return [self._release() for _ in range(granted)]
                if self._eof or not self._readable(self.bucket.delay()):
                    continue  # the next token is due (a wait, not a spin: poll timed out)
            if self._eof and (not self._held or self.closing.is_set()):
                return None
            events = super().read()
            if events is None:
                self._eof = True  # the lines already read are still carried out
                continue
            for event in events:
                self._held.append(event)
                self._held_bytes += len(event) if isinstance(event, bytes) else 0
            if self._held_bytes > self.limit:
                raise Flooding(f"flooding: over {self.limit} bytes of lines waiting")

    def _release(self) -> bytes | Overlong:
        event = self._held.popleft()
        self._held_bytes -= len(event) if isinstance(event, bytes) else 0
        return event

    def _readable(self, timeout: float) -> bool:
        if self._eof:  # the socket would always be readable (EOF): wait for the token instead
            self.closing.wait(timeout)
            return False
        readable, _, _ = select.select([self.conn], [], [], timeout)
        return bool(readable)


def serve_client(room: ChatRoom, conn: socket.socket, addr: object) -> None:
    """Serve one connection until it leaves, is cut, or the room closes."""
    member = room.join(conn, addr)
    if member is None:
        return
    framer = protocol.LineFramer(room.max_line)
    reader = (
        RateLimitedReader(
            conn, framer, TokenBucket(room.rate, room.burst), room.sendq, room.closing
        )
        if room.rate
        else LineReader(conn, framer)
    )
    episode = 0
    why = cut = ""
    try:
        while True:
            episode = room.flow.wait_for_room(episode)  # pause while the whole room lags
            events = reader.read()
            if events is None:
                # A last line cut short by the peer's end of input counts (as with readline);
                # not when our own shutdown (the room closing, or a cut) ended the input.
                if not (room.closing.is_set() or member.outbox.closed):
                    handle(room, member, framer.finish())
                break
            if not handle(room, member, events):
                why = "quit"
                break
    except Flooding as exc:
        cut = str(exc)
        member.send(protocol.error(f"{cut}; disconnected"))
    except OSError as exc:  # reset, or cut from another thread: the peer is gone either way
        why = exc.strerror or str(exc)
    finally:
        room.leave(member, why, cut)


def handle(room: ChatRoom, member: Member, events: Events) -> bool:
    """Act on the lines of one read; False once the member asked to quit."""
    said: list[bytes] = []  # plain lines, forwarded together

    def forward() -> None:
        if said:
            room.broadcast(b"".join(said), exclude=member)
            said.clear()

    for event in events:
        if isinstance(event, Overlong):
            room.tell(
                member,
                protocol.error(f"line too long (over {event.limit} bytes); it was discarded"),
            )
            continue
        command = protocol.parse(protocol.sanitise(event))
        if isinstance(command, Say):
            said.append(protocol.message(member.name, command.text))
            continue
        forward()  # keep the order: what was said before a command goes out before it
        if not run(room, member, command):
            return False
    forward()
    return True


def run(room: ChatRoom, member: Member, command: protocol.Command) -> bool:
    """Carry out one command other than plain text; False for /quit."""
    match command:
        case Nick(name):
            problem = room.rename(member, name)
            room.tell(
                member,
                protocol.error(problem) if problem else protocol.notice(f"you are now {name}"),
            )
        case Who():
            names = room.names()
            room.tell(member, protocol.notice(f"here now ({len(names)}): {', '.join(names)}"))
        case Whisper(name, text):
            target = room.find(name)
            if target is None:
                room.tell(member, protocol.error(f"nobody here is called {name}"))
            else:
                room.tell(target, protocol.whisper(member.name, text))
                room.tell(member, protocol.notice(f"private to {target.name}: {text}"))
        case Me(text):
            room.broadcast(protocol.action(member.name, text), exclude=member)
        case Help():
            room.tell(member, protocol.help_text())
        case Quit():
            room.tell(member, protocol.BYE)
            return False
        case Invalid(reason):
            room.tell(member, protocol.error(reason))
        case Blank() | Say():
            pass
    return True
