"""The cells of the tables: one figure of one measurement of one server, as the tables show it.

Each cell is the median over the server's runs of that measurement, marked when a
run lost lines, stalled or left threads behind; "—" when the server was not measured,
"error" when every run of it failed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from bench.report import Results, every, median, ms, runs, si

Cell = Callable[[Results, str, str], str]


def fan_cell(r: Results, m: str, k: str) -> str:
    done = runs(r, m, k)
    if not done:
        return "error" if k in r.get(m, {}) else "—"
    share = median(r, m, k, "delivered") / median(r, m, k, "expected")
    if any(x.stalled for x in done):
        return f"stalled: {share:.0%} delivered in {median(r, m, k, 'elapsed'):.0f} s"
    text = si(median(r, m, k, "rate"))
    if any(x.disordered for x in done):
        text += " ✘ lines out of order, repeated or altered"
    elif not every(r, m, k, "lossless") and not any(x.cut for x in done):
        return f"cut short: {share:.0%} delivered in {median(r, m, k, 'elapsed'):.0f} s"
    elif not every(r, m, k, "lossless"):
        text += " ✘ lost lines"
    if m == "fanout_stuck":
        text += ", stuck reader cut" if every(r, m, k, "stuck_closed") else ", not cut"
    return text


def steady_cell(r: Results, m: str, k: str) -> str:
    if not runs(r, m, k):
        return "error" if k in r.get(m, {}) else "—"
    text = f"{ms(median(r, m, k, 'p50_ms'))} / {ms(median(r, m, k, 'p99_ms'))}"
    return text + ("" if every(r, m, k, "lossless") else " ✘ lost lines")


def number_cell(field: str, digits: int | None = 2) -> Cell:
    """The median of `field`, with `digits` decimals, or (None) three significant digits.

    Three significant digits suit the figures of a fan-out, a few hundredths of a
    microsecond of CPU and a ten-thousandth of a context switch per line.
    """

    def cell(r: Results, m: str, k: str) -> str:
        if not runs(r, m, k):
            return "error" if k in r.get(m, {}) else "—"
        value = median(r, m, k, field)
        if math.isinf(value):
            return "stalled"
        if math.isnan(value):
            return "n/a"
        return f"{value:,.{digits}f}" if digits is not None else f"{value:.3g}"

    return cell


def busy_cell(r: Results, m: str, k: str) -> str:
    """The load generator's CPU over the run, as a share of one core (median of the runs).

    Near 100%, the generator was busy all the time: what it measured was partly its own
    queue, not the server's.
    """
    if not runs(r, m, k):
        return "error" if k in r.get(m, {}) else "—"
    value = median(r, m, k, "generator_busy")
    return "n/a" if math.isnan(value) else f"{value:.0%}"


# The busy room's rows beside its latency, the same in the main table and the table
# against the servers before the rewrite: (label, measurement, cell, field).
BUSY_ROOM_ROWS: list[tuple[str, str, Cell, str]] = [
    *((f"server CPU per delivered line in the busy room, {gen} generator (µs)", m,
       number_cell("cpu_us_per_line", None), "cpu_us_per_line")
      for gen, m in (("Python", "latency_busy"), ("C", "latency_busy_c"))),
    *((f"the {gen} generator's CPU in the busy room (share of one core)", m, busy_cell, "")
      for gen, m in (("Python", "latency_busy"), ("C", "latency_busy_c"))),
]  # fmt: skip


def churn_cell(r: Results, m: str, k: str) -> str:
    done = runs(r, m, k)
    if not done:
        return "error" if k in r.get(m, {}) else "—"
    last = done[-1]
    if any(x.stalled for x in done):
        return (
            f"stalled: no cycle completed in {median(r, m, k, 'elapsed'):.0f} s; "
            f"fds {last.fds_before}→{last.fds_after}"
        )
    failed = sum(x.failed for x in done)
    text = f"{median(r, m, k, 'rate'):,.0f}" + (f" ({failed} failed)" if failed else "")
    if every(r, m, k, "back"):
        return text + f", back in {median(r, m, k, 'settle_s'):.2f} s"
    return text + (
        f", not back: threads {last.threads_before}→{last.threads_after}, "
        f"fds {last.fds_before}→{last.fds_after}"
    )
