"""The targets of the threads issue, each marked met (✔) or not (✘) from this run's medians.

Stage A was rebuilt with threads and blocking calls only, and must be at least as fast
as the least a Python relay with a thread per client can do: the plain relay, measured
in the same run (with the chat servers' join and leave notices, for churn: like for
like). Latency must be no worse than before the rewrite: than the old servers
(before.py), measured in the same run under the same loads. In the busy room that is
judged through the C generator where it measured ours and the old servers both: there
the Python one can be busy all the time, and its p99 then is partly its own queue. The
target's row says which generator it went by. A target counts only on lossless runs;
one whose measurement was not made (`--only`, or no old servers to
measure) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import before
from bench.report import PLAIN_NOTICES, Results, every, median, ms, ratio, runs, times

if TYPE_CHECKING:
    from bench.plan import Plan


@dataclass(frozen=True)
class Target:
    text: str
    measurements: tuple[str, ...]  # all made, or the target is left out
    judge: Callable[[str], str]  # server key -> the cell: its figure, ✔ or ✘
    before: bool = False  # made only if the old servers (before.py) ran its measurements


def mark(value: float, ok: bool, text: str) -> str:
    return f"{text} {'✔' if ok and not math.isnan(value) else '✘'}"


def table(plan: Plan, r: Results, b: str) -> list[str]:
    big = max(plan.latency_clients)
    lat = f"latency_{big}"
    busy, gen = "latency_busy", "Python"
    if before.measured(r, ("latency_busy_c",)):
        busy, gen = "latency_busy_c", "C"

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
        # ours ÷ the same server before the rewrite, both of this run: met at 1.00x or less,
        # as shown (a ratio shown as 1.00x is not marked worse).
        def judge(k: str) -> str:
            value = ratio(med(m, k, "p99_ms"), med(m, before.KEYS[k], "p99_ms"))
            ok = round(value, 2) <= 1.0 and every(r, m, k, "lossless")
            return mark(value, ok, f"{ms(med(m, k, 'p99_ms'))} ms, {times(value)}")

        return judge

    rows = [
        Target("fan-out ≥ 0.9x the plain relay's, lossless", ("fanout",),
               against("fanout", "rate", "plain", lambda x: x >= 0.9)),
        Target("churn ≥ 0.8x the plain relay's with the same join and leave notices, "
               "threads and descriptors back", ("churn",),
               against("churn", "rate", PLAIN_NOTICES, lambda x: x >= 0.8, clean=("back",))),
        *(Target(f"p99 latency {what} no worse than before the rewrite ({before.REV}, same "
                 f"run){how}", (m,), no_worse(m), before=True)
          for m, what, how in ((lat, f"at {big:,} clients", ""),
                               (busy, "in the busy room", f", through the {gen} generator"))),
        Target("memory per idle client ≤ 20 KiB", (lat,),
               absolute(lat, "kib_per_client", lambda x: x <= 20, lambda x: f"{x:.1f} KiB", "")),
    ]  # fmt: skip
    made = [
        t
        for t in rows
        if all(m in r for m in t.measurements)
        and (not t.before or before.measured(r, t.measurements))
    ]
    if not made:
        return []
    out = ["## Targets", "", "| target | section A | section C |", "|---|---:|---:|"]
    out += [f"| {t.text} | {t.judge('A')} | {t.judge('C')} |" for t in made]
    return [*out, ""]
