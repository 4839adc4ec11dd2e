"""`make bench`: both chat servers and an asyncio baseline, measured side by side in one run.

    Plan (sizes, repeats) --> tasks: every measurement x every server x its repeats,
                              interleaved (round 1 of everything, then round 2, ...)
          each task: a fresh server process, loaded by tests/load.py (measure.py)
                 --> Results: every run's numbers --> tables.py: medians, ratios against
                     the baseline of this run, targets --> Markdown on stdout and in
                     bench/results/latest.md; report.py: raw numbers in latest.json;
                     plot.py: latest.png

Why interleaved: this machine is shared and noisy, so absolute times drift during a
run; taking round after round spreads the drift over every server alike, and the
ratios against the baseline compare figures taken minutes apart, not a quarter of
an hour. Why medians: one run disturbed by a neighbour does not move a median.

The baseline's fan-out takes ~50 s a run (the servers' ~1 s), so it gets fewer
repeats; with a stuck reader it stalls, so it gets one run, cut short at a time limit.
`--quick` runs everything small, once, in well under a minute: a smoke test.

Run it: python -m bench.run [--quick] [--out PREFIX] [--render SAVED.json]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench import measure, report, tables
from bench.measure import Server
from tests.load import raise_fd_limit

SERVERS = (
    Server("A", "section A", "section_a.server"),
    Server("C", "section C", "section_c.server"),
    Server("asyncio", "asyncio baseline", "bench.baseline_asyncio"),
)
BASELINE = "asyncio"
RELAY = Server("relay", "plain relay", "bench.plain_relay")  # the generator's yardstick
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one benchmark run."""

    name: str
    repeats: int = 3  # runs of each measurement, each server (medians over them)
    fan_repeats: int = 5  # runs of the chat servers' fan-out (about 2 s each)
    fan_repeats_baseline: int = 3  # runs of the baseline's fan-out (about 50 s each)
    stuck_repeats_baseline: int = 1  # the baseline stalls with a stuck reader: once is enough
    fan_clients: int = 50
    fan_lines: int = 2000  # lines each client sends
    fan_timeout: float = 60.0  # seconds for a fan-out; the baseline's normal one is longer
    fan_timeout_baseline: float = 240.0
    stuck_timeout_baseline: float = 60.0  # seconds the baseline's fan-out gets with a stuck reader
    stuck_churn_timeout_baseline: float = 15.0  # and its churn (it stalls at the first cycle)
    latency_clients: tuple[int, ...] = (30, 100, 1000)  # the largest: memory and threads too
    senders: int = 20
    rate: float = 2.0  # lines a second per sender
    busy_rate: float = 10.0  # and in a busy room: lines come faster than one pass sends them
    duration: float = 5.0  # seconds of steady sending
    drain: float = 5.0  # seconds to wait for the last lines
    churn_cycles: int = 3000
    churn_parallel: int = 50
    churn_timeout: float = 60.0
    settle: float = 10.0  # seconds for threads and descriptors to come back after churn


FULL = Plan("full")
QUICK = replace(
    FULL,
    name="quick",
    repeats=1,
    fan_repeats=1,
    fan_repeats_baseline=1,
    fan_clients=10,
    fan_lines=200,
    fan_timeout=20.0,
    fan_timeout_baseline=30.0,
    stuck_timeout_baseline=3.0,
    stuck_churn_timeout_baseline=3.0,
    latency_clients=(10, 50),
    senders=5,
    rate=5.0,
    busy_rate=50.0,
    duration=1.0,
    drain=2.0,
    churn_cycles=200,
    churn_timeout=10.0,
    settle=3.0,
)


@dataclass(frozen=True)
class Task:
    measurement: str  # fanout, fanout_stuck, latency_N, latency_stuck, churn, ...
    server: Server
    run: Callable[[Server, Path], measure.Record]


