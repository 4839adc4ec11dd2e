"""Churn: clients connect, send a line and leave, many at a time; then, is the server back?

It measures completed connect-send-disconnect cycles a second, and whether the server's
threads and descriptors come back to what they were before (and how fast): a server that
leaks a thread or a descriptor per client shows it here first. A warm-up comes first, so
that allocator pools and glibc's cache of thread stacks, which fill once, are not counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bench.measuring import STALL_WINDOW, Server, Setup, own_cpu, running
from bench.stuck import closed_by_server, stuck_and_filled
from harness.load import Swarm
from harness.proc import cpu_seconds, open_fds, thread_count

WARM_UP_TIMEOUT = 10.0  # seconds for the churn's warm-up (a hundred cycles or so)


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

    @property
    def cpu_us_per_cycle(self) -> float:
        """The server's CPU (user + system) per completed cycle, in microseconds."""
        return self.server_cpu * 1e6 / self.completed if self.completed else math.inf


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
