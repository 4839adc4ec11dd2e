"""The C load generator (bench/c_loadgen.c), driven from Python: start, sample, go, result.

    c_fan_out(program, address, ...)  or  c_steady(program, address, ...)
        start `c_loadgen --handshake [--steady]`: it connects every client, syncs,
            prints "ready"
        before()   the caller reads the server's counters
        "go"   --> a fan-out: every client sends its lines, all read and check;
                   steady: a few senders at a fixed rate, stamped, all read, check and time
               <-- one JSON line
        after()    the counters again, while every client is still connected
        close stdin --> it closes its clients and exits

So the counters cover the load alone, as they do around Swarm.fan_out and Swarm.steady.
Why a C generator at all: one Python thread reading and checking 50 sockets tops out
near 8 M lines a second, which is about what the fast servers deliver, so through it
they all looked alike; and in the busy room (1,000 readers of 200 lines a second:
200,000 deliveries a second, each parsed and timed) it is busy nearly all the time,
so part of the latency it reports is its own queue. The C one checks the same things
(c_check.h), many times faster.
"""

from __future__ import annotations

import json
import math
import select
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness.load import QUIET, READER_RCVBUF

STALL_WINDOW = 2.0  # seconds it waits, once incomplete with nobody cut, for one more line
HANDSHAKE_SLACK = 10.0  # seconds more than its own deadlines before it is deemed hung


@dataclass(frozen=True)
class CDelivery:
    """What the C generator reported (its JSON line): counts over all receivers."""

    delivered: int  # load lines received, all of them
    expected: int
    unique: int  # distinct lines received from others: complete when == expected
    lost: int  # lines missing at receivers that were not cut
    duplicated: int
    reordered: int
    malformed: int  # not byte for byte what was sent: cut, altered, under the wrong name
    own: int  # lines that came back to their own sender
    disordered: int  # receivers with any duplicated, reordered, malformed or own line
    cut: int  # receivers the server disconnected
    silent: int  # (receiver, sender) pairs with no line at all
    ended: str  # complete, quiet (nothing came for QUIET seconds) or timeout
    stalled: bool  # incomplete, nobody cut, and nothing more came in STALL_WINDOW
    elapsed: float
    generator_cpu: float  # its user + system CPU seconds during the fan-out

    @property
    def rate(self) -> float:
        return self.delivered / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class CSteady:
    """What the C generator's steady run reported (its JSON line): counts and latency."""

    sent: int  # lines the senders sent
    delivered: int  # load lines received, all of them
    expected: int  # every line sent, at every client but its sender
    unique: int
    lost: int
    duplicated: int
    reordered: int
    malformed: int  # not byte for byte what was sent (but for the send time)
    own: int
    disordered: int
    cut: int
    silent: int
    ended: str  # complete, or drain (the last lines did not come within the drain)
    elapsed: float  # from the first line sent to the last received, or the drain's end
    timed: int  # lines with a latency: every one that came whole
    p50_ms: float  # inf when no line came
    p99_ms: float
    max_ms: float
    generator_cpu: float  # its user + system CPU seconds, sending, reading and the drain

    @property
    def lossless(self) -> bool:
        """Every client got every line once, whole and in order, and none was cut."""
        return self.unique == self.expected and not self.cut and not self.disordered


def c_fan_out(
    program: Path,
    address: tuple[str, int],
    clients: int,
    lines: int,
    *,
    timeout: float,
    before: Callable[[], None] = lambda: None,
    after: Callable[[], None] = lambda: None,
    quiet: float = QUIET,
    stall_window: float = STALL_WINDOW,
) -> CDelivery:
    """One fan-out of `clients` x `lines` through the C generator `program`.

    `before` and `after` run just before the first line is sent and just after the
    last one came (the caller reads the server's counters). The run ends once every
    receiver has every line, or `quiet` seconds pass without a line, or at `timeout`.
    """
    command = [
        str(program), "--handshake", "--host", address[0], "--port", str(address[1]),
        "--clients", str(clients), "--lines", str(lines), "--rcvbuf", str(READER_RCVBUF),
        "--timeout", str(timeout), "--quiet", str(quiet), "--stall-window", str(stall_window),
    ]  # fmt: skip
    report = _run(command, timeout, timeout + quiet + stall_window, before, after)
    fields = CDelivery.__dataclass_fields__
    return CDelivery(**{k: v for k, v in report.items() if k in fields})


def c_steady(
    program: Path,
    address: tuple[str, int],
    clients: int,
    senders: int,
    *,
    rate: float,
    duration: float,
    drain: float,
    timeout: float,
    rcvbuf: int = 0,
    before: Callable[[], None] = lambda: None,
    after: Callable[[], None] = lambda: None,
) -> CSteady:
    """The first `senders` of `clients` send `rate` lines a second each for `duration` s.

    Swarm.steady through the C generator `program`: the run then waits at most
    `drain` seconds for the last lines. `timeout` bounds connecting and syncing.
    `rcvbuf` 0 leaves the clients' receive buffers to the kernel, as Swarm.steady does.
    """
    command = [
        str(program), "--handshake", "--steady", "--host", address[0], "--port",
        str(address[1]), "--clients", str(clients), "--senders", str(senders), "--rate",
        str(rate), "--duration", str(duration), "--drain", str(drain), "--rcvbuf", str(rcvbuf),
        "--timeout", str(timeout),
    ]  # fmt: skip
    report = _run(command, timeout, duration + drain, before, after)
    for field in ("p50_ms", "p99_ms", "max_ms"):  # null: no line came, a stall
        report[field] = math.inf if report.get(field) is None else report[field]
    fields = CSteady.__dataclass_fields__
    return CSteady(**{k: v for k, v in report.items() if k in fields})


def _run(
    command: list[str],
    timeout: float,
    load_time: float,
    before: Callable[[], None],
    after: Callable[[], None],
) -> dict[str, Any]:
    # The handshake: "ready" (within its connect and sync deadlines), before(), "go", its
    # JSON line (within `load_time` and some slack), after(), then stdin closed.
    result = b""
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            result = _line(proc.stdout, 2 * timeout + HANDSHAKE_SLACK)  # connect, then sync
            if result == b"ready":
                before()
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
                result = _line(proc.stdout, load_time + HANDSHAKE_SLACK)
                after()
        finally:
            proc.stdin.close()  # it exits; on an error it has exited already
            try:
                proc.wait(HANDSHAKE_SLACK)
            except subprocess.TimeoutExpired:
                proc.kill()
        stderr = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    report: dict[str, Any] = json.loads(result) if result.startswith(b"{") else {}
    if "delivered" not in report:
        why = report.get("error") or f"unexpected output {result!r}"
        raise RuntimeError(f"c_loadgen: {why}" + (f"; stderr: {stderr}" if stderr else ""))
    return report


def _line(stream: IO[bytes], timeout: float) -> bytes:
    # One line from the child, or fail after `timeout`: it has deadlines of its own,
    # so this is only for a generator that hangs.
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([stream], [], [], left)[0]:
            return stream.readline().strip()
    raise RuntimeError(f"c_loadgen said nothing for {timeout:.0f}s")
