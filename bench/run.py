"""`make bench`: both chat servers, an asyncio baseline and two reference relays, side by side.

    Plan (plan.py: sizes, repeats) --> tasks: every measurement x every server x its
                                       repeats, interleaved (round 1 of everything, ...)
          each task: a fresh server process on one CPU, loaded from another (measure_*.py)
                 --> Results: every run's numbers --> tables.py: medians, ratios against
                     the baseline and the relays of this run, targets --> Markdown on
                     stdout and in bench/results/latest.md; saving.py: raw numbers in
                     latest.json; plot.py: latest.png

The servers: section A and section C; the asyncio baseline (what most Python users
would write); and two reference relays that do the least a relay can, to measure the
chat servers against: the plain relay (bench/plain_relay.py: Python, a thread per
client) and the C relay (bench/c_relay.c: one epoll thread, no Python at all).
Built with the machine's C compiler (native.py); without one, there is no C relay,
and the fan-out is measured through the Python generator (the report says so).

The fan-out is measured through the C generator (bench/c_loadgen.c), which one
Python thread could not keep up with; it is also measured through the Python one
(`fanout_py`), to show the difference. Latency and churn use the Python generator;
the busy room (1,000 readers of 200 lines a second, where the Python generator is
busy nearly all the time) is measured through the C one too (`latency_busy_c`), at the same
sizes. Without a C compiler neither C measurement is made.

Why interleaved: this machine is shared and noisy, so absolute times drift during a
run; taking round after round spreads the drift over every server alike, and the
ratios against the baseline compare figures taken minutes apart, not a quarter of
an hour. Why medians: one run disturbed by a neighbour does not move a median.

The baseline's fan-out takes about 40 s a run with a tenth of the lines the others
send (theirs take a second or two), so it gets fewer repeats; with a stuck reader it
stalls, so it gets one run, cut short at a time limit.
`--quick` runs everything small, once, in well under a minute: a smoke test (the
baseline's runs with a stuck reader, which only wait out their time limits, left out).
`--only fanout,fanout_py` runs those measurements alone.

The chat servers as they were before the threads rewrite (bench/before.py: commit
85dcc39, extracted with git) are measured too, at the largest size and in the busy
room (through both generators), so that "no worse than before" compares figures of
this run; also with `--quick`, as a smoke test of them. Without git history they are
left out.

Run it: python -m bench.run [--quick] [--only M,...] [--out PREFIX] [--render SAVED.json]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from bench import (
    before,
    measure_churn,
    measure_fanout,
    measure_latency,
    native,
    report,
    saving,
    tables,
)
from bench.measuring import PYTHON, C, Server, Setup
from bench.plan import FULL, QUICK, Plan
from bench.processes import Placement, python_module
from section_a.serving import raise_fd_limit

SERVERS = (
    Server("A", "section A", python_module("section_a.server")),
    Server("C", "section C", python_module("section_c.server")),
    Server("asyncio", "asyncio baseline", python_module("bench.baseline_asyncio")),
)
BASELINE = "asyncio"
PLAIN = Server("plain", "plain relay", python_module("bench.plain_relay"))
# The plain relay with the chat servers' join and leave notices: churned only, to show
# what the notices themselves cost.
NOTICES = Server(report.PLAIN_NOTICES, "plain relay with notices", (*PLAIN.command, "--notices"))
C_RELAY = "crelay"  # its command is the binary native.py builds
RESULTS = Path(__file__).resolve().parent / "results"


Run = Callable[[Server, Setup], report.Record]


@dataclass(frozen=True)
class Task:
    measurement: str  # fanout, fanout_py, fanout_stuck, latency_N, latency_stuck, churn, ...
    server: Server
    run: Run


def tasks(
    plan: Plan,
    c_relay: Server | None,
    only: frozenset[str] = frozenset(),
    old: tuple[Server, ...] = (),
) -> list[list[Task]]:
    """Rounds of tasks: the nth round holds the nth run of every measurement that has one.

    With `c_relay` None (no C compiler) there is no C relay, and the fan-out goes
    through the Python generator; `old`: the servers before the rewrite (before.py), if
    any; with `only`, just those measurements.
    """
    big = max(plan.latency_clients)
    fast = C if c_relay is not None else PYTHON  # the fan-out's generator

    def fan(stuck: bool, timeout: float, generator: str = fast, lines: int = plan.fan_lines) -> Run:
        return lambda s, setup: measure_fanout.fan_out(
            s, setup, plan.fan_clients, lines, stuck=stuck, timeout=timeout, generator=generator
        )  # fmt: skip

    def latency(clients: int, stuck: bool, rate: float = plan.rate, generator: str = PYTHON) -> Run:
        senders = min(plan.senders, clients)
        return lambda s, setup: measure_latency.steady(
            s, setup, clients, senders, rate=rate, duration=plan.duration,
            drain=plan.drain, stuck=stuck, generator=generator,
        )  # fmt: skip

    # The busy room through the C generator, beside the Python one: where there is a C
    # compiler (as for the C fan-out), for every server that has the busy room at all.
    busy_c = plan.repeats if fast == C else 0  # runs; none: the task is never made

    def churn(stuck: bool, timeout: float) -> Run:
        return lambda s, setup: measure_churn.churn(
            s, setup, plan.churn_cycles, plan.churn_parallel, stuck=stuck,
            settle=plan.settle, timeout=timeout,
        )  # fmt: skip

    stalls = plan.stuck_timeout_baseline
    relays = [PLAIN] if c_relay is None else [PLAIN, c_relay]
    wanted: list[tuple[str, Server, int, Run]] = []
    for server in SERVERS:
        ours = server.key != BASELINE
        wanted += [
            ("fanout", server, plan.fan_repeats if ours else plan.fan_repeats_baseline,
             fan(False, plan.fan_timeout) if ours
             else fan(False, plan.fan_timeout_baseline, lines=plan.fan_lines_baseline)),
            ("fanout_stuck", server, plan.repeats if ours else plan.stuck_repeats_baseline,
             fan(True, plan.fan_timeout) if ours
             else fan(True, stalls, lines=plan.fan_lines_baseline)),
            *((f"latency_{n}", server, plan.repeats, latency(n, False))
              for n in plan.latency_clients),
            ("latency_stuck", server, plan.repeats if ours else plan.stuck_repeats_baseline,
             latency(big, True)),
            ("latency_busy", server, plan.repeats, latency(big, False, plan.busy_rate)),
            ("latency_busy_c", server, busy_c, latency(big, False, plan.busy_rate, C)),
            ("churn", server, plan.churn_repeats, churn(False, plan.churn_timeout)),
            ("churn_stuck", server, plan.repeats if ours else plan.stuck_repeats_baseline,
             churn(True, plan.churn_timeout if ours else plan.stuck_churn_timeout_baseline)),
        ]  # fmt: skip
    for relay in relays:
        wanted += [
            ("fanout", relay, plan.fan_repeats, fan(False, plan.fan_timeout)),
            (f"latency_{big}", relay, plan.repeats, latency(big, False)),
            ("churn", relay, plan.churn_repeats, churn(False, plan.churn_timeout)),
        ]
    wanted.append(("churn", NOTICES, plan.churn_repeats, churn(False, plan.churn_timeout)))
    for server in old:  # the latency targets' "before", and its memory per idle client
        wanted += [
            (f"latency_{big}", server, plan.repeats, latency(big, False)),
            ("latency_busy", server, plan.repeats, latency(big, False, plan.busy_rate)),
            ("latency_busy_c", server, busy_c, latency(big, False, plan.busy_rate, C)),
        ]
    if fast == C:  # the same fan-out through the Python generator: what it can measure
        wanted += [
            ("fanout_py", server, plan.fan_repeats_python, fan(False, plan.fan_timeout, PYTHON))
            for server in (*SERVERS[:2], *relays)
        ]
    if only:
        wanted = [w for w in wanted if w[0] in only]
    rounds = max((count for _, _, count, _ in wanted), default=0)
    return [[Task(m, s, run) for m, s, count, run in wanted if count > n] for n in range(rounds)]


def measurements(plan: Plan) -> list[str]:
    """The names of every measurement a run makes (for --only)."""
    every = tasks(plan, Server(C_RELAY, "C relay", ()))
    return sorted({t.measurement for r in every for t in r})


def execute(rounds: list[list[Task]], setup: Setup) -> report.Results:
    """Run every task; a run that fails is recorded with its error, and the run goes on."""
    results: report.Results = {}
    total = sum(len(r) for r in rounds)
    started = time.monotonic()
    done = 0
    for number, round_ in enumerate(rounds, 1):
        for task in round_:
            done += 1
            t0 = time.monotonic()
            try:
                record: report.Record | str = task.run(task.server, setup)
            except Exception as exc:  # one failed run must not lose the others' figures
                record = f"{type(exc).__name__}: {exc}".strip()
                traceback.print_exc(file=sys.stderr)
            results.setdefault(task.measurement, {}).setdefault(task.server.key, []).append(record)
            clock = time.strftime("%M:%S", time.gmtime(time.monotonic() - started))
            print(
                f"[{done}/{total} {clock}] round {number} {task.measurement} {task.server.key}: "
                f"{report.brief(record)} ({time.monotonic() - t0:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (a timeout, kill) unwinds like Ctrl-C, so every server started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(
        description="Benchmark section A, section C, an asyncio baseline and two reference "
        "relays, side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one run each: a smoke test"
    )
    parser.add_argument(
        "--only",
        metavar="M,...",
        help=f"these measurements alone, of: {', '.join(measurements(FULL))}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write PREFIX.md, PREFIX.json and PREFIX.png (default: bench/results/latest; "
        "bench/results/quick with --quick, bench/results/partial with --only)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the table and plot again from a saved PREFIX.json",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    only = frozenset(args.only.split(",")) if args.only else frozenset()
    if unknown := only - set(measurements(plan)):
        parser.error(f"--only: no measurement {', '.join(sorted(unknown))}")
    name = "partial" if only else plan.name if args.quick else "latest"
    out: Path = args.out or RESULTS / name
    if args.render:
        saved_plan, machine, results = saving.load(args.render)
        known = {f.name for f in fields(Plan)}
        saved = {k: v for k, v in saved_plan.items() if k in known}
        plan = Plan(**{**saved, "latency_clients": tuple(saved["latency_clients"])})
    else:
        raise_fd_limit()  # a descriptor per client here too, and the servers inherit the limit
        machine = report.machine()
        print(f"bench: plan {plan.name}; {report.describe(machine)}", file=sys.stderr, flush=True)
        built, how = native.build_all()
        print(f"bench: {how}", file=sys.stderr, flush=True)
        placement = Placement.choose()
        c_relay = (
            Server(C_RELAY, "C relay", (str(built["c_relay"]),)) if "c_relay" in built else None
        )
        placement.enter()
        try:
            with (
                tempfile.TemporaryDirectory(prefix="bench-logs-") as logs,
                tempfile.TemporaryDirectory(prefix="bench-before-") as sources,
            ):
                old = before.extract(Path(sources))
                said = "measured too" if old else "not measured: no git, or no history here"
                print(f"bench: the servers of {before.REV}, before the threads rewrite: {said}",
                      file=sys.stderr, flush=True)  # fmt: skip
                setup = Setup(Path(logs), placement, built.get("c_loadgen"), plan.stuck_eof_wait)
                olds = before.servers(old) if old else ()
                results = execute(tasks(plan, c_relay, only, olds), setup)
        finally:
            placement.restore()
        machine = report.finish(machine)
        machine = {**machine, "placement": placement.describe(), "c_programs": how}
    machine = {**machine, "png": out.with_suffix(".png").name}
    text = tables.markdown(plan, machine, results, baseline=BASELINE)
    print(text)
    written = saving.save(out, text, plan, machine, results)
    print(f"bench: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    errors = report.errors(results)
    if errors:
        print(f"bench: {errors} runs failed with an error (see above)", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
