"""The targets of the threads issue, each marked met (✔) or not (✘) from this run's medians.

Stage A was rebuilt with threads and blocking calls only, and must be at least as fast
as the least a Python relay with a thread per client can do: the plain relay, measured
in the same run (with the chat servers' join and leave notices, for churn: like for
like). A target counts only on lossless runs; one whose measurement was not made
(`--only`) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.report import PLAIN_NOTICES, Results, every, median, ratio, runs, times

if TYPE_CHECKING:
    from bench.plan import Plan


# p99 latency (ms) before the threads rewrite: bench/results/latest.md of 85dcc39, the
# last run of the epoll-flusher design, which the issue asks to be no worse than.
BEFORE = {"latency_1000": {"A": 6.7, "C": 7.2}, "latency_busy": {"A": 7.4, "C": 8.4}}


@dataclass(frozen=True)
class Target:
    text: str
    measurements: tuple[str, ...]  # all made, or the target is left out
    judge: Callable[[str], str]  # server key -> the cell: its figure, ✔ or ✘


def mark(value: float, ok: bool, text: str) -> str:
    return f"{text} {'✔' if ok and not math.isnan(value) else '✘'}"


def table(plan: Plan, r: Results, b: str) -> list[str]:
    big = max(plan.latency_clients)
    lat = f"latency_{big}"

    def med(m: str, k: str, field: str) -> float:
        return median(r, m, k, field)

    def against(
        m: str,
        field: str,
        reference: str,
        best: Callable[[float], bool],
        clean: tuple[str, ...] = ("lossless",),
        ours_m: str = "",
    ) -> Callable[[str], str]:
        # ours (in `ours_m`, default `m`) ÷ the reference's `m`; ok when best(ratio) holds
        # and every run of ours has every field in `clean` true.
        def judge(k: str) -> str:
            if reference == "crelay" and not runs(r, m, reference):
                return "no C relay"
            mine = ours_m or m
            value = ratio(med(mine, k, field), med(m, reference, field))
            ok = best(value) and all(every(r, mine, k, f) for f in clean)
            return mark(value, ok, times(value))

        return judge

    def absolute(
        m: str, field: str, best: Callable[[float], bool], shown: Callable[[float], str], clean: str
    ) -> Callable[[str], str]:
        def judge(k: str) -> str:
            value = med(m, k, field)
            ok = best(value) and (not clean or every(r, m, k, clean))
            return mark(value, ok, shown(value))

        return judge

    def no_worse(m: str) -> Callable[[str], str]:
        def judge(k: str) -> str:
            value = med(m, k, "p99_ms")
            shown = round(value, 1)
            return mark(value, shown <= BEFORE.get(m, {}).get(k, math.nan), f"{shown} ms")

        return judge

    rows = [
        Target("fan-out ≥ 0.9x the plain relay's, lossless", ("fanout",),
               against("fanout", "rate", "plain", lambda x: x >= 0.9)),
        Target("churn ≥ 0.8x the plain relay's with the same join and leave notices, "
               "threads and descriptors back", ("churn",),
               against("churn", "rate", PLAIN_NOTICES, lambda x: x >= 0.8, clean=("back",))),
        *(Target(f"p99 latency {what} no worse than before (A {BEFORE[m]['A']}, C "
                 f"{BEFORE[m]['C']} ms)", (m,), no_worse(m))
          for m, what in ((lat, f"at {big:,} clients"), ("latency_busy", "in the busy room"))
          if m in BEFORE),  # not for --quick's sizes: there was no "before" at them
        Target("memory per idle client ≤ 20 KiB", (lat,),
               absolute(lat, "kib_per_client", lambda x: x <= 20, lambda x: f"{x:.1f} KiB", "")),
    ]  # fmt: skip
    made = [t for t in rows if all(m in r for m in t.measurements)]
    if not made:
        return []
    out = ["## Targets", "", "| target | section A | section C |", "|---|---:|---:|"]
    out += [f"| {t.text} | {t.judge('A')} | {t.judge('C')} |" for t in made]
    return [*out, ""]
