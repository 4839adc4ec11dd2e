"""The chat servers as they were before the threads rewrite, measured in the same run.

    git archive REV section_a section_b section_c --> a temporary directory (extract)
        --> Servers "A_before", "C_before": that code, run with the loads of this run
        --> table(): ours against them; targets.py: "no worse than before"

Issue 29 asks for p99 latency "no worse than before" the threads rewrite. A figure
measured on another machine, in another run, says nothing about this one (the plain
relay's own p99 differs 1.6x between two machines), so the old servers are measured
here, beside the new, under the same loads: the ratio of two medians of one run is
the honest comparison. REV is the last commit of the old (epoll-flusher) design.

The old code must be the one that runs: `python -m` puts the current directory (the
repository, where the new code lives) first on sys.path, so the command runs with
`-P` (no current directory on sys.path) and the extracted copy on PYTHONPATH.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cells import BUSY_ROOM_ROWS, Cell, number_cell, steady_cell
from bench.measuring import Server
from bench.processes import ROOT
from bench.report import OURS, Results, every, median, ms, ratio, runs, times

if TYPE_CHECKING:
    from bench.plan import Plan

REV = "85dcc39"
PACKAGES = ("section_a", "section_b", "section_c")  # all the old servers import
KEYS = {"A": "A_before", "C": "C_before"}  # our server key -> its key before the rewrite
GIT_TIMEOUT = 60.0  # seconds for git archive


def extract(directory: Path, rev: str = REV, repo: Path = ROOT) -> Path | None:
    """The packages of `rev` written into `directory`, which is returned; None without them.

    None when there is no git, or no such revision (a copy of the repository without its
    history): the benchmark then runs without the old servers, never with a traceback.
    """
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", rev, *PACKAGES],
            capture_output=True,
            timeout=GIT_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        # Plain files only (the default from Python 3.14; 3.11.0-3.11.3 have no filters).
        tar.extraction_filter = getattr(tarfile, "data_filter", None)
        tar.extractall(directory)
    return directory


def servers(directory: Path) -> tuple[Server, Server]:
    """The old section A and section C, run from `directory` (see extract)."""

    def command(module: str) -> tuple[str, ...]:
        # env execs the interpreter, so the process measured is the server itself.
        return ("env", f"PYTHONPATH={directory}", sys.executable, "-P", "-m", module)

    return (
        Server(KEYS["A"], "section A before", command("section_a.server")),
        Server(KEYS["C"], "section C before", command("section_c.server")),
    )


def measured(r: Results, measurements: tuple[str, ...]) -> bool:
    """True if the old servers were run (even if their runs failed) in all of `measurements`."""
    return all(k in r.get(m, {}) for m in measurements for k in KEYS.values())


def p99_cell(r: Results, m: str, k: str) -> str:
    if not runs(r, m, k):
        return "error" if k in r.get(m, {}) else "—"
    return ms(median(r, m, k, "p99_ms")) + ("" if every(r, m, k, "lossless") else " ✘ lost lines")


def before_ratio(r: Results, m: str, k: str, field: str) -> str:
    done = runs(r, m, KEYS[k])
    if not field:
        return ""
    if not done:
        return "n/a"
    if not all(x.lossless for x in done):
        return "before loses lines"
    return times(ratio(median(r, m, k, field), median(r, m, KEYS[k], field)))


def table(plan: Plan, r: Results) -> list[str]:
    """Ours against the servers before the rewrite; nothing if those were not measured."""
    big = max(plan.latency_clients)
    lat = f"latency_{big}"
    cpu = number_cell("cpu_us_per_line", None)
    rows: list[tuple[str, str, Cell, str]] = [
        (f"p99 latency, {big:,} clients (ms)", lat, p99_cell, "p99_ms"),
        ("latency p50 / p99 in the busy room, Python generator (ms)", "latency_busy",
         steady_cell, "p99_ms"),
        ("latency p50 / p99 in the busy room, C generator (ms)", "latency_busy_c", steady_cell,
         "p99_ms"),
        *BUSY_ROOM_ROWS,
        (f"server CPU per delivered line, {big:,} clients (µs)", lat, cpu, "cpu_us_per_line"),
        (f"memory per idle client, {big:,} clients (KiB RSS)", lat,
         number_cell("kib_per_client", 1), "kib_per_client"),
    ]  # fmt: skip
    rows = [row for row in rows if measured(r, (row[1],))]
    if not rows:
        return []
    busy = (
        " The busy room is measured through each load generator that ran: one near 100% of "
        "its core was the limit, so its figures are partly its own queue."
        if any(m.startswith("latency_busy") for _, m, _, _ in rows)
        else ""
    )
    out = [
        f"## Against the servers before the threads rewrite ({REV})",
        "",
        f"The same loads through section A and section C as they were at {REV}, the last "
        "commit of the epoll-flusher design, run from its sources in this run. Ratios are "
        "ours ÷ before (of p99, for a row of p50 / p99): below 1 is better." + busy,
        "",
        "| measure | section A | A before | section C | C before | A ÷ before | C ÷ before |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m, cell, field in rows:
        cells = [cell(r, m, key) for k, _ in OURS for key in (k, KEYS[k])]
        ratios = [before_ratio(r, m, k, field) for k, _ in OURS]
        out.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return [*out, ""]
