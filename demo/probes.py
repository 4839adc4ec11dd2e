"""How the demo knows that a step is over: by probing, not pausing.

A step is over when every client has received everything the step caused. Waiting
"long enough" would be a guess, so the demo asks instead. Each client sends a *probe*,
a command the server does not know with a fresh number (``/sync-7``); the server
answers it to that client alone, and only after everything it had for that client
before (a reply waits for what the room was told earlier: `ChatRoom.tell`). So the
lines that come before the answer are all the step sent that client:

    the actor types a line ----> the server carries it out: its effects queue for everyone
    the actor's probe ----------> answered: the server is done with the line
    everyone else's probe ------> answered: what came before is all the step sent them

The actors probe first: the others' probes must reach the server after it has carried
out the line, or their answers could overtake its effects. A step that nobody typed
(a connection drops, the server cuts a client) has no actor: the demo first waits,
with a deadline, for the line that announces it to reach one client, then probes
everyone. Probes and their answers are never shown. `Client` is what any of the
demo's clients must do for this (clients.py has the two kinds).
"""

from __future__ import annotations

import itertools
import re
import select
import time
from collections.abc import Callable, Sequence

DEADLINE = 5.0  # seconds to wait for any one thing before the demo fails
WELCOME = re.compile(r"^\* welcome, (\S+)\.")
RENAMED = re.compile(r"^\* you are now (\S+)$")
_probes = itertools.count(1)


class DemoFailed(Exception):
    """Something the demo expected did not happen."""


class Client:
    """What the demo needs of any client: its lines as they arrive, typing, probing."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.name = ""  # the server's name for it: from its welcome, then from /nick
        self.received: list[str] = []  # arrived, not yet taken by the demo
        self.ended = False  # the connection (or the program) has ended
        self._probe: re.Pattern[str] | None = None  # the answer awaited, if probing

    def fileno(self) -> int:
        raise NotImplementedError

    def _read(self) -> tuple[list[str], bool]:
        """The lines that one read completes, and whether the input has ended."""
        raise NotImplementedError

    def write(self, text: str) -> None:
        """Send `text` (one or more lines, no final newline) without showing it."""
        raise NotImplementedError

    def pump(self) -> None:
        """Read what is waiting (select said so): the lines go to `received`."""
        lines, self.ended = self._read()
        for line in lines:
            if self._probe is not None and self._probe.search(line):
                self._probe = None  # the answer: the end of a step, not part of it
                continue
            if match := WELCOME.match(line) or RENAMED.match(line):
                self.name = match.group(1)
            self.received.append(line)

    def type(self, text: str) -> None:
        print(f"  {self.label:>6} types: {text}")
        self.write(text)

    def probe(self) -> None:
        word = f"sync-{next(_probes)}"
        self._probe = re.compile(rf"^\* .*/{word}\b")
        self.write(f"/{word}")

    @property
    def probing(self) -> bool:
        return self._probe is not None

    def take(self) -> list[str]:
        lines, self.received = self.received, []
        return lines

    def close(self) -> None:
        pass


def wait_until(clients: Sequence[Client], done: Callable[[], bool], what: str) -> None:
    """Read every client as its lines arrive until `done()`, or fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not done():
        live = [client for client in clients if not client.ended]
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not live:
            why = f"not within {DEADLINE:g}s" if live else "every connection ended"
            raise DemoFailed(f"waiting for {what}: {why}")
        readable, _, _ = select.select(live, [], [], remaining)
        for client in readable:
            client.pump()


def settle(
    everyone: Sequence[Client],
    actors: Sequence[Client] = (),
    until: tuple[Client, str] | None = None,
) -> None:
    """Return once each of `everyone` has received everything the step sent it.

    `actors` typed the step: they probe first. `until`: a client and a pattern that
    one of the lines it receives matches: the sign of a step nobody typed.
    """
    if until is not None:
        client, pattern = until
        wait_until(
            everyone,
            lambda: any(re.search(pattern, line) for line in client.received),
            f"{client.label} to see {pattern!r}",
        )
    others = [client for client in everyone if client not in actors]
    for group in (actors, others):
        for client in group:
            client.probe()
        wait_until(everyone, answered(group), "the answers to the probes")


def answered(group: Sequence[Client]) -> Callable[[], bool]:
    return lambda: not any(client.probing for client in group)
