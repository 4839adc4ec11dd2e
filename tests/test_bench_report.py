"""The benchmark's report: its figures are the medians of the runs, divided within the run.

The tables are built from saved records (bench/report.py's Results), so they are
checked here with records made up for the purpose: no server runs.
"""

from __future__ import annotations

from bench import references
from bench.measure_churn import ChurnRun
from bench.plan import FULL
from bench.report import PLAIN_NOTICES, Results


def churn_run(server_cpu: float, completed: int) -> ChurnRun:
    return ChurnRun(
        rate=completed / 1.0, completed=completed, failed=0, back=True, settle_s=0.0,
        threads_before=1, threads_after=1, fds_before=5, fds_after=5, fill_kept_up=None,
        fill_kernel_bytes=0, stuck_closed=None, generator_cpu=0.5, elapsed=1.0,
        server_cpu=server_cpu,
    )  # fmt: skip


def test_the_relay_table_gives_each_servers_cpu_per_churn_cycle_and_the_ratios() -> None:
    results: Results = {
        "churn": {
            "A": [churn_run(0.66, 2000), churn_run(0.70, 2000), churn_run(0.60, 2000)],
            "C": [churn_run(0.80, 2000)],
            "plain": [churn_run(0.44, 2000)],
            "crelay": [churn_run(0.16, 2000)],
        }
    }
    table = references.against_relays(FULL, results)
    row = next(line for line in table if line.startswith("| server CPU per churn cycle"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # A's median run (330 µs), C, the plain relay, the C relay; then A and C over each relay.
    assert cells[1:] == ["330", "400", "220", "80", "1.50x", "1.82x", "4.12x", "5.00x"]


def test_a_churn_that_completed_nothing_has_no_cpu_per_cycle_to_divide() -> None:
    assert churn_run(0.5, 0).cpu_us_per_cycle == float("inf")


def test_the_notices_paragraph_divides_the_relays_cpu_per_cycle_with_and_without_them() -> None:
    results: Results = {
        "churn": {
            "A": [churn_run(0.66, 2000)],
            "C": [churn_run(0.72, 2000)],
            "plain": [churn_run(0.40, 2000)],
            PLAIN_NOTICES: [churn_run(0.44, 2000), churn_run(0.48, 2000), churn_run(0.99, 2000)],
        }
    }
    text = " ".join(references.notices(results))
    # The median run (240 µs a cycle) against the plain relay's 200, and A's 330, C's 360.
    assert "with 240 µs of server CPU a cycle: 1.20x the plain relay's" in text
    assert "Section A took 1.38x and section C 1.50x the CPU a cycle of this relay." in text


def test_without_the_notices_relay_measured_the_report_says_nothing_of_it() -> None:
    results: Results = {"churn": {"A": [churn_run(0.66, 2000)], "plain": [churn_run(0.4, 2000)]}}
    assert references.notices(results) == []
