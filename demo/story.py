"""The demo's script: who connects, who says what, and what each step must show.

`run` starts the server and tells the story: alice, bob and carol connect as
plain sockets, dave runs the real client, they talk and use commands; carol's line
over --max-line is refused; erin, who never reads, is cut while the others lose
nothing (`stuck_reader_is_cut`); carol and bob leave; the server gets SIGINT and
dave's client leaves by itself. A step that does not go as expected raises
`DemoFailed`, and the demo exits 1.
"""

from __future__ import annotations

import re
import signal
import tempfile
import time

from demo.clients import TerminalClient, command_line
from demo.probes import DEADLINE, Client, DemoFailed, settle, wait_until
from demo.processes import MAX_LINE, SENDQ, WHAT_BASE_IS, Server, threads_become
from demo.transcript import (
    PROBES_EXPLAINED,
    TALK,
    after,
    connect,
    expect_only,
    show,
    show_threads,
    step,
)

STUCK_RCVBUF = 4096  # erin's receive buffer: her window closes after a few KiB
TALK_LINES = 20  # lines said in one turn while erin is stuck ...
TALK_WIDTH = 200  # ... of this many bytes each
CUT_DEADLINE = 15.0  # seconds for the server to cut erin, while the others talk


def run(module: str) -> None:
    print(f"== {module}: one thread per connected client ==")
    with tempfile.TemporaryFile() as log:
        run_server(Server(module, log))
    print("\n== demo finished ==")


def run_server(server: Server) -> None:
    module = server.module
    host, port = server.address
    print(f"server pid {server.proc.pid} listening on {host}:{port}")
    print(f"  run with --sendq {SENDQ} and --max-line {MAX_LINE} (defaults: 1 MiB and 8 KiB),")
    print("  limits small enough to show at work in a few lines")
    show_threads(server, 0)
    print(f"  (the base is {WHAT_BASE_IS.get(module, 'the server itself')})")
    print(PROBES_EXPLAINED)
    room: list[Client] = []  # everyone connected and reading, in the order they came
    try:
        story(server, room)
    finally:
        for client in room:
            client.close()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        if server.proc.stdout is not None:
            server.proc.stdout.close()
        log = server.log_text()
        if "Traceback" in log:
            raise DemoFailed(f"the server printed a traceback:\n{log}")


def story(server: Server, room: list[Client]) -> None:
    step("alice, bob and carol connect (plain sockets, as nc would); the others are told")
    for label in ("alice", "bob", "carol"):
        newcomer = connect(label, server, room)
        after(room, actors=[newcomer])
    alice, bob, carol = room
    show_threads(server, 3)

    step("dave runs the real terminal client, in a pseudo-terminal of its own")
    argv = command_line(server.address)
    print(f"  {'dave':>6} runs:  python -m section_a.client {' '.join(argv[3:])}")
    dave = TerminalClient("dave", argv)
    room.append(dave)
    wait_until(room, lambda: dave.at_prompt, "dave's prompt")
    after(room, actors=[dave])
    threads = threads_become(dave.proc.pid, 2, "dave's client")
    where = f"/proc/{dave.proc.pid}/status"
    print(f"  dave's client has {threads} threads ({where}): the keyboard and the receiver")
    show_threads(server, 4)

    step("everyone picks a name with /nick")
    for client in room:
        client.type(f"/nick {client.label}")
        after(room, actors=[client])

    step("alice talks to the room (her own line is not echoed back to her)")
    alice.type("hello, room!")
    after(room, actors=[alice])

    step("dave answers from the real client")
    dave.type("hi alice, typed in a terminal")
    after(room, actors=[dave])

    step("bob uses commands: /who, /me and a private /msg")
    for line in ("/who", "/me waves", "/msg carol psst, only you see this"):
        bob.type(line)
        after(room, actors=[bob])

    step(f"carol sends a line over --max-line ({MAX_LINE} bytes): refused, her next one served")
    long_line = ("a line that goes on and on " * 12)[: MAX_LINE + 44]
    print(f"  {'carol':>6} types: {long_line[:50]}... ({len(long_line)} bytes)")
    carol.write(long_line)
    settle(room, actors=[carol])
    expect_only(room, {carol: r"^\* error: line too long"})
    show(room)
    carol.type("sorry, that one was too long")
    settle(room, actors=[carol])
    others = {client: r"^carol: sorry" for client in room if client is not carol}
    expect_only(room, others)
    show(room)

    stuck_reader_is_cut(server, room)

    step("carol leaves with /quit: her thread ends")
    carol.type("/quit")
    room.remove(carol)
    wait_until([carol], lambda: carol.ended, "the server to close carol's connection")
    show([carol])
    carol.close()
    after(room, until=(alice, r"^\* carol left"))
    show_threads(server, 3)

    step("bob's connection just drops: his thread ends too")
    print(f"  {'bob':>6} closes the connection")
    room.remove(bob)
    bob.close()
    after(room, until=(alice, r"^\* bob left"))
    show_threads(server, 2)

    step("the server gets SIGINT (Ctrl-C): it tells everyone and exits; dave's client leaves")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    wait_until(room, lambda: all(client.ended for client in room), "every connection to end")
    show(room)
    code = server.proc.wait(DEADLINE)
    print(f"  server exited with code {code} in {time.monotonic() - started:.2f}s")
    if code != 0:
        raise DemoFailed(f"the server exited with {code}")
    status = dave.exit_status()
    print(f"  dave's client left by itself: exit status {status} (3: the server went away)")
    if status != 3:
        raise DemoFailed(f"dave's client exited with {status}, not 3")


