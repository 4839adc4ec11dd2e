"""A demo to watch: a chat server, scripted clients and the real client, one step at a time.

`python -m section_a.demo` starts the stage A server as a process of its own on a
free port; then clients join, talk, use commands and leave. Under each step it
prints, for every client, each line the step made it receive, in the order they
arrived (demo_clients.py says how it knows a step is over without guessing), and
the server's thread count, read from the kernel (/proc), not from the server, so
you can watch one thread appear per client and go away with it.

Three plain sockets (alice, bob, carol) talk as `nc` would. dave is the real
terminal client, ``python -m section_a.client``, in a pseudo-terminal: it has two
threads (keyboard and receiver), and when the server stops it leaves by itself,
with exit status 3. erin is stuck: a socket that never reads, with a tiny receive
window. The server runs with small limits (--sendq, --max-line), so that the
demo can show them at work in a few lines: the others talk on and get every line
while erin's backlog grows until the server cuts her, and a line over the limit
is refused while the next one is served. `--server section_c.server` runs the
same script against stage C. It exits 0 when everything went as expected.
"""

from __future__ import annotations

import argparse
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import IO

from section_a.demo_clients import (
    DEADLINE,
    ROOT,
    Client,
    DemoFailed,
    LineClient,
    TerminalClient,
    command_line,
    settle,
    threads_become,
    wait_until,
)

BASE_THREADS = {"section_a.server": 2, "section_c.server": 3}
WHAT_BASE_IS = {
    "section_a.server": "main (accepts) + the room's flusher",
    "section_c.server": "main + the proactor's accept thread + the room's flusher",
}
SENDQ = 16 * 1024  # bytes of backlog before a client is cut (the default is 1 MiB)
MAX_LINE = 256  # bytes in a line (the default is 8 KiB)
STUCK_RCVBUF = 4096  # erin's receive buffer: her window closes after a few KiB
TALK_LINES = 20  # lines said in one turn while erin is stuck ...
TALK_WIDTH = 200  # ... of this many bytes each
CUT_DEADLINE = 15.0  # seconds for the server to cut erin, while the others talk
TALK = re.compile(r"^\S+: talk \d{4} ")
PROBES_EXPLAINED = """\
(Under each step: every line each client received because of it, in the order it
arrived. To know that a step is over, each client then sends a command the server
does not know, /sync-N: the answer comes to it alone, after all the step sent it.
Those probes and their answers are not shown.)"""


class Server:
    """The server under demonstration, as a process; its log is kept, and shown if it fails."""

    def __init__(self, module: str, log: IO[bytes]) -> None:
        self.module = module
        self.log = log
        argv = ["--port", "0", "-q", "--sendq", str(SENDQ), "--max-line", str(MAX_LINE)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r"listening on (\S+):(\d+)", line)
        if not match:
            self.proc.kill()
            raise DemoFailed(f"the server did not start: {line!r}\n{self.log_text()}")
        self.address = (match.group(1), int(match.group(2)))
        self.base = BASE_THREADS.get(module, 2)

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def step(title: str) -> None:
    print(f"\n-- {title}")
    if sys.stdout.isatty():
        time.sleep(0.3)  # a moment to read, for a person; a pipe (CI, tests) gets none


def show(clients: Sequence[Client]) -> None:
    """Print what each client received, client by client, each in arrival order."""
    for client in clients:
        for line in summarised(client.take()):
            print(f"  {client.label:>6} sees:  {line}")


def after(
    everyone: Sequence[Client],
    actors: Sequence[Client] = (),
    until: tuple[Client, str] | None = None,
) -> None:
    settle(everyone, actors, until)
    show([*actors, *(client for client in everyone if client not in actors)])


def expect_only(clients: Sequence[Client], expected: dict[Client, str]) -> None:
    """Each client got one line, matching its pattern, if it has one; nothing otherwise."""
    for client in clients:
        pattern, lines = expected.get(client), client.received
        if not (len(lines) == 1 and re.search(pattern, lines[0]) if pattern else not lines):
            raise DemoFailed(f"{client.label} got {lines}, expected {pattern or 'nothing'}")


def summarised(lines: list[str]) -> Iterator[str]:
    """The lines as they came, but a run of the talk's lines as one line that counts them."""
    run: list[str] = []
    for line in [*lines, ""]:
        if TALK.match(line):
            run.append(line)
            continue
        if run:
            yield (
                f"{len(run)} lines of the talk, every one in order "
                f"({run[0][: run[0].index(' talk ') + 10]}... to "
                f"{run[-1][: run[-1].index(' talk ') + 10]}...)"
            )
            run = []
        if line:
            yield line


def show_threads(server: Server, clients: int) -> None:
    count = threads_become(server.proc.pid, server.base + clients, "the server")
    print(f"  server threads: {count} = {server.base} + {clients} client(s)  (from /proc)")


def connect(label: str, server: Server, room: list[Client], rcvbuf: int = 0) -> LineClient:
    print(f"  {label:>6} connects")
    client = LineClient(label, server.address, rcvbuf)
    room.append(client)
    return client


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--server", default="section_a.server", help="server module to run")
    args = parser.parse_args(argv)
    try:
        run(args.server)
    except (DemoFailed, OSError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
