"""Steady latency: a few senders at a fixed rate among many idle clients; how long lines take.

It measures the latency of every delivered line (p50, p99), the server's CPU per line and
the kernel's share of it (system time: the send() calls), context switches per line, and,
first, while every client is still idle, the server's memory and threads per client.

The load comes from the Python generator (a Swarm in this process) or, `generator=C`,
from the C one (c_fanout.c_steady): in the busy room (1,000 readers, 200 lines a second)
the Python one is busy nearly all the time, so part of its p99 is its own queue; the C
one does the same work in C. Both take the same readings of the server, around the
same phase: once every client is connected and synced, until the last line is in.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bench.c_fanout import c_steady
from bench.measuring import PYTHON, SYNC_TIMEOUT, C, Server, Setup, own_cpu, running
from bench.stuck import closed_by_server, stuck_and_filled
from harness.load import Swarm
from harness.proc import context_switches, cpu_split, rss_bytes, thread_count


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
    generator: str = PYTHON  # which generator loaded it: PYTHON or C

    @property
    def stalled(self) -> bool:
        return self.delivered == 0

    @property
    def generator_busy(self) -> float:
        """The generator's CPU as a share of one core: near 1, it may have been the limit."""
        return self.generator_cpu / self.elapsed if self.elapsed > 0 else math.nan

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
    generator: str = PYTHON,
) -> Steady:
    """`senders` of `clients` send `rate` lines a second each; latency and server CPU.

    First, while every client is still idle, the server's RSS and threads per client.
    """
    if generator == C:
        if stuck:
            raise ValueError("the C generator has no stuck reader")
        return steady_c(server, setup, clients, senders, rate=rate, duration=duration, drain=drain)
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


def steady_c(
    server: Server,
    setup: Setup,
    clients: int,
    senders: int,
    *,
    rate: float,
    duration: float,
    drain: float,
) -> Steady:
    """`steady` through the C generator: the same load and the same readings of the server.

    The server is read when the generator says "ready" (every client connected and
    synced, so every join notice is in: its memory and threads per idle client), and
    again once the last line came, while every client is still connected.
    """
    if setup.c_loadgen is None:
        raise RuntimeError("no C generator: it could not be built")
    with running(server, setup) as process:
        pid = process.pid
        base = rss_bytes(pid), thread_count(pid)
        idle: dict[str, float] = {}
        spent: dict[str, float] = {}  # the server's CPU and switches: at "ready", then since

        def ready() -> None:  # connected and synced; nobody has sent yet
            idle["connect"] = time.monotonic() - started
            idle["rss"], idle["threads"] = rss_bytes(pid) - base[0], thread_count(pid) - base[1]
            spent["user"], spent["system"] = cpu_split(pid)
            spent["ctx"] = context_switches(pid)

        def done() -> None:  # the last line is in
            user, system = cpu_split(pid)
            spent["user"], spent["system"] = user - spent["user"], system - spent["system"]
            spent["ctx"] = context_switches(pid) - spent["ctx"]

        started = time.monotonic()
        c = c_steady(
            setup.c_loadgen, process.address, clients, senders, rate=rate, duration=duration,
            drain=drain, timeout=SYNC_TIMEOUT, before=ready, after=done,
        )  # fmt: skip
    user, system, lines = spent["user"], spent["system"], c.delivered
    return Steady(
        clients=clients, senders=senders, rate=rate, p50_ms=c.p50_ms, p99_ms=c.p99_ms,
        delivered=lines, expected=c.expected, lossless=c.lossless, cut=c.cut,
        cpu_us_per_line=(user + system) * 1e6 / lines if lines else math.inf,
        system_us_per_line=system * 1e6 / lines if lines else math.inf,
        server_cpu=user + system, generator_cpu=c.generator_cpu, elapsed=c.elapsed,
        fill_kept_up=None, fill_kernel_bytes=0, stuck_closed=None, connect_s=idle["connect"],
        kib_per_client=idle["rss"] / clients / 1024, threads_per_client=idle["threads"] / clients,
        ctx_switches=spent["ctx"], generator=C,
    )  # fmt: skip
