"""One client's life, run in that client's own thread: join, read, act, leave.

`serve_client(room, conn, addr)` is the whole job of a client thread, and it is
the same in both servers: stage A's accept loop starts a thread that runs it, and
stage C's proactor does. It blocks in recv() on its own socket (a thread that
waits costs no CPU), turns what arrives into lines (reader.py, protocol.py), and
each line into an action on the room. It never writes to a socket itself: the
room does, in this thread, under its lock (room.py).

The plain lines of one recv() go to the room as one block: one send per reader
for a whole burst of lines, not one per line. That, and doing the per-line work of
a burst of plain text at C speed (`protocol.messages`), is most of the server's speed.
"""

from __future__ import annotations

import logging
import socket

from section_a import protocol
from section_a.protocol import Blank, Help, Invalid, Me, Nick, Overlong, Quit, Say, Whisper, Who
from section_a.reader import Events, Flooding, LineReader, RateLimitedReader, TokenBucket
from section_a.room import ChatRoom, Member

logger = logging.getLogger(__name__)


class Limits:
    """What the server's options set for every client's input (serving.py fills it in)."""

    def __init__(self, max_line: int, rate: float = 0.0, burst: int = 1, recvq: int = 0) -> None:
        self.max_line = max_line
        self.rate = rate  # lines a second per client; 0: no flood control
        self.burst = burst
        self.recvq = recvq  # bytes of lines held back by the rate before a client is cut


def serve_client(room: ChatRoom, limits: Limits, conn: socket.socket, addr: object) -> None:
    """Serve one connection until it leaves, is cut, or the room closes."""
    member = room.join(conn, addr)
    if member is None:
        return
    framer = protocol.LineFramer(limits.max_line)
    reader = (
        RateLimitedReader(
            conn, framer, TokenBucket(limits.rate, limits.burst), limits.recvq, room.closing
        )
        if limits.rate
        else LineReader(conn, framer)
    )
    why = cut = ""
    try:
        while True:
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
        room.tell(member, protocol.error(f"{cut}; disconnected"))
    except OSError as exc:  # reset, or cut from another thread: the peer is gone either way
        why = exc.strerror or str(exc)
    finally:
        room.leave(member, why, cut)


def handle(room: ChatRoom, member: Member, events: Events) -> bool:
    """Act on the lines of one read; False once the member asked to quit."""
    block = protocol.messages(member.name, events)
    if block is not None:  # the common case: plain text only, one block for the room
        room.say(member, block)
        return True
    said: list[bytes] = []  # plain lines, forwarded together

    def forward() -> None:
        if said:
            room.say(member, b"".join(said))
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
            room.who(member)
        case Whisper(name, text):
            target = room.find(name)
            if target is None:
                room.tell(member, protocol.error(f"nobody here is called {name}"))
            else:
                room.tell(target, protocol.whisper(member.name, text))
                room.tell(member, protocol.notice(f"private to {target.name}: {text}"))
        case Me(text):
            room.say(member, protocol.action(member.name, text))
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
