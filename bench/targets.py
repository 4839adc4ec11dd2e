"""The targets of the delivery redesign, each marked met (✔) or not (✘) from this run's medians.

Against the asyncio baseline: what a Python chat server should beat. Against the
reference relays: how close the chat servers come to the least a relay can do, in
Python (the plain relay) and without Python (the C relay). A target counts only on
lossless runs; one whose measurement was not made (`--only`) is left out, and one
against the C relay shows "no C relay" where there is no C compiler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.report import Results, every, median, ratio, runs, times

if TYPE_CHECKING:
    from bench.plan import Plan


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

    def stuck_clean(k: str) -> bool:
        return every(r, "fanout_stuck", k, "lossless") and every(
            r, "fanout_stuck", k, "stuck_closed"
        )

    def fan_stuck(k: str) -> str:
        value = ratio(med("fanout_stuck", k, "rate"), med("fanout", b, "rate"))
        return mark(value, value >= 10 and stuck_clean(k), times(value))

    rows = [
        Target("fan-out ≥ 10x the baseline, lossless", ("fanout",),
               against("fanout", "rate", b, lambda x: x >= 10)),
        Target("fan-out with a stuck reader ≥ 10x the baseline's (without), lossless, stuck "
               "reader cut", ("fanout", "fanout_stuck"), fan_stuck),
        Target(f"server CPU per line ≤ ½ the baseline's ({big:,} clients, {plan.senders} "
               "senders)", (lat,), against(lat, "cpu_us_per_line", b, lambda x: x <= 0.5)),
        Target("the same with a stuck reader, against the baseline without",
               (lat, "latency_stuck"), against(lat, "cpu_us_per_line", b, lambda x: x <= 0.5,
                                               ours_m="latency_stuck")),
        Target(f"p99 latency at {big:,} clients ≤ the baseline's", (lat,),
               against(lat, "p99_ms", b, lambda x: x <= 1)),
        Target("the same with a stuck reader, against the baseline without",
               (lat, "latency_stuck"), against(lat, "p99_ms", b, lambda x: x <= 1,
                                               ours_m="latency_stuck")),
        Target("memory per idle client ≤ 20 KiB", (lat,),
               absolute(lat, "kib_per_client", lambda x: x <= 20, lambda x: f"{x:.1f} KiB", "")),
        Target("churn ≥ 2,000 cycles/s, threads and descriptors back", ("churn",),
               absolute("churn", "rate", lambda x: x >= 2000, lambda x: f"{x:,.0f}/s", "back")),
        Target("the same with a stuck reader", ("churn_stuck",),
               absolute("churn_stuck", "rate", lambda x: x >= 2000, lambda x: f"{x:,.0f}/s",
                        "back")),
        Target("fan-out ≥ 0.9x the plain relay's, lossless", ("fanout",),
               against("fanout", "rate", "plain", lambda x: x >= 0.9)),
        Target("fan-out ≥ 0.7x the C relay's, lossless", ("fanout",),
               against("fanout", "rate", "crelay", lambda x: x >= 0.7)),
        Target("server CPU per delivered line in the fan-out ≤ 3x the plain relay's",
               ("fanout",), against("fanout", "cpu_us_per_line", "plain", lambda x: x <= 3)),
        Target(f"server CPU per delivered line at {big:,} clients ≤ 3x the plain relay's",
               (lat,), against(lat, "cpu_us_per_line", "plain", lambda x: x <= 3)),
        Target("churn ≥ 0.8x the plain relay's (which sends no join or leave notices), threads "
               "and descriptors back", ("churn",),
               against("churn", "rate", "plain", lambda x: x >= 0.8, clean=("back",))),
    ]  # fmt: skip
    made = [t for t in rows if all(m in r for m in t.measurements)]
    if not made:
        return []
    out = ["## Targets", "", "| target | section A | section C |", "|---|---:|---:|"]
    out += [f"| {t.text} | {t.judge('A')} | {t.judge('C')} |" for t in made]
    return [*out, ""]
