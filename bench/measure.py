"""The measurements: each one starts a fresh server process, loads it, and returns its figures.

    run.py --(server, setup, sizes)--> fan_out / steady / churn
                          |  ServerRun (processes.py): COMMAND --port 0 -q, on the server's CPU
                          |  the load: Swarm (tests/load.py), every client in this process; or,
                          |    for a fan-out, the C generator as a child (c_fanout.py)
                          |  /proc/PID: the server's CPU, context switches, threads, RSS
                          v
                        a record of numbers (one dataclass per kind of measurement)

A fresh process for every measurement, so that one's leftovers (allocator pools,
backlogs, threads still ending) do not skew the next. The servers run with `-q`
(warnings only): the baseline logs nothing, and a log line per join would be
measured too.

With a stuck reader (stuck.py), a measurement runs with one client that never
reads: the fan-out fills it by itself; the steady and churn runs fill it first.

Context switches per delivered line sit beside CPU per line: a server that wakes a
thread for every few lines pays for it in switches before it shows in CPU time.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench.c_fanout import c_fan_out
from bench.processes import Placement, ServerRun, context_switches, run_time
from bench.stuck import STUCK_EOF_WAIT, closed_by_server, stuck_and_filled
from tests.load import READER_RCVBUF, Client, Swarm, stuck_reader
from tests.support import cpu_seconds, open_fds, rss_bytes, thread_count

STALL_WINDOW = 2.0  # seconds without a single line delivered after a deadline: stalled
SYNC_TIMEOUT = 60.0  # seconds for every client to get the reply to a sync
WARM_UP_TIMEOUT = 10.0  # seconds for the churn's warm-up (a hundred cycles or so)


@dataclass(frozen=True)
class Server:
    """A server under test: how to start it, and how to name it in the results."""

    key: str
    label: str
    command: tuple[str, ...]  # run with --port 0 -q after it


@dataclass(frozen=True)
class Setup:
    """What every measurement of a run shares."""

    log_dir: Path  # the servers' stderr
    placement: Placement
    c_loadgen: Path | None  # the C fan-out generator; None: there is no C compiler
    stuck_eof_wait: float = STUCK_EOF_WAIT  # seconds to see whether a stuck reader was closed


PYTHON, C = "python", "c"  # the fan-out's generators


@contextmanager
def running(server: Server, setup: Setup) -> Iterator[ServerRun]:
    process = ServerRun(server.command, server.key, setup.log_dir, setup.placement)
    try:
        yield process
    finally:
        process.stop()  # fails on any traceback in the server's log


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process `pid` (its threads, the ended ones too)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime: fields 14 and 15


def own_cpu() -> float:
    """CPU seconds (user + system) of this process: the load generator."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stalled(swarm: Swarm, clients: list[Client]) -> bool:
    """True if not one more line reaches `clients` within STALL_WINDOW seconds."""
    before = sum(c.load_lines for c in clients)
    swarm.run_for(STALL_WINDOW)
    return sum(c.load_lines for c in clients) == before


# --------------------------------------------------------------------------- fan-out


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


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class Steady:
    clients: int
    senders: int
    rate: float  # lines a second, per sender
    p50_ms: float  # inf when no line arrived (stalled)
    p99_ms: float
    delivered: int
    expected: int
    lossless: bool
    cut: int
    cpu_us_per_line: float  # server CPU (user + system) per delivered line; inf if none
    system_us_per_line: float  # the kernel's share of it (system time): the send() calls
    server_cpu: float
    generator_cpu: float
    elapsed: float
    fill_kept_up: bool | None  # the server took the stuck reader's fill (None: no stuck reader)
    fill_kernel_bytes: int  # what the kernel held for the stuck reader once full
    stuck_closed: bool | None
    connect_s: float  # seconds to connect every client and have each one synced
    # Before anyone sends, against the same server with no client (NaN with a stuck reader):
    kib_per_client: float  # RSS growth per idle client, KiB
    threads_per_client: float
    ctx_switches: float = math.nan  # the server's, while the senders sent and the lines came

    @property
    def stalled(self) -> bool:
        return self.delivered == 0

    @property
    def ctx_per_line(self) -> float:
        """The server's context switches per delivered line."""
        return self.ctx_switches / self.delivered if self.delivered else math.inf


