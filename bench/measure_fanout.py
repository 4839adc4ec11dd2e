"""The fan-out: every client sends as fast as the server takes its lines, and every client reads.

It measures throughput (delivered lines a second, over all receivers) and what it costs the
server: CPU and context switches per delivered line. Context switches sit beside CPU: a
server that wakes a thread for every few lines pays for it in switches before it shows in
CPU time. The load comes from the Python generator (a Swarm in this process) or from the C
generator (c_fanout.py), which one Python thread could not keep up with.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from bench.c_fanout import c_fan_out
from bench.measuring import PYTHON, SYNC_TIMEOUT, C, Server, Setup, own_cpu, running, stalled
from bench.stuck import closed_by_server
from harness.load import READER_RCVBUF, Swarm
from harness.proc import context_switches, run_time
from harness.sockets import stuck_reader


@dataclass(frozen=True)
class FanOut:
    rate: float  # delivered lines per second, over all receivers
    delivered: int
    expected: int
    lossless: bool  # every receiver got every line, whole and in order, and none was cut
    cut: int  # receivers (not the stuck reader) the server disconnected
    disordered: int
    stalled: bool  # incomplete at the deadline, and nothing more arrived after it
    elapsed: float
    server_cpu: float
    generator_cpu: float
    stuck_closed: bool | None  # the server closed the stuck reader (None: none present)
    generator: str = PYTHON  # which generator loaded it: PYTHON or C
    ctx_switches: float = math.nan  # the server's, during the fan-out (NaN: not counted)
    # Wall seconds over which generator_cpu was taken: the Python generator's reading also
    # covers building the lines, before `elapsed` starts (NaN: the same as `elapsed`).
    generator_window: float = math.nan

    @property
    def generator_busy(self) -> float:
        """The generator's CPU as a share of one core."""
        window = self.elapsed if math.isnan(self.generator_window) else self.generator_window
        return self.generator_cpu / window if window > 0 else math.nan

    @property
    def server_busy(self) -> float:
        """The server's CPU as a share of one core: near 1, the server was the limit."""
        return self.server_cpu / self.elapsed if self.elapsed > 0 else math.nan

    @property
    def cpu_us_per_line(self) -> float:
        """Server CPU (user + system) per delivered line."""
        return self.server_cpu * 1e6 / self.delivered if self.delivered else math.inf

    @property
    def ctx_per_line(self) -> float:
        """The server's context switches per delivered line."""
        return self.ctx_switches / self.delivered if self.delivered else math.inf


class Counters:
    """Between two reads: the server's CPU and context switches, the generator's CPU, the time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu = self.ctx = self.generator = self.wall = 0.0

    def start(self) -> None:
        self.cpu, self.ctx = run_time(self.pid), context_switches(self.pid)
        self.generator, self.wall = own_cpu(), time.monotonic()

    def stop(self) -> None:
        self.cpu = run_time(self.pid) - self.cpu
        self.ctx = context_switches(self.pid) - self.ctx
        self.generator, self.wall = own_cpu() - self.generator, time.monotonic() - self.wall


def fan_out(
    server: Server,
    setup: Setup,
    clients: int,
    lines: int,
    *,
    stuck: bool,
    timeout: float,
    generator: str = PYTHON,
) -> FanOut:
    """Every client sends `lines` lines as fast as the server takes them; all read.

    Every reader has the same fixed receive buffer (READER_RCVBUF), through either
    generator, so that no reader lags alone because its window happened to stay small.
    """
    if generator == C and setup.c_loadgen is None:
        raise RuntimeError("no C generator: it could not be built")
    with running(server, setup) as process:
        stuck_sock = stuck_reader(process.address) if stuck else None
        counters = Counters(process.pid)
        if generator == C:
            assert setup.c_loadgen is not None
            c = c_fan_out(
                setup.c_loadgen, process.address, clients, lines, timeout=timeout,
                before=counters.start, after=counters.stop,
            )  # fmt: skip
            lossless = c.unique == c.expected and not c.cut and not c.disordered
            record = FanOut(
                rate=c.rate, delivered=c.delivered, expected=c.expected, lossless=lossless,
                cut=c.cut, disordered=c.disordered, stalled=c.stalled, elapsed=c.elapsed,
                server_cpu=counters.cpu, generator_cpu=c.generator_cpu, stuck_closed=None,
                generator=C, ctx_switches=counters.ctx,
            )  # fmt: skip
        else:
            with Swarm(process.address) as swarm:
                members = swarm.connect(clients, rcvbuf=READER_RCVBUF)
                swarm.sync(timeout=SYNC_TIMEOUT)
                counters.start()
                delivery = swarm.fan_out(members, lines, timeout=timeout)
                counters.stop()
                expected = sum(delivery.expected.values())
                complete = delivery.delivered == expected
                lossless = complete and not delivery.cut and not delivery.disordered
                halted = not complete and not delivery.cut and stalled(swarm, members)
            record = FanOut(
                rate=delivery.rate, delivered=delivery.delivered, expected=expected,
                lossless=lossless, cut=len(delivery.cut), disordered=len(delivery.disordered),
                stalled=halted, elapsed=delivery.elapsed, server_cpu=counters.cpu,
                generator_cpu=counters.generator, stuck_closed=None, ctx_switches=counters.ctx,
                generator_window=counters.wall,
            )  # fmt: skip
        return replace(record, stuck_closed=closed_by_server(stuck_sock, setup.stuck_eof_wait))
