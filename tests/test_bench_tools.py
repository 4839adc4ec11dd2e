"""The benchmark's C tools: the C generator catches every fault, and the C relay loses nothing.

The C load generator (bench/c_loadgen.c) is trusted to say "lossless" only if it
would have said otherwise: its checker's self-test feeds it streams with each kind of
fault, and here a relay that loses, repeats or reorders one line on the wire must be
caught end to end. Its steady mode (the busy room's latency) runs against a real
stage A server at a tiny size. The C relay (bench/c_relay.c) is checked by the Python generator,
which shares no code with it. Skipped, with the reason, where there is no C compiler;
a compiler that fails to build them fails the tests.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import native
from bench.c_fanout import CDelivery, c_fan_out, c_steady
from bench.measure_latency import steady
from bench.measuring import C, Server, Setup
from bench.plain_relay import Peer, PlainRelay
from bench.processes import Placement, ServerRun, python_module
from harness.load import READER_RCVBUF, Swarm

CLIENTS = 6
LINES = 300
QUIET = 0.5  # seconds without a line before a faulty fan-out is over
TIMEOUT = 20.0


def built(program: str) -> Path:
    """The program, built; skips the test where there is no C compiler (a failed build fails)."""
    try:
        return native.build(program)
    except native.NoCompiler as exc:
        pytest.skip(f"bench/{program}.c not built: {exc}")


def test_c_loadgen_self_test_counts_every_kind_of_fault() -> None:
    done = subprocess.run(
        [str(built("c_loadgen")), "--self-test"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for fault in ("lost", "duplicated", "swapped", "altered", "cut short", "own line"):
        assert any(line.startswith("ok: ") and fault in line for line in done.stdout.splitlines())


def test_c_loadgen_self_test_checks_stamped_lines_but_for_their_send_times() -> None:
    # A steady run's lines differ in their send times alone: the checker must look past
    # those digits, yet count a line whose send time is not all digits as malformed.
    done = subprocess.run(
        [str(built("c_loadgen")), "--self-test"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    passed = [line for line in done.stdout.splitlines() if line.startswith("ok: stamped, ")]
    for case in ("clean", "lost", "duplicated", "swapped", "altered", "own line",
                 "another sender's name", "send time not all digits"):  # fmt: skip
        assert any(case in line for line in passed), case


Fault = Callable[[list[bytes]], list[bytes]]


def drop(lines: list[bytes]) -> list[bytes]:
    return lines[:5] + lines[6:]


def repeat(lines: list[bytes]) -> list[bytes]:
    return lines[:6] + lines[5:]


def swap(lines: list[bytes]) -> list[bytes]:
    return [*lines[:5], lines[6], lines[5], *lines[7:]]


class FaultyRelay(PlainRelay):
    """The plain relay, with `fault` done once, to the first block of 8 lines or more."""

    def __init__(self, fault: Fault) -> None:
        super().__init__()
        self.fault: Fault | None = fault

    def forward(self, me: Peer, lines: bytes) -> None:
        block = lines.split(b"\n")
        with self.lock:  # one fault only, though every client has a thread
            fault = self.fault if len(block) >= 8 else None
            if fault is not None:
                self.fault = None
        super().forward(me, b"\n".join(fault(block)) if fault else lines)


@pytest.fixture
def faulty_relay(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A FaultyRelay in this process, served until the test ends; its address."""
    relay = FaultyRelay(request.param)
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # shut down: the test is over
                return
            thread = threading.Thread(target=relay.serve, args=(conn,))
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    yield listener.getsockname()[:2]
    listener.shutdown(socket.SHUT_RDWR)  # wakes accept(): close would not (Linux)
    acceptor.join(5)
    listener.close()
    for thread in threads:  # each ends once its client is gone, and the generator has exited
        thread.join(5)


def fan_out(address: tuple[str, int]) -> CDelivery:
    return c_fan_out(
        built("c_loadgen"), address, CLIENTS, LINES, timeout=TIMEOUT, quiet=QUIET,
        stall_window=QUIET,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("faulty_relay", "caught"),
    [(drop, "lost"), (repeat, "duplicated"), (swap, "reordered")],
    indirect=["faulty_relay"],
)
def test_c_loadgen_catches_a_relay_that_loses_repeats_or_reorders_a_line(
    faulty_relay: tuple[str, int], caught: str
) -> None:
    result = fan_out(faulty_relay)
    faults = {k: getattr(result, k) for k in ("lost", "duplicated", "reordered", "malformed")}
    # The one faulty block went to every other client: each of them saw the fault once.
    assert faults == {k: (CLIENTS - 1 if k == caught else 0) for k in faults}
    assert result.disordered == (0 if caught == "lost" else CLIENTS - 1)
    assert result.unique < result.expected if caught == "lost" else result.ended == "complete"


@pytest.mark.parametrize("faulty_relay", [lambda lines: lines], indirect=True, ids=["no fault"])
def test_c_loadgen_finds_nothing_wrong_with_a_relay_that_does_no_wrong(
    faulty_relay: tuple[str, int],
) -> None:
    result = fan_out(faulty_relay)
    assert result.ended == "complete"
    assert result.unique == result.delivered == result.expected == CLIENTS * (CLIENTS - 1) * LINES
    assert (result.lost, result.disordered, result.cut, result.silent) == (0, 0, 0, 0)


@pytest.fixture
def c_relay(tmp_path: Path) -> Iterator[ServerRun]:
    server = ServerRun((str(built("c_relay")),), "c_relay", tmp_path, Placement.anywhere())
    yield server
    server.stop()


