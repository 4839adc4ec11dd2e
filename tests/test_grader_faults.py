"""Every check is proven by a program with exactly its fault, and passes on ours.

Each test grades one faulty program (tests/grader_faults/) with the check its fault
targets, as an instructor would (`python -m grader --check NAME`), and finds that
check failed, with evidence that names what went wrong. Our own servers and client
pass the same checks here (a few fast ones; `make grade` runs the whole card of
each, once, in CI). A check that passes on a faulty program cannot fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.grader_faults import FAULTS, PYTHON, build, grade, python_fault, result

pytestmark = pytest.mark.timeout(90)

OURS = [
    f"{PYTHON} -m section_a.server --port {{port}}",
    f"{PYTHON} -m section_c.server --port {{port}}",
]
OUR_CLIENT = f"{PYTHON} -m section_a.client --host {{host}} --port {{port}}"


@pytest.fixture(scope="module")
def c_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


def assert_fails(card: dict[str, Any], name: str, *evidence: str) -> None:
    check = result(card, name)
    assert check["passed"] is False, check
    for words in evidence:
        assert words in check["evidence"], check


def test_a_relay_that_frames_by_recv_fails_framing(tmp_path: Path, c_dir: Path) -> None:
    server = f"{build('recv_framing', c_dir)} {{port}}"
    status, card, output = grade("--server", server, "--check", "framing", tmp_path=tmp_path)
    assert status == 1, output
    assert_fails(card, "framing", "a line sent in two pieces", "did not arrive whole")


def test_a_relay_that_drops_the_last_byte_fails_relays(tmp_path: Path) -> None:
    server = python_fault("drops_last_byte")
    status, card, output = grade("--server", server, "--check", "relays", tmp_path=tmp_path)
    assert status == 1, output
    assert_fails(card, "relays", "with 2 clients", "reached 0 of 1 others", "-~~~\\n', not b'tk")


def test_a_relay_with_room_for_ten_fails_many_clients(tmp_path: Path) -> None:
    server = python_fault("ten_clients")
    checks = ("many_clients", "relays")
    args = [arg for name in checks for arg in ("--check", name)]
    status, card, output = grade("--server", server, *args, tmp_path=tmp_path)
    assert status == 1, output
    assert_fails(card, "many_clients", "a line from client 99 reached 0 of 99 others")
    assert result(card, "relays")["passed"] is True, card  # ten are served well


def test_a_relay_that_pads_later_recipients_fails_clean_bytes(tmp_path: Path, c_dir: Path) -> None:
    server = f"{build('padding', c_dir)} {{port}}"
    status, card, output = grade("--server", server, "--check", "clean_bytes", tmp_path=tmp_path)
    assert status == 1, output
    assert_fails(card, "clean_bytes", "received a NUL byte")


def test_a_relay_that_never_closes_a_departed_client_fails_disconnects_and_churn(
    tmp_path: Path,
) -> None:
    server = python_fault("never_removes")
    checks = ("disconnects", "churn")
    args = [arg for name in checks for arg in ("--check", name)]
    status, card, output = grade("--server", server, *args, tmp_path=tmp_path)
    assert status == 1, output
    assert_fails(card, "disconnects", "descriptors", "a departed client's socket is kept")
    assert_fails(card, "churn", "descriptors 4 -> 204")


def test_a_relay_that_dies_when_a_client_resets_fails_disconnects(
    tmp_path: Path, c_dir: Path
) -> None:
    server = f"{build('dies_on_reset', c_dir)} {{port}}"
    # SIGPIPE comes only if the relay writes to a reset socket before the thread that
    # reads it has seen the reset and dropped it: a race of the faulty program's own. It
    # won it (lived) in 5 runs of 12 while the check reset only a client it was blocked
    # on; with a second burst to that client, 0 of 12 one day, 5 and 3 of 12 another, and
    # through all three tries in one CI run. With three clients reset mid-stream as well
    # (each another chance), 0 of 72 (2026-12-07). The check still gets three tries.
    for _ in range(3):
        status, card, output = grade(
            "--server", server, "--check", "disconnects", tmp_path=tmp_path
        )
        if status == 1:
            break
    assert status == 1, output
    assert_fails(card, "disconnects", "the server died (killed by SIGPIPE)")


def test_a_relay_that_spins_after_a_client_leaves_fails_no_busy_wait(tmp_path: Path) -> None:
    server = python_fault("spins_after_leave")
    status, card, output = grade("--server", server, "--check", "no_busy_wait", tmp_path=tmp_path)
    assert status == 1, output
    assert_fails(card, "no_busy_wait", "after they left")
    check = result(card, "no_busy_wait")
    assert check["evidence"].startswith("0.0 % of a core with 10 idle clients"), check


def test_a_relay_whose_threads_never_end_fails_threads_end(tmp_path: Path) -> None:
    server = python_fault("threads_never_end")
    status, card, output = grade("--server", server, "--check", "threads_end", tmp_path=tmp_path)
    assert status == 1, output
    assert_fails(card, "threads_end", "its thread did not end")


def test_a_single_threaded_select_server_fails_thread_per_client(tmp_path: Path) -> None:
    server = python_fault("select_server")
    checks = ("thread_per_client", "threads_end", "relays")
    args = [arg for name in checks for arg in ("--check", name)]
    status, card, output = grade("--server", server, *args, tmp_path=tmp_path)
    assert status == 1, output
    assert_fails(card, "thread_per_client", "1 thread with no client, 1 with 1 connected")
    assert result(card, "threads_end")["passed"] is None, card  # no thread to end: n/a
    assert result(card, "relays")["passed"] is True, card  # it relays; only its design is wrong


def test_a_relay_that_freezes_on_a_stuck_reader_fails_stuck_reader(tmp_path: Path) -> None:
    server = python_fault("freezes_on_stuck")
    status, card, output = grade("--server", server, "--check", "stuck_reader", tmp_path=tmp_path)
    assert status == 0, output  # stuck_reader is reported, not required, by default
    assert_fails(card, "stuck_reader", "had not reached all the others after")


def test_a_client_that_spins_after_its_input_ends_fails(tmp_path: Path, c_dir: Path) -> None:
    client = f"{build('spinning_client', c_dir)} {{host}} {{port}}"
    status, card, output = grade(
        "--client",
        client,
        "--check",
        "client_no_busy_wait",
        "--check",
        "client_exits_on_eof",
        tmp_path=tmp_path,
    )
    assert status == 1, output
    assert_fails(card, "client_no_busy_wait", "once its input ended (still running)")
    assert_fails(card, "client_exits_on_eof", "still running 2 s after its input ended")


def test_our_servers_pass_side_by_side(tmp_path: Path) -> None:
    checks = ["framing", "clean_bytes", "thread_per_client", "threads_end"]
    args = [arg for server in OURS for arg in ("--server", server)]
    markdown = tmp_path / "card.md"
    status, cards, output = grade(
        *args,
        *(arg for name in checks for arg in ("--check", name)),
        "--markdown",
        str(markdown),
        tmp_path=tmp_path,
    )
    assert status == 0, output
    assert [card["server"] for card in cards] == OURS
    for card in cards:
        assert sorted(check["name"] for check in card["checks"]) == sorted(checks)
        assert all(check["passed"] is True for check in card["checks"]), card
        assert card["score"] == card["max_score"] > 0
    table = output[output.index("check ") :]
    assert "#1" in table and "#2" in table and "score" in table, output
    assert "## Side by side" in markdown.read_text()


def test_our_client_passes(tmp_path: Path) -> None:
    status, card, output = grade("--client", OUR_CLIENT, tmp_path=tmp_path)
    assert status == 0, output
    assert card["server"] is None and card["client"] == OUR_CLIENT
    assert all(check["passed"] is True for check in card["checks"]), card
    assert len(card["checks"]) == 5


def test_our_client_passes_with_a_pipe_for_its_input(tmp_path: Path) -> None:
    checks = ("client_relays", "client_exits_on_eof")
    args = [arg for name in checks for arg in ("--check", name)]
    status, card, output = grade(
        "--client", OUR_CLIENT, "--client-stdin", "pipe", *args, tmp_path=tmp_path
    )
    assert status == 0, output
    assert "(the pipe closed)" in result(card, "client_exits_on_eof")["evidence"]


def test_a_single_threaded_select_client_fails_client_two_threads(tmp_path: Path) -> None:
    client = f"{PYTHON} {FAULTS / 'select_client.py'} {{host}} {{port}}"
    checks = ("client_two_threads", "client_relays")
    args = [arg for name in checks for arg in ("--check", name)]
    status, card, output = grade("--client", client, *args, tmp_path=tmp_path)
    assert status == 1, output
    assert_fails(card, "client_two_threads", "1 thread once connected (expected 2)")
    assert result(card, "client_relays")["passed"] is True, card  # it chats; one thread is all