def tasks(plan: Plan) -> list[list[Task]]:
    """Rounds of tasks: the nth round holds the nth run of every measurement that has one."""
    big = max(plan.latency_clients)

    def fan(stuck: bool, timeout: float) -> Callable[[Server, Path], measure.Record]:
        return lambda s, d: measure.fan_out(
            s, d, plan.fan_clients, plan.fan_lines, stuck=stuck, timeout=timeout
        )

    def latency(
        clients: int, stuck: bool, rate: float = plan.rate
    ) -> Callable[[Server, Path], measure.Record]:
        senders = min(plan.senders, clients)
        return lambda s, d: measure.steady(
            s, d, clients, senders, rate=rate, duration=plan.duration,
            drain=plan.drain, stuck=stuck,
        )  # fmt: skip

    def churn(stuck: bool, timeout: float) -> Callable[[Server, Path], measure.Record]:
        return lambda s, d: measure.churn(
            s, d, plan.churn_cycles, plan.churn_parallel, stuck=stuck,
            settle=plan.settle, timeout=timeout,
        )  # fmt: skip

    stalls = plan.stuck_timeout_baseline
    wanted: list[tuple[str, Server, int, Callable[[Server, Path], measure.Record]]] = []
    for server in SERVERS:
        ours = server.key != BASELINE
        wanted += [
            ("fanout", server, plan.fan_repeats if ours else plan.fan_repeats_baseline,
             fan(False, plan.fan_timeout if ours else plan.fan_timeout_baseline)),
            ("fanout_stuck", server, plan.repeats if ours else plan.stuck_repeats_baseline,
             fan(True, plan.fan_timeout if ours else stalls)),
            *((f"latency_{n}", server, plan.repeats, latency(n, False))
              for n in plan.latency_clients),
            ("latency_stuck", server, plan.repeats if ours else plan.stuck_repeats_baseline,
             latency(big, True)),
            ("latency_busy", server, plan.repeats, latency(big, False, plan.busy_rate)),
            ("churn", server, plan.repeats, churn(False, plan.churn_timeout)),
            ("churn_stuck", server, plan.repeats if ours else plan.stuck_repeats_baseline,
             churn(True, plan.churn_timeout if ours else plan.stuck_churn_timeout_baseline)),
        ]  # fmt: skip
    wanted += [
        ("fanout", RELAY, plan.fan_repeats, fan(False, plan.fan_timeout)),
        (f"latency_{big}", RELAY, plan.repeats, latency(big, False)),
        ("churn", RELAY, plan.repeats, churn(False, plan.churn_timeout)),
    ]
    rounds = max(count for _, _, count, _ in wanted)
    return [[Task(m, s, run) for m, s, count, run in wanted if count > n] for n in range(rounds)]


def execute(plan: Plan, log_dir: Path) -> report.Results:
    """Run every task; a run that fails is recorded with its error, and the run goes on."""
    results: report.Results = {}
    rounds = tasks(plan)
    total = sum(len(r) for r in rounds)
    started = time.monotonic()
    done = 0
    for number, round_ in enumerate(rounds, 1):
        for task in round_:
            done += 1
            t0 = time.monotonic()
            try:
                record: measure.Record | str = task.run(task.server, log_dir)
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
        description="Benchmark section A, section C and an asyncio baseline, side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one run each: a smoke test"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write PREFIX.md, PREFIX.json and PREFIX.png "
        "(default: bench/results/latest, or bench/results/quick with --quick)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the table and plot again from a saved PREFIX.json",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    out: Path = args.out or RESULTS / ("quick" if args.quick else "latest")
    if args.render:
        saved_plan, machine, results = report.load(args.render)
        plan = Plan(**{**saved_plan, "latency_clients": tuple(saved_plan["latency_clients"])})
    else:
        raise_fd_limit()  # a descriptor per client here too, and the servers inherit the limit
        machine = report.machine()
        print(f"bench: plan {plan.name}; {report.describe(machine)}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-logs-") as logs:
            results = execute(plan, Path(logs))
        machine = report.finish(machine)
    machine = {**machine, "png": out.with_suffix(".png").name}
    text = tables.markdown(plan, machine, results, baseline=BASELINE)
    print(text)
    written = report.save(out, text, plan, machine, results)
    print(f"bench: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    errors = report.errors(results)
    if errors:
        print(f"bench: {errors} runs failed with an error (see above)", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
