"""What a benchmark run found: medians, ratios against the baseline, targets, in Markdown and JSON.

Every figure is the median over its runs. A run that failed with an error counts
in no median and is listed under the notes; a run that lost a line marks its figure.
Ratios are section A (or C) divided by the baseline of the same run: above 1 is
better for throughput and churn, below 1 for latency, CPU and memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.measure import ChurnRun, FanOut, Record, Steady

if TYPE_CHECKING:
    from bench.run import Plan

Results = dict[str, dict[str, list[Record | str]]]  # measurement -> server key -> runs
OURS = (("A", "section A"), ("C", "section C"))
BASE = "asyncio"


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


def count(results: Results, measurement: str, key: str) -> str:
    return str(len(results.get(measurement, {}).get(key, [])))


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
        return f"{si(record.rate)} lines/s, {state}{stuck}"
    if isinstance(record, Steady):
        return (
            f"p50 {ms(record.p50_ms)} p99 {ms(record.p99_ms)} ms, "
            f"{record.cpu_us_per_line:.1f} us/line, "
            f"{'lossless' if record.lossless else 'LOSS'}, "
            f"generator {record.generator_cpu / max(record.elapsed, 1e-9):.0%} busy; "
            f"connected in {record.connect_s:.1f}s, {record.kib_per_client:.1f} KiB "
            f"and {record.threads_per_client:.2f} threads per idle client"
        )
    back = f"back in {record.settle_s:.2f}s" if record.back else "NOT back"
    return f"{record.rate:,.0f} cycles/s, {record.failed} failed, {back}"


# --------------------------------------------------------------------------- Markdown


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
        f"x {plan.rate:g} lines/s for {plan.duration:g} s, everyone reading. A stuck reader has a "
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
            f"In the {what} the generator went {times(relay / best)} as fast with the trivial "
            "relay as with the faster chat server: it was not what limited the chat servers."
            if relay > 1.1 * best
            else f"**In the {what} the generator did not outrun the chat servers with the trivial "
            "relay: their figures may be the generator's limit, not theirs.**"
        )
    verdict = " ".join(verdicts)
    return [
        "## The load generator is not the bottleneck",
        "",
        "The same load through `bench/trivial_relay.py` (a thread per client, one "
        "`bytes.replace` and one `sendall` per read and recipient, no per-line Python work), "
        "and how busy the generator (one thread, one process) was meanwhile.",
        "",
        "| | trivial relay | section A | section C | asyncio baseline |",
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


# --------------------------------------------------------------------------- saving

KINDS: tuple[tuple[str, type[Record]], ...] = (
    ("fanout", FanOut),
    ("latency", Steady),
    ("churn", ChurnRun),
)


def load(path: Path) -> tuple[dict[str, Any], dict[str, str], Results]:
    """The plan (as a dict), machine and runs of a saved PREFIX.json, to render again."""
    raw = json.loads(path.read_text())
    results: Results = {}
    for m, by in raw["runs"].items():
        kind = next(cls for prefix, cls in KINDS if m.startswith(prefix))
        results[m] = {
            k: [x if isinstance(x, str) else _record(kind, x) for x in rs] for k, rs in by.items()
        }
    return raw["plan"], raw["machine"], results


def _record(kind: type[Record], fields: dict[str, Any]) -> Record:
    # In a float field, null stood for an infinity (a stall) or NaN; inf renders as stalled.
    floats = {f.name for f in dataclasses.fields(kind) if f.type == "float"}
    values: dict[str, Any] = {
        k: math.inf if v is None and k in floats else v for k, v in fields.items()
    }
    return kind(**values)


def plain(value: Any) -> Any:
    """JSON-ready: infinities and NaN become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def save(out: Path, text: str, plan: Plan, info: dict[str, str], results: Results) -> list[Path]:
    """Write PREFIX.md, PREFIX.json and PREFIX.png, each atomically (a .tmp, then renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = {
        "machine": info,
        "plan": dataclasses.asdict(plan),
        "runs": {
            m: {k: [x if isinstance(x, str) else dataclasses.asdict(x) for x in rs]
                for k, rs in by.items()}
            for m, by in results.items()
        },
    }  # fmt: skip
    written = []
    for suffix, content in ((".md", text), (".json", json.dumps(plain(raw), indent=1))):
        path = out.with_suffix(suffix)
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(content if content.endswith("\n") else content + "\n")
        tmp.replace(path)
        written.append(path)
    try:
        from bench.plot import plot
    except ImportError as exc:  # matplotlib is a dev requirement only
        print(f"bench: no plot ({exc}); pip install -r requirements-dev.txt", file=sys.stderr)
        return written
    png = out.with_suffix(".png")
    tmp = png.with_suffix(".png.tmp")
    plot(tmp, plan, info, results)
    tmp.replace(png)
    return [*written, png]
