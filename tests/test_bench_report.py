"""The benchmark's report: its figures are the medians of the runs, divided within the run.

The tables are built from saved records (bench/report.py's Results), so they are
checked here with records made up for the purpose: no server runs. The sources of
the servers before the threads rewrite, which the report compares with, come from git.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import before, references, run, tables, targets
from bench.measure_churn import ChurnRun
from bench.measure_latency import Steady
from bench.measuring import PYTHON, C, Server
from bench.plan import FULL, QUICK, Plan
from bench.processes import ROOT
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


def steady_run(
    p99_ms: float,
    server_cpu: float = 0.1,
    kib: float = 12.0,
    *,
    generator_cpu: float = 1.0,
    generator: str = PYTHON,
) -> Steady:
    return Steady(
        clients=1000, senders=20, rate=2.0, p50_ms=p99_ms / 2, p99_ms=p99_ms, delivered=200_000,
        expected=200_000, lossless=True, cut=0, cpu_us_per_line=server_cpu / 200_000 * 1e6,
        system_us_per_line=0.0, server_cpu=server_cpu, generator_cpu=generator_cpu,
        elapsed=10.0, fill_kept_up=None, fill_kernel_bytes=0, stuck_closed=None, connect_s=1.0,
        kib_per_client=kib, threads_per_client=1.0, generator=generator,
    )  # fmt: skip


def latency_results(a: float, a_before: float, c: float, c_before: float) -> Results:
    """p99s (ms) at the largest size and in the busy room, ours and before the rewrite."""
    by = {"A": a, "A_before": a_before, "C": c, "C_before": c_before}
    return {m: {k: [steady_run(p99)] for k, p99 in by.items()} for m in (LATENCY, "latency_busy")}


LATENCY = f"latency_{max(FULL.latency_clients)}"


def row(table: list[str], start: str) -> list[str]:
    line = next(line for line in table if line.startswith(f"| {start}"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_the_before_table_gives_ours_and_before_side_by_side_and_ours_over_before() -> None:
    results: Results = {
        LATENCY: {
            "A": [steady_run(7.0, 0.2, 12.0), steady_run(8.0, 0.3, 13.0), steady_run(30, 0.9, 40)],
            "A_before": [steady_run(10.0, 0.4, 8.0)],
            "C": [steady_run(9.0, 0.5, 16.0)],
            "C_before": [steady_run(6.0, 0.25, 8.0)],
        }
    }
    table = before.table(FULL, results)
    assert table[0] == "## Against the servers before the threads rewrite (85dcc39)"
    # A's median run (8 ms, 1.5 µs a line, 13 KiB); columns A, A before, C, C before, ratios.
    assert row(table, "p99 latency, 1,000") == ["8.0", "10.0", "9.0", "6.0", "0.80x", "1.50x"]
    assert row(table, "server CPU per") == ["1.5", "2", "2.5", "1.25", "0.75x", "2.00x"]
    assert row(table, "memory per idle") == ["13.0", "8.0", "16.0", "8.0", "1.62x", "2.00x"]
    assert not any("busy room" in line for line in table)


def test_without_the_servers_before_the_rewrite_there_is_no_table_of_them() -> None:
    results: Results = {LATENCY: {"A": [steady_run(7.0)], "C": [steady_run(8.0)]}}
    assert before.table(FULL, results) == []


def target(results: Results, start: str) -> list[str]:
    return row(targets.table(FULL, results, "asyncio"), start)


def test_latency_no_worse_than_before_is_met_at_the_same_p99_in_the_same_run() -> None:
    results = latency_results(a=7.1, a_before=7.1, c=8.4, c_before=8.0)
    at_1000 = target(results, "p99 latency at 1,000 clients no worse than before the rewrite")
    assert at_1000 == ["7.1 ms, 1.00x ✔", "8.4 ms, 1.05x ✘"]
    busy = target(results, "p99 latency in the busy room no worse than before the rewrite")
    assert busy == ["7.1 ms, 1.00x ✔", "8.4 ms, 1.05x ✘"]


def test_latency_targets_are_left_out_without_the_servers_before_the_rewrite() -> None:
    results = latency_results(a=7.1, a_before=7.1, c=8.4, c_before=8.0)
    for by in results.values():
        del by["A_before"], by["C_before"]
    text = "\n".join(targets.table(FULL, results, "asyncio"))
    assert "memory per idle client" in text  # the table is made, without those two
    assert "no worse than before" not in text


def test_the_old_servers_sources_are_extracted_from_git_and_a_missing_revision_is_none(
    tmp_path: Path,
) -> None:
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", before.REV]).returncode:
        pytest.skip(f"no git history with {before.REV} here (a copy of the repository?)")
    assert before.extract(tmp_path / "old") == tmp_path / "old"
    assert (tmp_path / "old" / "section_a" / "server.py").is_file()
    assert before.extract(tmp_path / "none", rev="0" * 40) is None


def test_the_old_servers_command_imports_the_old_code_not_the_repositorys(
    tmp_path: Path,
) -> None:
    if before.extract(tmp_path) is None:
        pytest.skip(f"no git history with {before.REV} here (a copy of the repository?)")
    command = before.servers(tmp_path)[0].command
    assert command[-2:] == ("-m", "section_a.server")
    # As ServerRun starts it: from the repository, whose new section_a must not be found.
    probe = "import section_a.outbox as o; print(o.__file__, hasattr(o, 'Flusher'))"
    done = subprocess.run(
        [*command[:-2], "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.stdout.split() == [str(tmp_path / "section_a" / "outbox.py"), "True"]


def runs_of(plan: Plan, measurement: str, c_relay: Server | None) -> list[str]:
    """The server keys of every run of `measurement` that bench.run would make, repeats too."""
    old = before.servers(Path("old"))
    rounds = run.tasks(plan, c_relay, frozenset({measurement}), old)
    return sorted(t.server.key for round_ in rounds for t in round_)


@pytest.mark.parametrize("plan", [FULL, QUICK], ids=["full", "quick"])
def test_the_busy_room_goes_through_the_c_generator_too_for_every_server_it_measures(
    plan: Plan,
) -> None:
    crelay = Server(run.C_RELAY, "C relay", ())
    python = runs_of(plan, "latency_busy", crelay)
    assert set(python) == {"A", "C", "asyncio", "A_before", "C_before"}
    assert runs_of(plan, "latency_busy_c", crelay) == python
    assert python.count("A") == plan.repeats
    # No C compiler (no C relay either): no C generator to measure it with.
    assert runs_of(plan, "latency_busy_c", None) == []


def busy_results(c_generator: bool = True) -> Results:
    """The busy room: through the Python generator (99% busy) and the C one (12% busy).

    p99s in ms; p50s are half; the C runs show twice the server CPU a line (1 µs, not 0.5).
    """
    py = {"A": 18.0, "A_before": 10.0, "C": 19.0, "C_before": 11.0, "asyncio": 30.0}
    c = {"A": 9.0, "A_before": 9.0, "C": 8.0, "C_before": 10.0, "asyncio": 20.0}
    results: Results = {
        "latency_busy": {k: [steady_run(p99, generator_cpu=9.9)] for k, p99 in py.items()}
    }
    if c_generator:
        results["latency_busy_c"] = {
            k: [steady_run(p99, 0.2, generator_cpu=1.2, generator=C)] for k, p99 in c.items()
        }
    return results


def test_the_before_table_shows_the_busy_room_through_both_generators_and_how_busy_each_was() -> (
    None
):
    table = before.table(FULL, busy_results())
    # Columns: A, A before, C, C before, A ÷ before, C ÷ before (of p99).
    assert row(table, "latency p50 / p99 in the busy room, Python generator") == [
        "9.0 / 18.0", "5.0 / 10.0", "9.5 / 19.0", "5.5 / 11.0", "1.80x", "1.73x",
    ]  # fmt: skip
    assert row(table, "latency p50 / p99 in the busy room, C generator") == [
        "4.5 / 9.0", "4.5 / 9.0", "4.0 / 8.0", "5.0 / 10.0", "1.00x", "0.80x",
    ]  # fmt: skip
    cpu = "server CPU per delivered line in the busy room"
    assert row(table, f"{cpu}, Python generator") == ["0.5"] * 4 + ["1.00x"] * 2
    assert row(table, f"{cpu}, C generator") == ["1"] * 4 + ["1.00x"] * 2
    assert row(table, "the Python generator's CPU") == ["99%"] * 4 + ["", ""]
    assert row(table, "the C generator's CPU") == ["12%"] * 4 + ["", ""]


def test_without_the_c_generator_the_before_table_has_no_row_of_it() -> None:
    table = before.table(FULL, busy_results(c_generator=False))
    assert row(table, "the Python generator's CPU") == ["99%"] * 4 + ["", ""]
    assert not any("C generator" in line for line in table)


INFO = {
    "date": "2026-12-07 21:00 UTC", "cpu": "a CPU", "cores": "2", "memory": "4 GiB",
    "kernel": "Linux 6", "python": "3.11", "load_start": "0.1", "load_end": "0.2", "minutes": "1",
}  # fmt: skip


def test_the_latency_table_shows_the_busy_room_through_both_generators_beside_each_other() -> None:
    text = tables.markdown(FULL, INFO, busy_results(), baseline="asyncio").splitlines()
    python = row(text, "latency p50 / p99, 1,000 clients, busy room: 20 x 10 lines/s, Python")
    # Columns: A, C, the asyncio baseline, A ÷ baseline, C ÷ baseline (of p99).
    assert python == ["9.0 / 18.0", "9.5 / 19.0", "15.0 / 30.0", "0.60x", "0.63x"]
    through_c = row(text, "latency p50 / p99, 1,000 clients, the same busy room, C generator")
    assert through_c == ["4.5 / 9.0", "4.0 / 8.0", "10.0 / 20.0", "0.45x", "0.40x"]
    cpu = "server CPU per delivered line in the busy room"
    assert row(text, f"{cpu}, C generator") == ["1", "1", "1", "1.00x", "1.00x"]
    assert row(text, "the Python generator's CPU") == ["99%", "99%", "99%", "", ""]
    assert row(text, "the C generator's CPU") == ["12%", "12%", "12%", "", ""]
    assert "also through the C generator" in "\n".join(text)


def test_without_the_c_generator_the_latency_table_says_nothing_of_it() -> None:
    text = tables.markdown(FULL, INFO, busy_results(c_generator=False), baseline="asyncio")
    assert "the Python generator's CPU in the busy room" in text
    assert "C generator" not in text


def test_the_busy_room_target_goes_by_the_c_generator_where_it_measured_ours_and_before() -> None:
    results = latency_results(a=7.1, a_before=7.1, c=8.4, c_before=8.0)  # the Python generator
    results["latency_busy_c"] = {
        k: [steady_run(p99, generator=C)]
        for k, p99 in {"A": 5.0, "A_before": 5.5, "C": 6.0, "C_before": 5.0}.items()
    }
    busy = "p99 latency in the busy room no worse than before the rewrite (85dcc39, same run)"
    assert target(results, f"{busy}, through the C generator") == [
        "5.0 ms, 0.91x ✔", "6.0 ms, 1.20x ✘",
    ]  # fmt: skip
    del results["latency_busy_c"]["C_before"]  # the old servers not measured through it
    assert target(results, f"{busy}, through the Python generator") == [
        "7.1 ms, 1.00x ✔", "8.4 ms, 1.05x ✘",
    ]  # fmt: skip