def steady(
    server: Server,
    setup: Setup,
    clients: int,
    senders: int,
    *,
    rate: float,
    duration: float,
    drain: float,
    stuck: bool,
) -> Steady:
    """`senders` of `clients` send `rate` lines a second each; latency and server CPU.

    First, while every client is still idle, the server's RSS and threads per client.
    """
    with running(server, setup) as process:
        pid = process.pid
        rss, threads = rss_bytes(pid), thread_count(pid)
        with Swarm(process.address) as swarm:
            stuck_sock, filled = stuck_and_filled(swarm, process.address, stuck)
            started = time.monotonic()
            members = swarm.connect(clients)
            swarm.sync(members, timeout=SYNC_TIMEOUT)
            connected = time.monotonic() - started
            swarm.run_for(0.2)  # the last notices of the joins, flushed
            rss, threads = rss_bytes(pid) - rss, thread_count(pid) - threads
            (user, system), gen = cpu_split(process.pid), own_cpu()
            switches = context_switches(pid)
            delivery = swarm.steady(
                members[:senders],
                rate=rate,
                duration=duration,
                receivers=members,
                timeout=duration + drain,
                drain=drain,
            )
            (user_after, system_after), gen = cpu_split(process.pid), own_cpu() - gen
            switches = context_switches(pid) - switches
            user, system = user_after - user, system_after - system
            cpu = user + system
            expected = sum(delivery.expected.values())
        lines = delivery.delivered
        timed = bool(delivery.latencies_ns)
        return Steady(
            clients=clients,
            senders=senders,
            rate=rate,
            p50_ms=delivery.latency_ms(0.5) if timed else math.inf,
            p99_ms=delivery.latency_ms(0.99) if timed else math.inf,
            delivered=delivery.delivered,
            expected=expected,
            lossless=delivery.delivered == expected and not delivery.cut,
            cut=len(delivery.cut),
            cpu_us_per_line=cpu * 1e6 / lines if lines else math.inf,
            system_us_per_line=system * 1e6 / lines if lines else math.inf,
            server_cpu=cpu,
            generator_cpu=gen,
            elapsed=delivery.elapsed,
            fill_kept_up=filled.kept_up if filled else None,
            fill_kernel_bytes=filled.kernel_bytes if filled else 0,
            stuck_closed=closed_by_server(stuck_sock, setup.stuck_eof_wait),
            connect_s=connected,
            kib_per_client=math.nan if stuck else rss / clients / 1024,
            threads_per_client=math.nan if stuck else threads / clients,
            ctx_switches=switches,
        )


# --------------------------------------------------------------------------- churn


@dataclass(frozen=True)
class ChurnRun:
    rate: float  # completed connect-send-disconnect cycles per second
    completed: int
    failed: int
    back: bool  # threads and descriptors back to what they were before, within `settle`
    settle_s: float  # seconds they took to come back (inf: they did not)
    threads_before: int
    threads_after: int
    fds_before: int
    fds_after: int
    fill_kept_up: bool | None
    fill_kernel_bytes: int
    stuck_closed: bool | None
    generator_cpu: float
    elapsed: float
    server_cpu: float = math.nan  # seconds (user + system) during the measured cycles

    @property
    def stalled(self) -> bool:
        return self.completed == 0


def churn(
    server: Server,
    setup: Setup,
    cycles: int,
    parallel: int,
    *,
    stuck: bool,
    settle: float,
    timeout: float,
) -> ChurnRun:
    """`cycles` connect-send-disconnect cycles, `parallel` at a time; then what is left."""
    with running(server, setup) as process:
        pid = process.pid
        with Swarm(process.address) as swarm:
            stuck_sock, filled = stuck_and_filled(swarm, process.address, stuck)
            threads, fds = thread_count(pid), open_fds(pid)
            # Warm up: allocator pools and glibc's cache of thread stacks fill once.
            warm = swarm.churn(parallel * 2, parallel, timeout=min(timeout, WARM_UP_TIMEOUT))
            back_in(swarm, pid, threads, fds, settle if not warm.failures else STALL_WINDOW)
            cpu, gen = cpu_seconds(pid), own_cpu()
            result = swarm.churn(cycles, parallel, timeout=timeout)
            cpu, gen = cpu_seconds(pid) - cpu, own_cpu() - gen
            settled = back_in(
                swarm, pid, threads, fds, settle if result.completed else STALL_WINDOW
            )
            threads_after, fds_after = thread_count(pid), open_fds(pid)
        return ChurnRun(
            rate=result.rate,
            completed=result.completed,
            failed=len(result.failures),
            back=not math.isinf(settled),
            settle_s=settled,
            threads_before=threads,
            threads_after=threads_after,
            fds_before=fds,
            fds_after=fds_after,
            fill_kept_up=filled.kept_up if filled else None,
            fill_kernel_bytes=filled.kernel_bytes if filled else 0,
            stuck_closed=closed_by_server(stuck_sock, setup.stuck_eof_wait),
            generator_cpu=gen,
            elapsed=result.elapsed,
            server_cpu=cpu,
        )


def back_in(swarm: Swarm, pid: int, threads: int, fds: int, settle: float) -> float:
    """Seconds until the server has `threads` threads and `fds` descriptors; inf after `settle`."""
    started = time.monotonic()
    while (waited := time.monotonic() - started) < settle:
        if thread_count(pid) == threads and open_fds(pid) == fds:
            return waited
        swarm.run_for(0.01)  # the swarm's clients go on reading meanwhile
    return math.inf


Record = FanOut | Steady | ChurnRun
