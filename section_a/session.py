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
"""

from __future__ import annotations

import logging
import socket

from section_a import protocol
from section_a.protocol import Blank, Help, Invalid, Me, Nick, Overlong, Quit, Say, Whisper, Who
from section_a.room import ChatRoom, Member

logger = logging.getLogger(__name__)

RECV_SIZE = 16 * 1024  # bytes read at once; also bounds what a sender has in hand when paused


def serve_client(room: ChatRoom, conn: socket.socket, addr: object) -> None:
    """Serve one connection until it leaves, is cut, or the room closes."""
    member = room.join(conn, addr)
    if member is None:
        return
    framer = protocol.LineFramer(room.max_line)
    episode = 0
    why = ""
    try:
        while True:
            episode = room.flow.wait_for_room(episode)  # pause while the whole room lags
            data = conn.recv(RECV_SIZE)
            if not data:
                break
            if not handle(room, member, framer.feed(data)):
                why = "quit"
                break
    except OSError as exc:  # reset, or cut from another thread: the peer is gone either way
        why = exc.strerror or str(exc)
    finally:
        room.leave(member, why)


def handle(room: ChatRoom, member: Member, events: list[bytes | Overlong]) -> bool:
    """Act on the lines of one read; False once the member asked to quit."""
    said: list[bytes] = []  # plain lines, forwarded together

    def forward() -> None:
        if said:
            room.broadcast(b"".join(said), exclude=member)
            said.clear()

    for event in events:
        if isinstance(event, Overlong):
            member.send(
                protocol.error(f"line too long (over {event.limit} bytes); it was discarded")
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
            member.send(
                protocol.error(problem) if problem else protocol.notice(f"you are now {name}")
            )
        case Who():
            names = room.names()
            member.send(protocol.notice(f"here now ({len(names)}): {', '.join(names)}"))
        case Whisper(name, text):
            target = room.find(name)
            if target is None:
                member.send(protocol.error(f"nobody here is called {name}"))
            else:
                target.send(protocol.whisper(member.name, text))
                member.send(protocol.notice(f"private to {target.name}: {text}"))
        case Me(text):
            room.broadcast(protocol.action(member.name, text), exclude=member)
        case Help():
            member.send(protocol.help_text())
        case Quit():
            member.send(protocol.BYE)
            return False
        case Invalid(reason):
            member.send(protocol.error(reason))
        case Blank() | Say():
            pass
    return True
