"""How big a benchmark run is: the sizes and repeats of every measurement (`make bench`).

`FULL` is what `make bench` runs; `QUICK` (`--quick`) is everything small and once, a
smoke test. run.py turns a plan into its rounds of tasks; the report states the plan's
sizes beside its figures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.stuck import STUCK_EOF_WAIT


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one benchmark run."""

    name: str
    repeats: int = 3  # runs of each measurement, each server (medians over them)
    fan_repeats: int = 7  # fan-outs of each chat server and relay (a second or two each)
    fan_repeats_baseline: int = 3  # runs of the baseline's fan-out (about 40 s each)
    fan_repeats_python: int = 3  # runs of the fan-out through the Python generator
    stuck_repeats_baseline: int = 1  # the baseline stalls with a stuck reader: once is enough
    fan_clients: int = 50
    # Lines each client sends: a second or two for the fast servers (with a tenth of it, a
    # fraction of a second, their figures moved widely between runs; docs/performance.md).
    # The baseline, a few hundred times slower, sends fewer.
    fan_lines: int = 20_000
    fan_lines_baseline: int = 2000
    fan_timeout: float = 60.0  # seconds for a fan-out; the baseline's normal one is longer
    fan_timeout_baseline: float = 240.0
    stuck_timeout_baseline: float = 60.0  # seconds the baseline's fan-out gets with a stuck reader
    stuck_churn_timeout_baseline: float = 15.0  # and its churn (it stalls at the first cycle)
    latency_clients: tuple[int, ...] = (30, 100, 1000)  # the largest: memory and threads too
    senders: int = 20
    rate: float = 2.0  # lines a second per sender
    busy_rate: float = 10.0  # and in a busy room: lines come faster than one pass sends them
    duration: float = 5.0  # seconds of steady sending
    drain: float = 5.0  # seconds to wait for the last lines
    churn_cycles: int = 10_000  # a few seconds a run: a shorter one (about 1 s) moved a lot
    # Churns of each server: a run takes about a second, and three moved the median by 5 %
    # between runs of the day (the churn target's margin), one of them a relay stalled for 60 s.
    churn_repeats: int = 5
    churn_parallel: int = 50
    churn_timeout: float = 60.0
    settle: float = 10.0  # seconds for threads and descriptors to come back after churn
    stuck_eof_wait: float = STUCK_EOF_WAIT  # seconds to see whether a stuck reader was closed


FULL = Plan("full")
QUICK = replace(
    FULL,
    name="quick",
    repeats=1,
    fan_repeats=1,
    fan_repeats_baseline=1,
    fan_clients=10,
    fan_lines=200,
    fan_lines_baseline=200,
    fan_timeout=20.0,
    fan_timeout_baseline=30.0,
    stuck_repeats_baseline=0,  # it stalls: its runs would only wait out their timeouts
    fan_repeats_python=1,
    latency_clients=(10, 50),
    senders=5,
    rate=5.0,
    busy_rate=50.0,
    duration=1.0,
    drain=2.0,
    churn_cycles=200,
    churn_repeats=1,
    churn_timeout=10.0,
    settle=3.0,
    stuck_eof_wait=0.5,  # too little is sent for a stuck reader to be closed: do not wait long
)
