"""A benchmark run's figures: the machine, medians over runs, and formatting.

Every figure is the median over its runs. A run that failed with an error counts
in no median (tables.py lists it under the notes); saving.py writes them to files.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from typing import TYPE_CHECKING, Any

from bench.measure_churn import ChurnRun
from bench.measure_fanout import FanOut
from bench.measure_latency import Steady
from bench.measuring import C

if TYPE_CHECKING:
    pass

Record = FanOut | Steady | ChurnRun  # one run of one measurement
Results = dict[str, dict[str, list[Record | str]]]  # measurement -> server key -> runs
OURS = (("A", "section A"), ("C", "section C"))
RELAYS = (("plain", "plain relay"), ("crelay", "C relay"))
PLAIN_NOTICES = "plain_notices"  # the plain relay with join and leave notices (churn only)


# --------------------------------------------------------------------------- the machine


def machine() -> dict[str, str]:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kib = int(info.readline().split()[1])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kib / 2**20:.0f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_start": _load(),
        "started": str(time.monotonic()),
        "cpu_stall_us": str(_cpu_stall_us()),
    }


def finish(info: dict[str, str]) -> dict[str, str]:
    minutes = (time.monotonic() - float(info["started"])) / 60
    stalled = (_cpu_stall_us() - int(info["cpu_stall_us"])) / 1e6 / (minutes * 60)
    return {
        **info,
        "load_end": _load(),
        "minutes": f"{minutes:.1f}",
        "cpu_pressure": f"{stalled:.0%}" if stalled >= 0 else "unknown",
    }


def _cpu_stall_us() -> int:
    # Pressure stall information: microseconds some runnable task waited for a CPU.
    try:
        with open("/proc/pressure/cpu") as pressure:
            return int(pressure.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return -1


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def describe(info: dict[str, str]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory']}, {info['kernel']}, "
        f"Python {info['python']}, load average {info['load_start']}"
    )


# --------------------------------------------------------------------------- medians


def runs(results: Results, measurement: str, key: str) -> list[Any]:
    """The runs that completed (errors left out)."""
    return [r for r in results.get(measurement, {}).get(key, []) if not isinstance(r, str)]


def median(results: Results, measurement: str, key: str, field: str) -> float:
    values = [float(getattr(r, field)) for r in runs(results, measurement, key)]
    return statistics.median(values) if values else math.nan


def every(results: Results, measurement: str, key: str, field: str) -> bool:
    done = runs(results, measurement, key)
    return bool(done) and all(getattr(r, field) for r in done)


def errors(results: Results) -> int:
    return sum(isinstance(r, str) for by in results.values() for rs in by.values() for r in rs)


# --------------------------------------------------------------------------- formatting


def si(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.0f}"


def ms(value: float) -> str:
    return "stalled" if math.isinf(value) else "n/a" if math.isnan(value) else f"{value:.1f}"


def times(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "n/a"
    return f"{value:.0f}x" if value >= 10 else f"{value:.2f}x"


def ratio(ours: float, base: float) -> float:
    if math.isnan(ours) or math.isnan(base) or math.isinf(base) or base == 0:
        return math.nan
    return ours / base


def brief(record: Record | str) -> str:
    """One line for the progress log."""
    if isinstance(record, str):
        return f"ERROR {record}"
    if isinstance(record, FanOut):
        state = "lossless" if record.lossless else f"LOSS (cut {record.cut})"
        if record.stalled:
            state = f"stalled at {record.delivered / max(record.expected, 1):.1%}"
        stuck = "" if record.stuck_closed is None else f", stuck closed {record.stuck_closed}"
        return (
            f"{si(record.rate)} lines/s, {state}{stuck}; through the {record.generator} "
            f"generator ({record.generator_busy:.0%} busy); server "
            f"{record.cpu_us_per_line:.3f} us and {record.ctx_per_line:.4f} switches per line"
        )
    if isinstance(record, Steady):
        return (
            f"p50 {ms(record.p50_ms)} p99 {ms(record.p99_ms)} ms, "
            f"{record.cpu_us_per_line:.1f} us/line, {record.ctx_per_line:.2f} switches/line, "
            f"{'lossless' if record.lossless else 'LOSS'}, "
            f"the {'C' if record.generator == C else 'Python'} generator "
            f"{record.generator_busy:.0%} busy; "
            f"connected in {record.connect_s:.1f}s, {record.kib_per_client:.1f} KiB "
            f"and {record.threads_per_client:.2f} threads per idle client"
        )
    back = f"back in {record.settle_s:.2f}s" if record.back else "NOT back"
    return f"{record.rate:,.0f} cycles/s, {record.failed} failed, {back}"
