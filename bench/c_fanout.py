"""The C fan-out generator (bench/c_loadgen.c), driven from Python: start, sample, go, result.

    c_fan_out(program, address, ...)
        start `c_loadgen --handshake`: it connects every client, syncs, prints "ready"
        before()   the caller reads the server's counters
        "go"   --> every client sends its lines, all read and check; one JSON line back
        after()    the counters again, while every client is still connected
        close stdin --> it closes its clients and exits

So the counters cover the fan-out alone, as they do around Swarm.fan_out. Why a C
generator at all: one Python thread reading and checking 50 sockets tops out near
8 M lines a second, which is about what the fast servers deliver, so through it they
all looked alike. The C one checks the same things (c_check.h), many times faster.
"""

from __future__ import annotations

import json
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
                result = _line(proc.stdout, timeout + quiet + stall_window + HANDSHAKE_SLACK)
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
    fields = CDelivery.__dataclass_fields__
    return CDelivery(**{k: v for k, v in report.items() if k in fields})


def _line(stream: IO[bytes], timeout: float) -> bytes:
    # One line from the child, or fail after `timeout`: it has deadlines of its own,
    # so this is only for a generator that hangs.
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([stream], [], [], left)[0]:
            return stream.readline().strip()
    raise RuntimeError(f"c_loadgen said nothing for {timeout:.0f}s")
