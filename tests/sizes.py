"""How big the stress suite runs: CI size in `make test`, full size in `make stress`."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """How big the stress suite runs: CI size in `make test`, full size with STRESS=full."""

    name: str
    scale_clients: int  # clients connected at once in the scale test
    churn_cycles: int  # connect-send-disconnect cycles ...
    churn_parallel: int  # ... this many at a time
    flood_bytes: int  # bytes sent with no newline
    congestion_shapes: tuple[tuple[int, int], ...]  # (clients, lines each) of a fan-out
    congestion_runs: int  # fan-outs in a row, each must lose nothing
    stuck_runs: int  # fan-outs with a stuck reader
    steady_seconds: float  # how long steady senders send in a latency test
    timeout: float  # seconds for an ordinary stress test ...
    long_timeout: float  # ... and for scale, churn and congestion


def _most_clients(wanted: int) -> int:
    # Each client costs a descriptor here and one in the server; keep some for everything else.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(100, min(wanted, hard - 100))


CI_SIZES = Sizes(
    name="ci",
    scale_clients=1000,
    churn_cycles=2000,
    churn_parallel=50,
    flood_bytes=5 * 1024 * 1024,
    congestion_shapes=((50, 2000),),
    congestion_runs=10,
    stuck_runs=1,
    steady_seconds=3.0,
    timeout=60.0,
    long_timeout=120.0,
)
FULL_SIZES = Sizes(
    name="full",
    scale_clients=_most_clients(10_000),
    churn_cycles=10_000,
    churn_parallel=50,
    flood_bytes=50 * 1024 * 1024,
    congestion_shapes=((50, 10_000), (200, 500)),
    congestion_runs=10,
    stuck_runs=3,
    steady_seconds=20.0,
    timeout=300.0,
    long_timeout=1800.0,
)
SIZES = FULL_SIZES if os.environ.get("STRESS") == "full" else CI_SIZES