def test_c_relay_delivers_every_line_whole_and_in_order_to_the_python_generator(
    c_relay: ServerRun,
) -> None:
    with Swarm(c_relay.address) as swarm:
        members = swarm.connect(CLIENTS, rcvbuf=READER_RCVBUF)
        swarm.sync()
        delivery = swarm.fan_out(members, LINES, timeout=TIMEOUT)
    assert delivery.checked
    assert not delivery.lost and not delivery.cut and not delivery.disordered
    assert delivery.delivered == CLIENTS * (CLIENTS - 1) * LINES


def test_c_relay_answers_a_command_with_an_error_to_the_sender_alone(c_relay: ServerRun) -> None:
    alice = socket.create_connection(c_relay.address, timeout=5)
    to_alice = alice.makefile("rb")
    assert to_alice.readline() == b"* welcome, guest-1. here now: a relay.\n"  # first: guest-1
    with alice, socket.create_connection(c_relay.address, timeout=5) as bob:
        to_bob = bob.makefile("rb")
        assert to_bob.readline() == b"* welcome, guest-2. here now: a relay.\n"
        bob.sendall(b"/who\nhello\n")
        assert to_bob.readline() == b"* error: unknown command /who\n"
        assert to_alice.readline() == b"guest-2: hello\n"  # and nothing before it


@pytest.mark.parametrize("notices", [False, True], ids=["plain", "with --notices"])
def test_plain_relay_tells_the_others_of_each_join_and_leave_only_with_notices(
    tmp_path: Path, notices: bool
) -> None:
    command = (*python_module("bench.plain_relay"), *(("--notices",) if notices else ()))
    server = ServerRun(command, "plain_relay", tmp_path, Placement.anywhere())
    seen: list[bytes] = []

    def read_until(last: bytes) -> None:
        while (line := reader.readline()) != last:
            assert line, f"the relay closed before {last!r}; seen: {seen}"
            seen.append(line)
        seen.append(line)

    try:
        with socket.create_connection(server.address, timeout=5) as alice:
            reader = alice.makefile("rb")
            assert reader.readline() == b"* welcome, guest-1. here now: a relay.\n"
            # The relay welcomes a client before it joins: a reply to a command comes after.
            alice.sendall(b"/sync\n")
            assert reader.readline() == b"* error: unknown command /sync\n"
            with socket.create_connection(server.address, timeout=5) as bob:
                bob.makefile("rb").readline()  # its welcome
                bob.sendall(b"hello\n")
                read_until(b"guest-2: hello\n")  # before carol's line can be
            if notices:  # and the leave before the next join
                read_until(b"* guest-2 left\n")
            with socket.create_connection(server.address, timeout=5) as carol:
                carol.sendall(b"bye\n")
                read_until(b"guest-3: bye\n")
    finally:
        server.stop()
    told = [b"* guest-2 joined\n", b"guest-2: hello\n", b"* guest-2 left\n",
            b"* guest-3 joined\n", b"guest-3: bye\n"]  # fmt: skip
    assert seen == (told if notices else [told[1], told[4]])


STEADY_CLIENTS, STEADY_SENDERS, STEADY_RATE, STEADY_DURATION = 10, 3, 20.0, 1.0
STAGE_A = python_module("section_a.server")


@pytest.fixture
def stage_a(tmp_path: Path) -> Iterator[ServerRun]:
    server = ServerRun(STAGE_A, "section_a", tmp_path, Placement.anywhere())
    yield server
    server.stop()  # fails on a traceback in its log


@pytest.mark.timeout(30)
def test_c_loadgen_steady_run_times_every_line_a_stage_a_server_delivers(
    stage_a: ServerRun,
) -> None:
    result = c_steady(
        built("c_loadgen"), stage_a.address, STEADY_CLIENTS, STEADY_SENDERS,
        rate=STEADY_RATE, duration=STEADY_DURATION, drain=5.0, timeout=TIMEOUT,
    )  # fmt: skip
    # A tick every 1/20 s for 1 s, each sender: 20 lines, to the 9 others each.
    assert result.sent == STEADY_SENDERS * 20
    assert result.expected == result.sent * (STEADY_CLIENTS - 1)
    assert result.ended == "complete" and result.lossless
    assert result.delivered == result.unique == result.timed == result.expected
    assert (result.lost, result.disordered, result.cut, result.silent) == (0, 0, 0, 0)
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms < STEADY_DURATION * 1000
    assert result.elapsed >= STEADY_DURATION * (STEADY_SENDERS * 20 - 1) / (STEADY_SENDERS * 20)


@pytest.mark.timeout(30)
def test_the_busy_room_through_the_c_generator_reads_the_server_around_the_steady_phase(
    tmp_path: Path,
) -> None:
    setup = Setup(tmp_path, Placement.anywhere(), built("c_loadgen"))
    record = steady(
        Server("A", "section A", STAGE_A), setup, STEADY_CLIENTS, STEADY_SENDERS,
        rate=STEADY_RATE, duration=STEADY_DURATION, drain=5.0, stuck=False, generator=C,
    )  # fmt: skip
    assert record.generator == C and record.lossless
    assert record.delivered == record.expected == STEADY_SENDERS * 20 * (STEADY_CLIENTS - 1)
    assert record.p50_ms <= record.p99_ms < STEADY_DURATION * 1000
    # The server's CPU (in 10 ms clock ticks: maybe none at this size) and switches over
    # the steady phase alone: its start, some 50 ms of CPU, is not in it (here 0-10 ms).
    assert 0 <= record.system_us_per_line <= record.cpu_us_per_line
    assert record.server_cpu < 0.03
    assert record.ctx_switches > 0
    assert 0 < record.generator_busy < 1  # it sleeps between ticks: never a busy wait
    assert record.threads_per_client >= 0.9  # stage A: a thread per client, at least
