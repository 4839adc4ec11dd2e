"""The server under test: its command, started fresh for a check, and read from /proc.

A command is a template: `{port}` becomes a free port for each start (or the
`--port N` that a submission hard-codes). `Subject.start()` runs it as a `Program`
and waits until something listens on the port; what it returns, `Running`, knows
the listener's pid, where to connect, and how to count its threads and descriptors.
A server that cannot start makes every later start fail at once with the same
reason, so a submission that never listens costs 5 s, not 5 s a check.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from grader.processes import Program, listening_sockets, wait_listening
from harness import proc

# Seconds a server may take to be seen dead once a connection to it was reset or refused:
# the kernel closes a dying process's sockets before its parent can reap it.
DYING = 1.0
START_TIMEOUT = 5.0  # seconds from exec to a listening socket
SETTLE = 0.3  # seconds a count must hold still to be the count


class CannotRun(Exception):  # a verdict, not a bug: the check could not run
    """The check could not run: the server did not start (the message says why)."""


class Failed(Exception):  # a verdict: the check failed, the message says how
    """The check failed before its end; the message is its evidence."""


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice; someone may take it first)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def substitute(template: str, **values: object) -> list[str]:
    """`template` split like a shell would, `{name}` replaced in each word.

    >>> substitute("./server -p {port} 'a b'", port=9034)
    ['./server', '-p', '9034', 'a b']
    """
    words = shlex.split(template)
    for name, value in values.items():
        words = [word.replace("{" + name + "}", str(value)) for word in words]
    return words


@dataclass
class Subject:
    """A server command and how to run it."""

    command: str
    port: int | None = None  # a hard-coded port, else {port} in the command
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    broken: str = ""  # why it could not start, once it could not
    current: Running | None = None  # the last one started
    started: bool = False  # once at least

    def start(self) -> Running:
        if self.broken:
            raise CannotRun(self.broken)
        port = self.port or free_port()
        if self.port and listening_sockets(port):
            raise CannotRun(f"port {port} is taken by another program (try --isolate)")
        argv = substitute(self.command, port=port)
        try:
            program = Program(argv, cwd=self.cwd, env=self.env)
        except OSError as exc:  # no such file, not executable
            self.broken = f"cannot run {argv[0]!r}: {exc.strerror or exc}"
            raise CannotRun(self.broken) from None
        ready = wait_listening(program, port, START_TIMEOUT)
        if isinstance(ready, str):
            program.stop()
            if not self.started:  # never once: every check would wait in vain
                self.broken = f"the server did not start: {ready}"
            raise CannotRun(f"the server did not start: {ready}")
        self.started = True
        host, pid = ready
        self.current = Running(program, pid, (host, port))
        return self.current


class Running:
    """A started server: its listener's pid and address; stop() ends its process group."""

    def __init__(self, program: Program, pid: int, address: tuple[str, int]) -> None:
        self.program = program
        self.pid = pid
        self.address = address
        self.death = ""  # how it ended, if it ended before stop()
        self.stopped = False

    def alive(self) -> bool:
        return self.program.alive() and os.path.exists(f"/proc/{self.pid}/task")

    def died(self, within: float = 0.0) -> str:
        """'the server died (killed by SIGPIPE; ...)', or '' while it lives (after
        waiting up to `within` seconds for it to end)."""
        if not self.stopped and within:
            self.program.wait(within)  # returns as soon as it has ended
        if self.stopped or self.alive():
            return self.death
        return f"the server died ({self.program.how_it_ended()})"

    def threads(self) -> int:
        self._alive_or_fail()
        return proc.thread_count(self.pid)

    def fds(self) -> int:
        self._alive_or_fail()
        return proc.open_fds(self.pid)

    def cpu(self) -> float:
        self._alive_or_fail()
        return proc.cpu_seconds(self.pid)

    def _alive_or_fail(self) -> None:
        # A dead server's /proc entry (a zombie's) reads as 1 thread and 0 descriptors:
        # evidence of nothing but its death, which is the evidence to give.
        if not self.alive():
            raise Failed(self.died())

    def settled(self, read: Callable[[], int], timeout: float = 2.0) -> int:
        """`read()` once it has held still for SETTLE seconds (or at `timeout`)."""
        deadline = time.monotonic() + timeout
        value, since = read(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.02)
            now = read()
            if now != value:
                value, since = now, time.monotonic()
            elif time.monotonic() - since >= SETTLE:
                break
        return value

    def reaches(self, read: Callable[[], int], goal: int, timeout: float) -> tuple[bool, int]:
        """Whether `read()` equals `goal` within `timeout`; the last value read."""
        deadline = time.monotonic() + timeout
        while True:
            value = read()
            if value == goal or time.monotonic() >= deadline or not self.alive():
                return value == goal, value
            time.sleep(0.02)

    def stop(self, dying: float = 0.0) -> None:
        self.death = self.died(dying)
        self.stopped = True
        self.program.stop()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        # Left by a reset or a refused connection: the server may be dying (see DYING).
        self.stop(DYING if kind is not None and issubclass(kind, OSError) else 0.0)
