"""The chat servers against the reference relays, and the proof that the generator kept up.

Two relays do on the wire what a chat server does for plain lines, and nothing else:
the plain relay (bench/plain_relay.py: Python, a thread per client, one sendall per
read and recipient) and the C relay (bench/c_relay.c: one epoll thread, each line
copied once and sendfile()d to every reader). A chat server's figure divided by the
plain relay's is what the chat adds to the same design in Python; divided by the C
relay's, how far it is from the fastest relay we know how to write. The plain relay is
also churned with the chat servers' join and leave notices (`--notices`), to show what
the notices themselves cost.

A figure says something about a server only if the load generator was not the
limit: so the fan-out is shown through both generators, with how busy each was. A
generator near 100% of its core was the limit; one with CPU to spare was not.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

from bench.cells import churn_cell, fan_cell, number_cell, steady_cell
from bench.report import OURS, PLAIN_NOTICES, RELAYS, Results, median, ms, ratio, runs, si, times

if TYPE_CHECKING:
    from bench.plan import Plan

BUSY = 0.9  # share of one core past which a generator may have been the limit
NAMES = dict((*OURS, *RELAYS, ("asyncio", "asyncio baseline")))


def relay_ratio(r: Results, m: str, k: str, relay: str, field: str) -> str:
    done = runs(r, m, relay)
    if not done:
        return "n/a"
    if not all(getattr(x, "lossless", True) for x in done):
        return "relay loses lines"
    return times(ratio(median(r, m, k, field), median(r, m, relay, field)))


def against_relays(plan: Plan, r: Results) -> list[str]:
    big = max(plan.latency_clients)
    lat = f"latency_{big}"
    cpu, ctx = number_cell("cpu_us_per_line", None), number_cell("ctx_per_line", None)
    rows = [
        ("fan-out (lines/s)", "fanout", fan_cell, "rate"),
        ("server CPU per delivered line in the fan-out (µs)", "fanout", cpu, "cpu_us_per_line"),
        ("server context switches per delivered line in the fan-out", "fanout", ctx,
         "ctx_per_line"),
        (f"latency p50 / p99, {big:,} clients (ms)", lat, steady_cell, "p99_ms"),
        (f"server CPU per delivered line, {big:,} clients (µs)", lat, cpu, "cpu_us_per_line"),
        (f"server context switches per delivered line, {big:,} clients", lat, ctx,
         "ctx_per_line"),
        (f"churn, {plan.churn_parallel} at a time (cycles/s)", "churn", churn_cell, "rate"),
        ("server CPU per churn cycle (µs)", "churn", number_cell("cpu_us_per_cycle", 0),
         "cpu_us_per_cycle"),
    ]  # fmt: skip
    keys = [k for k, _ in (*OURS, *RELAYS)]
    ratio_heads = [f"{o} ÷ {name}" for _, name in RELAYS for o in ("A", "C")]
    out = [
        "## Against the reference relays",
        "",
        "The same loads through the plain relay (Python, a thread per client, one `sendall` per "
        "read and recipient) and the C relay (one epoll thread, non-blocking sockets, each "
        "round of lines written once to an in-memory file and sendfile()d to every reader, so "
        "the kernel copies a line once rather than once per reader; no limits). Neither sends "
        "join or leave notices, so in the churn they do less than a chat server must.",
        "",
        "| measure | section A | section C | plain relay | C relay | " + " | ".join(ratio_heads)
        + " |",
        "|---|" + "---:|" * (len(keys) + len(ratio_heads)),
    ]  # fmt: skip
    for label, m, cell, field in rows:
        if m not in r:
            continue
        cells = [cell(r, m, k) for k in keys]
        ratios = [relay_ratio(r, m, o, relay, field) for relay, _ in RELAYS for o, _ in OURS]
        out.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return [*out, "", *notices(r)]


def notices(r: Results) -> list[str]:
    """What the join and leave notices cost the plain relay in the churn, if it was measured."""
    if not runs(r, "churn", PLAIN_NOTICES):
        return []

    def cpu(k: str) -> float:
        return median(r, "churn", k, "cpu_us_per_cycle")

    return [
        "The plain relay with the chat servers' join and leave notices (`--notices`: one "
        "`sendall` of each to every other client) churned "
        f"{median(r, 'churn', PLAIN_NOTICES, 'rate'):,.0f} cycles/s, with "
        f"{cpu(PLAIN_NOTICES):,.0f} µs of server CPU a cycle: "
        f"{times(ratio(cpu(PLAIN_NOTICES), cpu('plain')))} the plain relay's without them. "
        f"Section A took {times(ratio(cpu('A'), cpu(PLAIN_NOTICES)))} and section C "
        f"{times(ratio(cpu('C'), cpu(PLAIN_NOTICES)))} the CPU a cycle of this relay.",
        "",
    ]


def busy(r: Results, m: str, k: str) -> float:
    """The generator's CPU over the run's time: its share of one core (median of the runs)."""
    done = runs(r, m, k)
    if not done:
        return math.nan
    shares = [getattr(x, "generator_busy", x.generator_cpu / x.elapsed) for x in done if x.elapsed]
    return float(statistics.median(shares)) if shares else math.nan


def share(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def count(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"


def generator(plan: Plan, r: Results, b: str) -> list[str]:
    big = max(plan.latency_clients)
    keys = ("crelay", "plain", "A", "C", b)
    lat = f"latency_{big}"
    c_gen = any(x.generator == "c" for k in r.get("fanout", {}) for x in runs(r, "fanout", k))
    py_fan = "fanout_py" if c_gen else "fanout"

    def rate_row(label: str, m: str) -> str:
        return f"| {label} | " + " | ".join(si(median(r, m, k, "rate")) for k in keys) + " |"

    def busy_row(label: str, m: str) -> str:
        return f"| {label} | " + " | ".join(share(busy(r, m, k)) for k in keys) + " |"

    def server_row(m: str) -> str:
        return (
            "| … the server's CPU meanwhile (its one core) | "
            + " | ".join(share(median(r, m, k, "server_busy")) for k in keys)
            + " |"
        )

    rows = []
    if c_gen:
        rows += [
            rate_row("fan-out through the C generator (lines/s)", "fanout"),
            busy_row("… the C generator's CPU meanwhile (share of one core)", "fanout"),
            server_row("fanout"),
        ]
    if py_fan in r:
        rows += [
            rate_row("fan-out through the Python generator (lines/s)", py_fan),
            busy_row("… the Python generator's CPU meanwhile", py_fan),
            server_row(py_fan),
        ]
    if lat in r:
        rows += [
            f"| latency p50 / p99, {big:,} clients (ms) | "
            + " | ".join(f"{ms(median(r, lat, k, 'p50_ms'))} / {ms(median(r, lat, k, 'p99_ms'))}"
                         for k in keys) + " |",
            busy_row(f"… the Python generator's CPU, {big:,} clients", lat),
        ]  # fmt: skip
    if "churn" in r:
        rows += [
            "| churn (cycles/s) | "
            + " | ".join(count(median(r, "churn", k, "rate")) for k in keys) + " |",
            busy_row("… the Python generator's CPU during churn", "churn"),
        ]  # fmt: skip
    if not rows:
        return []
    return [
        "## The load generator is not the bottleneck",
        "",
        "How busy the generator was (its CPU time over the run's time; each generator is one "
        "thread on a core of its own). "
        + (
            "The C generator (bench/c_loadgen.c) connects, sends and checks every line byte for "
            "byte as harness/load.py does, in C."
            if c_gen
            else "**There was no C generator (no C compiler): the fan-out went through the Python "
            "one, and where it was near 100% busy the figures are its limit, not the servers'.**"
        ),
        "",
        "| | C relay | plain relay | section A | section C | asyncio baseline |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        verdict(r, c_gen, py_fan, b),
        "",
    ]


def fastest(r: Results, m: str, keys: tuple[str, ...]) -> str:
    """The key of the highest median rate of `m` (NaN, for a server not measured, never wins)."""
    rates = [(median(r, m, k, "rate"), k) for k in keys]
    return max(((x, k) for x, k in rates if not math.isnan(x)), default=(math.nan, keys[0]))[1]


def verdict(r: Results, c_gen: bool, py_fan: str, b: str) -> str:
    ours = ("A", "C")
    relays = tuple(k for k, _ in RELAYS)
    best_ours = fastest(r, "fanout", ours)
    best = median(r, "fanout", best_ours, "rate")
    said = []
    if c_gen:
        loads = [(busy(r, "fanout", k), NAMES.get(k, k)) for k in ("crelay", "plain", "A", "C", b)]
        most, whom = max((x for x in loads if not math.isnan(x[0])), default=(math.nan, ""))
        crelay = median(r, "fanout", "crelay", "rate")
        servers = [median(r, "fanout", k, "server_busy") for k in ("crelay", "plain", "A", "C")]
        least = min((x for x in servers if not math.isnan(x)), default=math.nan)
        said.append(
            f"Through the C generator, the generator was at most {share(most)} busy ({whom})"
            + (": it had CPU to spare, so the fan-out figures are the servers' own"
               if most < BUSY else
               ": **near its limit, so the figures of the fastest servers may be its own**")
            + f"; the chat servers and relays used {share(least)} or more of their core"
            + (" (less than all of it: neighbours on this shared machine took the rest, or the "
               "server waited on something other than CPU)." if least < BUSY else ".")
            + f" The C relay delivered {times(ratio(crelay, best))} as many lines a second as "
            f"the faster chat server (section {best_ours})."
        )  # fmt: skip
    if py_fan in r:
        py_fastest = fastest(r, py_fan, ours)
        loaded = busy(r, py_fan, py_fastest)
        said.append(
            f"Through the Python generator, section {py_fastest} reached "
            f"{si(median(r, py_fan, py_fastest, 'rate'))} with the generator {share(loaded)} "
            f"busy, the {NAMES[fastest(r, py_fan, relays)]} "
            f"{si(median(r, py_fan, fastest(r, py_fan, relays), 'rate'))}"
            + (": the generator was the limit there, which is why the fan-out is measured "
               "through the C one." if loaded >= BUSY else ".")
        )  # fmt: skip
    if "churn" in r:
        loads = [(busy(r, "churn", k), NAMES.get(k, k)) for k in ("crelay", "plain", "A", "C", b)]
        most, whom = max((x for x in loads if not math.isnan(x[0])), default=(math.nan, ""))
        relay = median(r, "churn", fastest(r, "churn", relays), "rate")
        churn_best = median(r, "churn", fastest(r, "churn", ours), "rate")
        said.append(
            f"In the churn the generator was at most {share(most)} busy ({whom})"
            + (": not what limited the churn, which waits on round trips (connect, welcome, "
               "line, close) more than on CPU" if most < BUSY else
               ": **near its limit, so the churn figures may be its own**")
            + f"; the faster relay went {times(ratio(relay, churn_best))} as fast as the faster "
            "chat server."
        )  # fmt: skip
    return " ".join(said)
