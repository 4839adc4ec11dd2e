"""The Markdown of a benchmark run: results against the baseline, then the relays, targets, notes.

    markdown() --> the run: machine, placement, what was measured how
               --> the table against the asyncio baseline (here)
               --> the table against the reference relays, the generator check (references.py)
               --> the table against the servers before the threads rewrite (before.py)
               --> the targets, each marked met or not (targets.py)
               --> notes: every run that lost lines or failed

Ratios are section A (or C) divided by the baseline (or relay) of the same run: above
1 is better for throughput and churn, below 1 for latency, CPU, switches and memory. A
run that lost a line marks its figure; a baseline that stalls has no ratio. A row whose
measurement was not made (`--only`) is left out.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

from bench import before, references, targets
from bench.cells import BUSY_ROOM_ROWS, Cell, churn_cell, fan_cell, number_cell, steady_cell
from bench.measure_churn import ChurnRun
from bench.measure_fanout import FanOut
from bench.measure_latency import Steady
from bench.report import OURS, Results, describe, median, ratio, runs, times

if TYPE_CHECKING:
    from bench.plan import Plan


def generator_of(r: Results) -> str:
    """Which generator the fan-out rows went through: "C" or "Python"."""
    done = [x for k in r.get("fanout", {}) for x in runs(r, "fanout", k)]
    return "C" if any(x.generator == "c" for x in done) else "Python"


def markdown(plan: Plan, info: dict[str, str], results: Results, baseline: str) -> str:
    big = max(plan.latency_clients)
    r = results
    filled = [x.fill_kernel_bytes for m in ("latency_stuck", "churn_stuck") for k in r.get(m, {})
              for x in runs(r, m, k) if x.fill_kernel_bytes]  # fmt: skip
    kernel = statistics.median(filled) if filled else math.nan
    gen = generator_of(r)
    busy_c = (
        ", also through the C generator (bench/c_loadgen.c --steady), which does the same "
        "work in C: a generator near 100% of its core measured its own queue too, and the "
        "rows of each generator's CPU say which one was"
        if "latency_busy_c" in r
        else ""
    )
    cpu, ctx = number_cell("cpu_us_per_line", None), number_cell("ctx_per_line", None)

    rows: list[tuple[str, str, Cell, str]] = [
        # label, measurement, cell, field for the ratio
        (f"fan-out, {plan.fan_clients} clients x {plan.fan_lines:,} lines (the baseline "
         f"{plan.fan_lines_baseline:,}), through the {gen} generator (lines/s)", "fanout",
         fan_cell, "rate"),
        ("fan-out, the same with a stuck reader (lines/s)", "fanout_stuck", fan_cell, "rate"),
        ("server CPU per delivered line in the fan-out (µs)", "fanout", cpu, "cpu_us_per_line"),
        ("server context switches per delivered line in the fan-out", "fanout", ctx,
         "ctx_per_line"),
        *((f"latency p50 / p99, {n:,} clients (ms)", f"latency_{n}", steady_cell, "p99_ms")
          for n in plan.latency_clients),
        (f"latency p50 / p99, {big:,} clients, stuck reader (ms)", "latency_stuck",
         steady_cell, "p99_ms"),
        (f"server CPU per delivered line, {big:,} clients (µs)", f"latency_{big}", cpu,
         "cpu_us_per_line"),
        ("… of which system time: the kernel, mostly send() (µs)", f"latency_{big}",
         number_cell("system_us_per_line", None), "system_us_per_line"),
        (f"server context switches per delivered line, {big:,} clients", f"latency_{big}", ctx,
         "ctx_per_line"),
        ("server CPU per delivered line, the same with a stuck reader (µs)", "latency_stuck",
         cpu, "cpu_us_per_line"),
        (f"latency p50 / p99, {big:,} clients, busy room: {plan.senders} x "
         f"{plan.busy_rate:g} lines/s, Python generator (ms)", "latency_busy", steady_cell,
         "p99_ms"),
        (f"latency p50 / p99, {big:,} clients, the same busy room, C generator (ms)",
         "latency_busy_c", steady_cell, "p99_ms"),
        *BUSY_ROOM_ROWS,
        (f"churn, {plan.churn_parallel} at a time (cycles/s)", "churn", churn_cell, "rate"),
        ("churn, the same with a stuck reader (cycles/s)", "churn_stuck", churn_cell, "rate"),
        (f"memory per idle client, {big:,} clients (KiB RSS)", f"latency_{big}",
         number_cell("kib_per_client", 1), "kib_per_client"),
        (f"threads per client, {big:,} clients", f"latency_{big}",
         number_cell("threads_per_client"), ""),
        (f"time to connect {big:,} clients, each synced (s)", f"latency_{big}",
         number_cell("connect_s", 1), "connect_s"),
    ]  # fmt: skip

    out = [
        "# Chat servers against an asyncio baseline and two reference relays",
        "",
        f"Run {info['date']} on {describe(info)} at the start, {info['load_end']} at the end "
        f"({info['minutes']} minutes; plan `{plan.name}`). The machine is shared: some task "
        f"waited for a CPU {info.get('cpu_pressure', 'unknown')} of the time "
        "(/proc/pressure/cpu), so absolute figures vary from run to run, the ratios against the "
        "baseline and the relays of the same run much less. Placement: "
        f"{info.get('placement', 'not recorded')}. {info.get('c_programs', '')}",
        "",
        f"Each figure is the median of its runs, each run on a fresh server process: "
        f"{plan.fan_repeats} fan-outs of each chat server and relay and "
        f"{plan.fan_repeats_baseline} of the baseline (about 40 s each), {plan.churn_repeats} "
        f"churns of each server, {plan.repeats} runs of everything else; with a stuck reader "
        f"the baseline runs "
        f"{plan.stuck_repeats_baseline} time(s), cut short after "
        f"{plan.stuck_timeout_baseline:.0f} s, because it stalls. The fan-out goes through the "
        f"{gen} generator, every reader with a 1 MiB receive buffer; latency and churn through "
        f"the Python one (harness/load.py). Latency: {plan.senders} senders x {plan.rate:g} "
        f"lines/s for {plan.duration:g} s, everyone reading; in the busy room "
        f"{plan.busy_rate:g} lines/s each{busy_c}. A stuck reader has a 4 KiB receive buffer "
        "and never reads; for latency and churn it is filled first, until the kernel holds all "
        f"it will for it ({kernel / 2**20:.1f} MiB here) and 4,000 lines more wait in the server. "
        "Servers run with `-q`, all other settings default (no flood control).",
        "",
        "| measure | section A | section C | asyncio baseline | A ÷ baseline | C ÷ baseline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, m, cell, field in rows:
        if m not in r:
            continue
        cells = [cell(r, m, k) for k in ("A", "C", baseline)]
        ratios = []
        for k, _name in OURS:
            base = runs(r, m, baseline)
            if not field:
                ratios.append("")
            elif any(getattr(x, "stalled", False) for x in base):
                ratios.append("baseline stalls")
            elif not all(getattr(x, "lossless", True) for x in base):
                ratios.append("baseline loses lines")
            else:
                ratios.append(times(ratio(median(r, m, k, field), median(r, m, baseline, field))))
        out.append(f"| {label} | " + " | ".join(cells + ratios) + " |")

    out += ["", f"![latency and throughput]({info.get('png', 'latest.png')})", ""]
    out += references.against_relays(plan, r)
    out += before.table(plan, r)
    out += targets.table(plan, r, baseline)
    out += references.generator(plan, r, baseline)
    out += notes(r)
    return "\n".join(out) + "\n"


def notes(r: Results) -> list[str]:
    out = []
    for m, by in r.items():
        for k, rs in by.items():
            for n, x in enumerate(rs, 1):
                if isinstance(x, str):
                    out.append(f"- {m}, {k}, run {n}: error: {x}")
                elif isinstance(x, FanOut | Steady) and not x.lossless:
                    halted = ", stalled" if isinstance(x, FanOut) and x.stalled else ""
                    out.append(
                        f"- {m}, {k}, run {n}: {x.delivered:,} of {x.expected:,} lines delivered"
                        f", {x.cut} receivers cut{halted}"
                    )
                elif isinstance(x, ChurnRun) and (x.failed or not x.back):
                    out.append(
                        f"- {m}, {k}, run {n}: {x.completed:,} cycles, {x.failed} failed; threads "
                        f"{x.threads_before}→{x.threads_after}, fds {x.fds_before}→{x.fds_after}"
                    )
    return ["## Notes", "", *(out or ["Nothing unusual: every run was lossless."]), ""]
