"""What every measurement shares: the server under test, a fresh process for it, CPU readings.

    run.py --(server, setup, sizes)--> measure_fanout / measure_latency / measure_churn
                          |  running(): a ServerRun (processes.py), COMMAND --port 0 -q,
                          |    on the server's CPU, stopped after the measurement
                          |  the load: Swarm (harness/load.py), every client in this process; or,
                          |    for a fan-out or the busy room, the C generator as a child
                          |    (c_fanout.py)
                          |  /proc/PID: the server's CPU, context switches, threads, RSS
                          v
                        a record of numbers (one dataclass per kind of measurement)

A fresh process for every measurement, so that one's leftovers (allocator pools,
backlogs, threads still ending) do not skew the next. The servers run with `-q`
(warnings only): the baseline logs nothing, and a log line per join would be
measured too.

With a stuck reader (stuck.py), a measurement runs with one client that never
reads: the fan-out fills it by itself; the steady and churn runs fill it first.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.processes import Placement, ServerRun
from bench.stuck import STUCK_EOF_WAIT
from harness.clients import Client
from harness.load import Swarm

STALL_WINDOW = 2.0  # seconds without a single line delivered after a deadline: stalled
SYNC_TIMEOUT = 60.0  # seconds for every client to get the reply to a sync


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


def own_cpu() -> float:
    """CPU seconds (user + system) of this process: the load generator."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stalled(swarm: Swarm, clients: list[Client]) -> bool:
    """True if not one more line reaches `clients` within STALL_WINDOW seconds."""
    before = sum(c.load_lines for c in clients)
    swarm.run_for(STALL_WINDOW)
    return sum(c.load_lines for c in clients) == before
