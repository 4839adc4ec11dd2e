"""One client's life, run in that client's own thread: join, read, act, leave.

`serve_client(room, reader, addr)` is the whole job of a client thread, and it is
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

from section_a import protocol
from section_a.protocol import Blank, Help, Invalid, Me, Nick, Overlong, Quit, Say, Whisper, Who
from section_a.reader import Events, Flooding, LineReader
from section_a.room import ChatRoom, Member


def serve_client(room: ChatRoom, reader: LineReader, addr: object) -> None:
    """Serve one connection until it leaves, is cut, or the room closes."""
    member = room.join(reader.conn, addr)
    if member is None:
        return
    why = ""
    try:
        while True:
            events = reader.read()
            if events is None:
                # A last line cut short by the peer's end of input counts (as with readline);
                # not when our own shutdown (the room closing, or a cut) ended the input.
                if not (room.closing.is_set() or member.outbox.closed):
                    handle(room, member, reader.framer.finish())
                break
            if not handle(room, member, events):
                why = "quit"
                break
    except Flooding as exc:
        room.tell(member, protocol.error(f"{exc}; disconnected"))
        member.outbox.cut(str(exc))
    except OSError as exc:  # reset, or cut from another thread: the peer is gone either way
        why = exc.strerror or str(exc)
    finally:
        room.leave(member, why)


def handle(room: ChatRoom, member: Member, events: Events) -> bool:
    """Act on the lines of one read; False once the member asked to quit."""
    block = protocol.messages(member.name, events)
    if block is not None:  # the common case: plain text only, one block for the room
        room.say(member, block)
        return True
    said: list[bytes] = []  # plain lines, forwarded together
    for event in events:
        command = event if isinstance(event, Overlong) else protocol.parse(protocol.sanitise(event))
        if isinstance(command, Say):
            said.append(protocol.message(member.name, command.text))
            continue
        if said:  # keep the order: what was said before a command goes out before it
            room.say(member, b"".join(said))
            said.clear()
        if not run(room, member, command):
            return False
    if said:
        room.say(member, b"".join(said))
    return True


def run(room: ChatRoom, member: Member, command: protocol.Command | Overlong) -> bool:
    """Carry out one command other than plain text; False for /quit."""
    match command:
        case Overlong(limit):
            room.tell(
                member, protocol.error(f"line too long (over {limit} bytes); it was discarded")
            )
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
