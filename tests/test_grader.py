"""The grader itself: its command line, its scheme, its card, and its safety.

The grader runs code it did not write, so these tests hold it to its promises on
programs that misbehave: one that dies at start gets a failed check and "could not
run" for the rest, never a traceback; a bad command line or scheme is one line and
exit status 2; and however the grader ends, killed mid-check included, nothing it
started is left running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from grader import checks_client, checks_load, checks_server, report, scheme
from grader.checks import CHECKS, Check, Result, Verdict, run_check
from tests.grader_faults import FAULTS, PYTHON, ROOT, grade, python_fault, result

pytestmark = pytest.mark.timeout(60)

_ = (checks_server, checks_load, checks_client)  # imported for their checks
DIES = f"{PYTHON} -c 'import sys; sys.exit(3)' {{port}}"


def test_the_default_scheme_weighs_every_check() -> None:
    weights = scheme.load(None, CHECKS)
    assert sorted(weights) == sorted(CHECKS)
    assert not weights["stuck_reader"].required and not weights["shutdown"].required
    assert all(
        weights[name].required for name in CHECKS if name not in ("stuck_reader", "shutdown")
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "nothing to grade"),
        (["--server", "./server"], "put {port} in it, or give --port N"),
        (["--client", "./client"], "put {port}"),
        (["--server", "x {port}", "--check", "relay"], "invalid choice: 'relay'"),
        (["--server", "x {port}", "--port", "0"], "a port is 1 to 65535"),
        (["--server", "x {port}", "--env", "K"], "expected K=V"),
        (["--server", "x {port}", "--scheme", "/nonexistent.toml"], "cannot read the scheme"),
    ],
)
def test_a_bad_command_line_is_one_line_and_status_2(args: list[str], says: str) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "grader", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_bad_scheme_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "scheme.toml"
    bad.write_text("[checks]\nrelays = { points = -1 }\n")
    done = subprocess.run(
        [PYTHON, "-m", "grader", "--server", "x {port}", "--scheme", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "relays: points must be a number, 0 or more" in done.stderr


def test_a_server_that_dies_at_start_fails_starts_and_the_rest_cannot_run(tmp_path: Path) -> None:
    began = time.monotonic()
    status, card, output = grade(
        "--server", DIES, "--check", "starts", "--check", "relays", tmp_path=tmp_path
    )
    assert time.monotonic() - began < 10, "a server that never starts must cost one start"
    assert status == 1, output
    assert set(card) == {"server", "client", "checks", "score", "max_score"}
    assert card["server"] == DIES and card["client"] is None
    for check in card["checks"]:
        assert set(check) == {"name", "passed", "required", "points", "evidence"}
    assert result(card, "starts")["passed"] is False
    assert "exit status 3" in result(card, "starts")["evidence"]
    assert result(card, "relays")["passed"] is None
    assert result(card, "relays")["evidence"].startswith("could not run: ")
    assert (card["score"], card["max_score"]) == (0, 20)


def test_a_server_that_crashes_at_its_first_client_fails_with_how_it_died(tmp_path: Path) -> None:
    crashes = (
        f"{PYTHON} -c 'import os, socket, sys; "
        'socket.create_server(("127.0.0.1", int(sys.argv[1]))).accept(); '
        "os.kill(os.getpid(), 11)' {port}"
    )
    status, card, output = grade("--server", crashes, "--check", "relays", tmp_path=tmp_path)
    assert status == 1, output
    assert result(card, "relays")["evidence"].startswith("the server died (killed by SIGSEGV); ")


def test_a_server_that_ignores_sigint_fails_shutdown_which_is_not_required(tmp_path: Path) -> None:
    stays = (
        f"{PYTHON} -c 'import signal, socket, sys, time; "
        "signal.signal(signal.SIGINT, signal.SIG_IGN); "
        'listener = socket.create_server(("127.0.0.1", int(sys.argv[1]))); '
        "time.sleep(60)' {port}"
    )
    status, card, output = grade("--server", stays, "--check", "shutdown", tmp_path=tmp_path)
    assert status == 0, output  # reported, not required
    assert result(card, "shutdown") == {
        "name": "shutdown",
        "passed": False,
        "required": False,
        "points": 1,
        "evidence": "still running 2 s after SIGINT",
    }


def test_a_course_scheme_chooses_the_checks_and_their_points(tmp_path: Path) -> None:
    own = tmp_path / "course.toml"
    own.write_text("[checks]\nstarts = { points = 2.5, required = false }\n")
    status, card, output = grade("--server", DIES, "--scheme", str(own), tmp_path=tmp_path)
    assert status == 0, output  # its one check failed, but is not required
    assert [check["name"] for check in card["checks"]] == ["starts"]
    assert card["max_score"] == 2.5 and "0/2.5" in output


def test_the_card_in_markdown_escapes_its_table() -> None:
    card = report.Card("./server {port}", None)
    card.results = [Result("relays", False, True, 15, "a | b", 0.0)]
    text = report.markdown([card])
    rationale = CHECKS["relays"].rationale
    assert f"| `relays` | {rationale} | FAIL | 0/15 | a \\| b |" in text


def gone(pid: int) -> bool:
    """Whether `pid` has ended: no such process, or a zombie nobody has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_nothing_outlives_a_grader_killed_mid_check(tmp_path: Path, signum: int) -> None:
    pidfile = tmp_path / "server.pid"
    server = f"sh -c 'echo $$ > {pidfile}; exec {python_fault('select_server')}'"
    grader = subprocess.Popen(
        [PYTHON, "-m", "grader", "--server", server, "--check", "no_busy_wait"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline and grader.poll() is None, "the server never ran"
            time.sleep(0.02)
        pid = int(pidfile.read_text())
        time.sleep(0.5)  # into the check: its clients connected, its CPU being measured
        assert not gone(pid)
        grader.send_signal(signum)
        status = grader.wait(10)
        assert status == (-signum if signum == signal.SIGKILL else 128 + signum), grader.stderr
        deadline = time.monotonic() + 5
        while not gone(pid):
            assert time.monotonic() < deadline, f"server {pid} outlived the grader ({signum})"
            time.sleep(0.02)
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait()
        if grader.stderr is not None:
            grader.stderr.close()


def can_isolate() -> bool:
    try:
        trial = subprocess.run(["unshare", "--net", "--map-root-user", "true"], timeout=10)
    except OSError:
        return False
    return trial.returncode == 0


def test_isolate_grades_a_hard_coded_port_that_is_taken_outside(tmp_path: Path) -> None:
    if not can_isolate():
        pytest.skip("Skipped: this machine does not allow a network namespace (unshare)")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        server = f"{PYTHON} {FAULTS / 'select_server.py'} {port}"
        args = ["--server", server, "--port", port, "--check", "relays"]
        status, card, output = grade(*args, tmp_path=tmp_path)
        assert status == 1 and "is taken by another program (try --isolate)" in output, output
        status, card, output = grade(*args, "--isolate", tmp_path=tmp_path)
        assert status == 0, output
        assert result(card, "relays")["passed"] is True


def test_isolate_where_the_system_cannot_is_one_line_and_status_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "grader", "--isolate", "--server", "x {port}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PATH=str(tmp_path)),  # no unshare on this PATH
    )
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [
        "python -m grader: --isolate: no unshare command on this machine (util-linux); "
        "grade without --isolate"
    ]


def test_a_check_past_its_deadline_fails_and_one_past_the_cards_time_cannot_run() -> None:
    def hangs(subject: object) -> Verdict:
        time.sleep(5)
        return Verdict(True, "never")

    hanging = Check("hangs", "server", "waits for ever", 0.2, hangs)
    verdict = run_check(hanging, object())
    assert verdict == Verdict(False, "the check ran past its deadline of 0.2 s")
    assert run_check(hanging, object(), budget=0.1).passed is None
    assert "the card's 60 s were used up" in run_check(hanging, object(), budget=0).evidence


def test_a_bug_in_a_check_is_could_not_run_not_a_traceback() -> None:
    def buggy(subject: object) -> Verdict:
        raise StopIteration

    verdict = run_check(Check("buggy", "server", "has a bug", 5, buggy), object())
    assert verdict.passed is None and "the grader failed (StopIteration" in verdict.evidence
