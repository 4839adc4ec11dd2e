"""How the demo prints a step: its title, what the actors do, then what each client saw.

Under each step, every line that each client received because of it, client by
client, each in the order it arrived; `after` first settles the step (probes.py), so
nothing is missing and nothing belongs to the next step. A long run of the talk's
lines is printed as one line that counts them.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Sequence

from demo.clients import LineClient
from demo.probes import Client, DemoFailed, settle
from demo.processes import Server, threads_become

TALK = re.compile(r"^\S+: talk \d{4} ")
PROBES_EXPLAINED = """\
(Under each step: every line each client received because of it, in the order it
arrived. To know that a step is over, each client then sends a command the server
does not know, /sync-N: the answer comes to it alone, after all the step sent it.
Those probes and their answers are not shown.)"""


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
