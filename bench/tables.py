"""The Markdown of a benchmark run: results, targets, the generator check, notes.

Ratios are section A (or C) divided by the baseline of the same run: above 1 is
better for throughput and churn, below 1 for latency, CPU and memory. A run that
lost a line marks its figure; a baseline that stalls has no ratio.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench.measure import ChurnRun, FanOut, Steady
from bench.report import OURS, Results, describe, every, median, ms, ratio, runs, si, times

if TYPE_CHECKING:
    from bench.run import Plan


def markdown(plan: Plan, info: dict[str, str], results: Results, baseline: str) -> str:
    big = max(plan.latency_clients)
    r = results
    filled = [x.fill_kernel_bytes for m in ("latency_stuck", "churn_stuck") for k in r.get(m, {})
              for x in runs(r, m, k) if x.fill_kernel_bytes]  # fmt: skip
    kernel = statistics.median(filled) if filled else math.nan

    def med(m: str, k: str, f: str) -> float:
        return median(r, m, k, f)

    def fan_cell(m: str, k: str) -> str:
        done = runs(r, m, k)
        if not done:
            return "error"
        share = med(m, k, "delivered") / med(m, k, "expected")
        if any(x.stalled for x in done):
            return f"stalled: {share:.0%} delivered in {med(m, k, 'elapsed'):.0f} s"
        if not every(r, m, k, "lossless") and not any(x.cut for x in done):
            return f"cut short: {share:.0%} delivered in {med(m, k, 'elapsed'):.0f} s"
        text = si(med(m, k, "rate"))
        text += "" if every(r, m, k, "lossless") else " ✘ lost lines"
        if m == "fanout_stuck":
            text += ", stuck reader cut" if every(r, m, k, "stuck_closed") else ", not cut"
        return text

    def steady_cell(m: str, k: str) -> str:
        if not runs(r, m, k):
            return "error" if k in r.get(m, {}) else "—"
        text = f"{ms(med(m, k, 'p50_ms'))} / {ms(med(m, k, 'p99_ms'))}"
        return text + ("" if every(r, m, k, "lossless") else " ✘ lost lines")

    def cpu_cell(m: str, k: str, field: str = "cpu_us_per_line") -> str:
        value = med(m, k, field)
        return "stalled" if math.isinf(value) else f"{value:.2f}"

    def churn_cell(m: str, k: str) -> str:
        done = runs(r, m, k)
        if not done:
            return "error"
        last = done[-1]
        if any(x.stalled for x in done):
            return (
                f"stalled: no cycle completed in {med(m, k, 'elapsed'):.0f} s; "
                f"fds {last.fds_before}→{last.fds_after}"
            )
        failed = sum(x.failed for x in done)
        text = f"{med(m, k, 'rate'):,.0f}" + (f" ({failed} failed)" if failed else "")
        if every(r, m, k, "back"):
            return text + f", back in {med(m, k, 'settle_s'):.2f} s"
        return text + (
            f", not back: threads {last.threads_before}→{last.threads_after}, "
            f"fds {last.fds_before}→{last.fds_after}"
        )

    Cell = Callable[[str, str], str]
    rows: list[tuple[str, str, Cell, str, bool]] = [
        # label, measurement, cell, field for the ratio, whether the ratio needs lossless runs
        (f"fan-out, {plan.fan_clients} clients x {plan.fan_lines:,} lines (lines/s)",
         "fanout", fan_cell, "rate", True),
        ("fan-out, the same with a stuck reader (lines/s)", "fanout_stuck", fan_cell,
         "rate", True),
        ("server CPU per delivered line in the fan-out (µs)", "fanout", cpu_cell,
         "cpu_us_per_line", True),
        *((f"latency p50 / p99, {n:,} clients (ms)", f"latency_{n}", steady_cell, "p99_ms",
           True) for n in plan.latency_clients),
        (f"latency p50 / p99, {big:,} clients, stuck reader (ms)", "latency_stuck",
         steady_cell, "p99_ms", True),
        (f"server CPU per delivered line, {big:,} clients (µs)", f"latency_{big}", cpu_cell,
         "cpu_us_per_line", True),
        ("… of which system time: the kernel, mostly send() (µs)", f"latency_{big}",
         lambda m, k: cpu_cell(m, k, "system_us_per_line"), "system_us_per_line", True),
        ("server CPU per delivered line, the same with a stuck reader (µs)", "latency_stuck",
         cpu_cell, "cpu_us_per_line", True),
        (f"latency p50 / p99, {big:,} clients, busy room: {plan.senders} x "
         f"{plan.busy_rate:g} lines/s (ms)", "latency_busy", steady_cell, "p99_ms", True),
        ("server CPU per delivered line in the busy room (µs)", "latency_busy", cpu_cell,
         "cpu_us_per_line", True),
        (f"churn, {plan.churn_parallel} at a time (cycles/s)", "churn", churn_cell, "rate",
         False),
        ("churn, the same with a stuck reader (cycles/s)", "churn_stuck", churn_cell, "rate",
         False),
        (f"memory per idle client, {big:,} clients (KiB RSS)", f"latency_{big}",
         lambda m, k: f"{med(m, k, 'kib_per_client'):.1f}", "kib_per_client", False),
        (f"threads per client, {big:,} clients", f"latency_{big}",
         lambda m, k: f"{med(m, k, 'threads_per_client'):.2f}", "", False),
        (f"time to connect {big:,} clients, each synced (s)", f"latency_{big}",
         lambda m, k: f"{med(m, k, 'connect_s'):.1f}", "connect_s", False),
    ]  # fmt: skip

    out = [
        "# Chat servers against an asyncio baseline",
        "",
        f"Run {info['date']} on {describe(info)} at the start, {info['load_end']} at the end "
        f"({info['minutes']} minutes; plan `{plan.name}`). The machine is shared: some task "
        f"waited for a CPU {info.get('cpu_pressure', 'unknown')} of the time "
        "(/proc/pressure/cpu), so absolute figures vary from run to run, the ratios against the "
        "baseline of the same run much less.",
        "",
        f"Each figure is the median of its runs, each run on a fresh server process: "
        f"{plan.fan_repeats} fan-outs of each chat server and {plan.fan_repeats_baseline} of the "
        f"baseline (about 50 s each), {plan.repeats} runs of everything else; with a stuck "
        f"reader the baseline runs {plan.stuck_repeats_baseline} time(s), cut short after "
        f"{plan.stuck_timeout_baseline:.0f} s, because it stalls. Latency: {plan.senders} senders "
        f"x {plan.rate:g} lines/s for {plan.duration:g} s, everyone reading; in the busy room "
        f"{plan.busy_rate:g} lines/s each, so that lines arrive faster than one pass of group "
        "delivery sends them (section_a/fanout.py). A stuck reader has a "
        "4 KiB receive buffer and never reads; for latency and churn it is filled first, until "
        f"the kernel holds all it will for it ({kernel / 2**20:.1f} MiB here) and 4,000 lines "
        "more wait in the server. Servers run with `-q`, all other settings default "
        "(no flood control).",
        "",
        "| measure | section A | section C | asyncio baseline | A ÷ baseline | C ÷ baseline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, m, cell, field, _ in rows:
        cells = [cell(m, k) for k in ("A", "C", baseline)]
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
                ratios.append(times(ratio(med(m, k, field), med(m, baseline, field))))
        out.append(f"| {label} | " + " | ".join(cells + ratios) + " |")

    out += ["", f"![latency and throughput]({info.get('png', 'latest.png')})", ""]
    out += targets(plan, r, baseline)
    out += generator(plan, r, baseline)
    out += notes(r)
    return "\n".join(out) + "\n"


def targets(plan: Plan, r: Results, b: str) -> list[str]:
    big = max(plan.latency_clients)

    def check(value: float, ok: bool, text: str) -> str:
        return f"{text} {'✔' if ok and not math.isnan(value) else '✘'}"

    def lines(k: str) -> list[str]:
        fan = ratio(median(r, "fanout", k, "rate"), median(r, "fanout", b, "rate"))
        fan_s = ratio(median(r, "fanout_stuck", k, "rate"), median(r, "fanout", b, "rate"))
        lat = f"latency_{big}"
        cpu = ratio(median(r, lat, k, "cpu_us_per_line"), median(r, lat, b, "cpu_us_per_line"))
        cpu_s = ratio(
            median(r, "latency_stuck", k, "cpu_us_per_line"), median(r, lat, b, "cpu_us_per_line")
        )
        p99 = ratio(median(r, lat, k, "p99_ms"), median(r, lat, b, "p99_ms"))
        p99_s = ratio(median(r, "latency_stuck", k, "p99_ms"), median(r, lat, b, "p99_ms"))
        kib = median(r, lat, k, "kib_per_client")
        churn = median(r, "churn", k, "rate")
        churn_s = median(r, "churn_stuck", k, "rate")
        lossless = every(r, "fanout", k, "lossless")
        stuck_ok = every(r, "fanout_stuck", k, "lossless") and every(
            r, "fanout_stuck", k, "stuck_closed"
        )
        return [
            check(fan, fan >= 10 and lossless, times(fan)),
            check(fan_s, fan_s >= 10 and stuck_ok, times(fan_s)),
            check(cpu, cpu <= 0.5 and every(r, lat, k, "lossless"), times(cpu)),
            check(cpu_s, cpu_s <= 0.5 and every(r, "latency_stuck", k, "lossless"), times(cpu_s)),
            check(p99, p99 <= 1 and every(r, lat, k, "lossless"), times(p99)),
            check(p99_s, p99_s <= 1 and every(r, "latency_stuck", k, "lossless"), times(p99_s)),
            check(kib, kib <= 32, f"{kib:.1f} KiB"),
            check(churn, churn >= 2000 and every(r, "churn", k, "back"), f"{churn:,.0f}/s"),
            check(
                churn_s, churn_s >= 2000 and every(r, "churn_stuck", k, "back"), f"{churn_s:,.0f}/s"
            ),
        ]

    names = [
        "fan-out ≥ 10x the baseline, lossless",
        "fan-out with a stuck reader ≥ 10x the baseline's (without), lossless, stuck reader cut",
        f"server CPU per line ≤ ½ the baseline's ({big:,} clients, {plan.senders} senders)",
        "the same with a stuck reader, against the baseline without",
        f"p99 latency at {big:,} clients ≤ the baseline's",
        "the same with a stuck reader, against the baseline without",
        "memory per idle client ≤ 32 KiB",
        "churn ≥ 2,000 cycles/s, threads and descriptors back",
        "the same with a stuck reader",
    ]
    a, c = lines("A"), lines("C")
    out = ["## Targets", "", "| target | section A | section C |", "|---|---:|---:|"]
    out += [f"| {n} | {x} | {y} |" for n, x, y in zip(names, a, c, strict=True)]
    return [*out, ""]


def generator(plan: Plan, r: Results, b: str) -> list[str]:
    big = max(plan.latency_clients)
    keys = ("relay", "A", "C", b)

    def busy(m: str, k: str) -> str:
        done = runs(r, m, k)
        if not done:
            return "n/a"
        return f"{statistics.median(x.generator_cpu / x.elapsed for x in done):.0%}"

    lat = f"latency_{big}"
    verdicts = []
    for m, what in (("fanout", "fan-out"), ("churn", "churn")):
        relay = median(r, m, "relay", "rate")
        best = max(median(r, m, k, "rate") for k in ("A", "C"))
        verdicts.append(
            f"In the {what} the generator went {times(relay / best)} as fast with the plain "
            "relay as with the faster chat server: it was not what limited the chat servers."
            if relay > 1.1 * best
            else f"**In the {what} the generator did not outrun the chat servers with the plain "
            "relay: their figures may be the generator's limit, not theirs.**"
        )
    verdict = " ".join(verdicts)
    return [
        "## The load generator is not the bottleneck",
        "",
        "The same load through `bench/plain_relay.py` (a thread per client, one "
        "`bytes.replace` and one `sendall` per read and recipient, no per-line Python work), "
        "and how busy the generator (one thread, one process) was meanwhile.",
        "",
        "| | plain relay | section A | section C | asyncio baseline |",
        "|---|---:|---:|---:|---:|",
        "| fan-out (lines/s) | " + " | ".join(si(median(r, "fanout", k, "rate")) for k in keys)
        + " |",
        "| generator CPU during the fan-out (share of one core) | "
        + " | ".join(busy("fanout", k) for k in keys) + " |",
        f"| latency p50 / p99, {big:,} clients (ms) | "
        + " | ".join(f"{ms(median(r, lat, k, 'p50_ms'))} / {ms(median(r, lat, k, 'p99_ms'))}"
                     for k in keys) + " |",
        f"| generator CPU during the latency run, {big:,} clients | "
        + " | ".join(busy(lat, k) for k in keys) + " |",
        "| churn (cycles/s) | "
        + " | ".join(f"{median(r, 'churn', k, 'rate'):,.0f}" for k in keys) + " |",
        "| generator CPU during churn | " + " | ".join(busy("churn", k) for k in keys) + " |",
        "",
        verdict + f" Latency at {big:,} clients is paid by every server alike: {big - 1:,} "
        "send() calls per line in the server, and the generator reading that many sockets, one "
        "after another, for every line; the relay's figure shows how much of it that is.",
        "",
    ]  # fmt: skip


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
