"""The benchmark's picture: latency against clients, and fan-out throughput, per server.

matplotlib is a dev requirement (requirements-dev.txt), never a runtime one: this
module is imported only when a run is saved, and report.py carries on without it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display: write a file

import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.ticker import NullLocator

from bench.report import Results, median, runs, si

if TYPE_CHECKING:
    from bench.plan import Plan

STYLE = {  # key: (label, colour)
    "A": ("section A", "tab:blue"),
    "C": ("section C", "tab:green"),
    "asyncio": ("asyncio baseline", "tab:red"),
    "plain": ("plain relay", "tab:gray"),
    "crelay": ("C relay", "black"),
    "A_before": ("section A before the rewrite", "tab:cyan"),
    "C_before": ("section C before the rewrite", "tab:olive"),
}


def plot(path: Path, plan: Plan, info: dict[str, str], r: Results) -> None:
    fig, (lat, fan) = plt.subplots(1, 2, figsize=(13, 5.5), width_ratios=(1.2, 1))
    big = max(plan.latency_clients)

    stalled: list[str] = []
    xs = list(plan.latency_clients)
    for key in ("A", "C", "asyncio"):
        label, colour = STYLE[key]
        p99 = [median(r, f"latency_{n}", key, "p99_ms") for n in xs]
        p50 = [median(r, f"latency_{n}", key, "p50_ms") for n in xs]
        lat.plot(xs, p99, "o-", color=colour, label=f"{label}, p99")
        lat.plot(xs, p50, "o--", color=colour, alpha=0.6, label=f"{label}, p50")
        stuck = median(r, "latency_stuck", key, "p99_ms")
        if math.isfinite(stuck):
            lat.plot([big], [stuck], "X", color=colour, markersize=11, label=f"{label}, p99, stuck")
        elif runs(r, "latency_stuck", key):
            stalled.append(label)
    for key in ("plain", "crelay", "A_before", "C_before"):  # measured at the largest size only
        relay_p99 = median(r, f"latency_{big}", key, "p99_ms")
        if math.isfinite(relay_p99):
            label, colour = STYLE[key]
            lat.plot([big], [relay_p99], "s", color=colour, label=f"{label}, p99")
    if stalled:
        lat.text(
            0.98,
            0.03,
            f"with a stuck reader ({big:,} clients), stalled:\n" + ", ".join(stalled),
            transform=lat.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="tab:red",
        )
    lat.set_xscale("log")
    if any(math.isfinite(y) and y > 0 for line in lat.get_lines() for y in line.get_ydata()):
        lat.set_yscale("log")  # a log scale of nothing fails (an --only run without latency)
    lat.set_xticks(xs, [f"{n:,}" for n in xs])
    lat.xaxis.set_minor_locator(NullLocator())
    lat.set_xlabel("clients connected")
    lat.set_ylabel("delivery latency (ms)")
    lat.set_title(
        f"Latency: {plan.senders} senders x {plan.rate:g} lines/s, everyone reading", fontsize=10
    )
    lat.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=7, ncol=2)

    keys = [k for k in ("A", "C", "asyncio", "plain", "crelay") if runs(r, "fanout", k)]
    width = 0.38
    for i, key in enumerate(keys):
        label, colour = STYLE[key]
        clean = median(r, "fanout", key, "rate")
        if math.isnan(clean):
            continue
        bar = fan.bar(i - width / 2, clean, width, color=colour)
        fan.bar_label(bar, [si(clean)], fontsize=8)
        if not runs(r, "fanout_stuck", key):
            continue
        stuck = median(r, "fanout_stuck", key, "rate")
        halted = any(x.stalled for x in runs(r, "fanout_stuck", key))
        bar = fan.bar(i + width / 2, stuck, width, color=colour, alpha=0.5, hatch="//")
        fan.bar_label(bar, ["stalled" if halted else si(stuck)], fontsize=8)
    fan.set_xticks(range(len(keys)), [STYLE[k][0].replace(" (", "\n(") for k in keys], fontsize=8)
    if keys:
        fan.set_yscale("log")
    fan.set_ylabel("delivered lines per second")
    through = (
        "C" if any(x.generator == "c" for k in keys for x in runs(r, "fanout", k)) else "Python"
    )
    fan.set_title(
        f"Fan-out: {plan.fan_clients} clients x {plan.fan_lines:,} lines (the baseline "
        f"{plan.fan_lines_baseline:,}),\n{through} generator (hatched: with a stuck reader)",
        fontsize=10,
    )
    fan.grid(True, axis="y", which="both", alpha=0.3)

    fig.suptitle(
        f"{info['date']} · {info['cpu']}, {info['cores']} cores · {info['kernel']} · "
        f"Python {info['python']} · medians",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