def stuck_reader_is_cut(server: Server, room: list[Client]) -> None:
    """erin stops reading for good; the others talk on, lose nothing; the server cuts her."""
    alice, bob = room[0], room[1]
    step(f"erin connects with a {STUCK_RCVBUF}-byte receive buffer, takes a name, never reads")
    erin = connect("erin", server, [], rcvbuf=STUCK_RCVBUF)
    try:
        after(room, until=(alice, r"^\* guest-\d+ joined$"))
        erin.type("/nick erin")  # she may write: she only never reads
        after(room, until=(alice, r" is now erin$"))
        show_threads(server, 5)

        step("alice and bob talk on, and erin reads nothing")
        print(f"  ({TALK_LINES} lines of {TALK_WIDTH} bytes a turn: what waits for erin grows")
        print(f"  past --sendq ({SENDQ} bytes), and the server cuts her, saying why)")
        said: list[tuple[Client, str]] = []
        seen: dict[Client, list[str]] = {client: [] for client in room}
        cut = re.compile(r"^\* erin left \(.+\)$")
        deadline = time.monotonic() + CUT_DEADLINE
        while not all(any(cut.match(line) for line in lines) for lines in seen.values()):
            if time.monotonic() > deadline:
                raise DemoFailed(f"erin was not cut within {CUT_DEADLINE:g}s")
            talker = (alice, bob)[len(said) // TALK_LINES % 2]
            lines = [talk(len(said) + n) for n in range(1, TALK_LINES + 1)]
            talker.write("\n".join(lines))
            said += [(talker, line) for line in lines]
            settle(room, actors=[talker])
            for client in room:
                seen[client] += client.take()
        for talker in (alice, bob):
            mine = [line for who, line in said if who is talker]
            print(
                f"  {talker.label:>6} types: {len(mine)} lines of {TALK_WIDTH} bytes "
                f"({mine[0][:9]}... to {mine[-1][:9]}...)"
            )
        for client in room:
            expected = [f"{who.name}: {line}" for who, line in said if who is not client]
            if [line for line in seen[client] if TALK.match(line)] != expected:
                raise DemoFailed(f"{client.label} did not get every line of the talk in order")
            client.received = seen[client]
        show(room)
        wait_until([erin], lambda: erin.ended, "the server to close erin's connection")
        unread = len(erin.take())
        print(f"  erin reads at last: {unread} lines her socket held for her, then the end")
        show_threads(server, 4)
    finally:
        erin.close()


def talk(number: int) -> str:
    text = f"talk {number:04d} "
    return text + "." * (TALK_WIDTH - len(text))
