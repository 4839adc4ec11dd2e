"""The processes of a measurement: where they run, the server under test, and its counters.

    Placement.choose()   CPUs this process may use: the first for servers, the second for
                         the load generator (this process, and the C generator it starts)
    ServerRun(command)   set this process to the server's CPU, start the server (the child
                         inherits the affinity), set this process back to the generator's;
                         wait for `listening on HOST:PORT`; stop: terminate, wait, kill

Its counters (context switches, CPU time to the nanosecond) are read from /proc by
harness/proc.py, as the tests read theirs.

Why a CPU each: a server and its load generator that share a CPU take turns on it, so
each one's speed depends on the other's; on a CPU each, the server's figure is the
server's, and every server is measured with the same placement. A machine with one CPU
gets no placement (both run where the kernel puts them), and the report says so.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(rb"listening on \[?([^\]\s]+)\]?:(\d+)")
START_TIMEOUT = 10.0  # seconds for a server to report its port
STOP_TIMEOUT = 5.0  # seconds for a server to exit once terminated


@dataclass(frozen=True)
class Placement:
    """The CPUs of the server under test and of the load generator."""

    server: frozenset[int]
    generator: frozenset[int]
    original: frozenset[int]  # this process's affinity before, restored at the end

    @classmethod
    def choose(cls) -> Placement:
        cpus = frozenset(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(cpus, cpus, cpus)
        first, second = sorted(cpus)[:2]
        return cls(frozenset({first}), frozenset({second}), cpus)

    @classmethod
    def anywhere(cls) -> Placement:
        """No placement: every process stays on the CPUs this one may use (for tests)."""
        cpus = frozenset(os.sched_getaffinity(0))
        return cls(cpus, cpus, cpus)

    @property
    def separate(self) -> bool:
        return self.server != self.generator

    def describe(self) -> str:
        if not self.separate:
            return f"server and load generator share CPU {_cpus(self.server)} (only one here)"
        return (
            f"every server on CPU {_cpus(self.server)}, the load generator on CPU "
            f"{_cpus(self.generator)} (sched_setaffinity)"
        )

    @contextmanager
    def for_server(self) -> Iterator[None]:
        """Inside, this process runs on the server's CPU, so a child started here does too."""
        os.sched_setaffinity(0, self.server)
        try:
            yield
        finally:
            os.sched_setaffinity(0, self.generator)

    def enter(self) -> None:
        """Move this process (the Python generator) to the generator's CPU."""
        os.sched_setaffinity(0, self.generator)

    def restore(self) -> None:
        os.sched_setaffinity(0, self.original)


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(map(str, sorted(cpus)))


class ServerRun:
    """A server under test: `COMMAND --port 0 -q`, on the server's CPU, stderr in a log file."""

    def __init__(
        self, command: Sequence[str], name: str, log_dir: Path, placement: Placement
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        with placement.for_server():
            self.proc = subprocess.Popen(
                [*command, "--port", "0", "-q"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=self._log,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        self.pid = self.proc.pid
        try:
            self.address = self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> tuple[str, int]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                seen += line
                if match := LISTENING.search(line):
                    return match.group(1).decode(), int(match.group(2))
                if not line:
                    break
        raise RuntimeError(f"{self.name} did not report its port; stdout={seen!r}")

    def stop(self) -> None:
        """terminate -> wait -> kill; then fail on any traceback the server printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        text = self.log_path.read_text(errors="replace")
        if "Traceback" in text:
            raise RuntimeError(f"{self.name} printed a traceback:\n{text}")


def python_module(module: str) -> tuple[str, ...]:
    """The command that runs a Python server module with this interpreter."""
    return (sys.executable, "-m", module)
