"""The server as a process: its threads, slow readers, signals, restarts, peers that misbehave.

Run against every server in conftest.SERVERS. Threads are counted by the kernel
(/proc/PID/status), not by the server; every count, line and exit is waited for
with a deadline, never slept for. A traceback on a server's stderr fails the test
(the `start_server` fixture checks it at teardown).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from uuid import uuid4

import pytest

from harness.proc import open_fds, peak_rss_bytes, reset_peak_rss, rss_bytes, thread_count
from harness.sockets import reset_on_close
from tests.promises import BASE_THREADS, STOP_WITHIN
from tests.servers import (
    ROOT,
    LineClient,
    ServerProcess,
    fence,
    has_ipv6_loopback,
    join_room,
    run_server_once,
)
from tests.support import DEADLINE, wait_for

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(30)]

StartServer = Callable[..., ServerProcess]
Join = Callable[..., list[LineClient]]

SIGNALS = [
    pytest.param(signal.SIGINT, id="SIGINT"),
    pytest.param(signal.SIGTERM, id="SIGTERM"),
]
SMALL_SENDQ = 65536
SMALL_RCVBUF = 4096
# On loopback the kernel buffers a few MiB for a reader that does not read (the send
# buffer grows up to net.ipv4.tcp_wmem's maximum, 4 MiB by default) before the server
# holds a backlog of its own; so a test that wants a backlog under the limit sends more
# than that, with a --sendq larger still.
PAST_KERNEL_BUFFERS = 6 << 20
LARGE_SENDQ = 16 << 20


def marker() -> str:
    return uuid4().hex[:8]


def base_threads(server: ServerProcess) -> int:
    if server.module not in BASE_THREADS:
        pytest.fail(f"add {server.module}'s thread count with no client to BASE_THREADS")
    return BASE_THREADS[server.module]


def wait_for_threads(server: ServerProcess, expected: int) -> None:
    seen: list[int] = []

    def settled() -> bool:
        seen.append(thread_count(server.pid))
        return seen[-1] == expected

    try:
        wait_for(settled, f"{expected} threads")
    except AssertionError:
        raise AssertionError(
            f"{server.module} has {seen[-1]} threads, expected {expected}"
        ) from None


def stop_and_time(server: ServerProcess, signum: int) -> tuple[int, float]:
    """Send `signum`; the exit status and the seconds from the signal to the exit."""
    started = time.monotonic()
    server.signal(signum)
    try:
        code = server.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{server.module} still runs {DEADLINE}s after {signal.Signals(signum).name}; "
            f"its threads: {thread_states(server.pid)}\n{server.stderr()}"
        ) from None
    return code, time.monotonic() - started


def thread_states(pid: int) -> list[str]:
    """`name state wait-channel` for each thread of `pid`, to show where a process hangs."""
    states = []
    for task in sorted(os.listdir(f"/proc/{pid}/task")):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                name, rest = stat.read().split("(", 1)[1].rsplit(")", 1)
            with open(f"/proc/{pid}/task/{task}/wchan") as wchan:
                states.append(f"{name} {rest.split()[0]} {wchan.read()}")
        except OSError:
            pass  # the thread ended meanwhile
    return states


def log_lines_about(server: ServerProcess, name: str) -> list[str]:
    """Lines of the server's log that name the client `name`, its join apart."""
    word = re.compile(rf"\b{re.escape(name)}\b(?!-)")
    return [
        line
        for line in server.stderr().splitlines()
        if word.search(line) and not re.search(r"\bjoined\b", line)
    ]


def pass_lines(sender: LineClient, receiver: LineClient, size: int) -> list[str]:
    """`sender` says `size` bytes of lines at once; `receiver` must get each, in order.

    Returns the server's notices (`* ...`) that the receiver saw in between.
    """
    tag = marker()
    lines = [f"{tag} {i:05d} " + "x" * 1000 for i in range(max(1, size // 1024))]
    sender.send("".join(line + "\n" for line in lines).encode())
    notices = []
    for line in lines:
        while (got := receiver.read_line()) != f"{sender.name}: {line}":
            assert got.startswith("* "), (
                f"lost or reordered: expected {line[:14]!r}, got {got[:60]!r}"
            )
            notices.append(got)
    return notices


@pytest.fixture
def join() -> Iterator[Join]:
    """Clients in a room on a given server (see join_room); all closed at the end."""
    opened: list[LineClient] = []

    def open_room(
        server: ServerProcess, size: int, among: Sequence[LineClient] = (), rcvbuf: int = 0
    ) -> list[LineClient]:
        def connect() -> LineClient:
            client = LineClient(server.address, rcvbuf=rcvbuf)
            opened.append(client)
            return client

        return join_room(connect, size, among)

    yield open_room
    for client in opened:
        client.close()


# --------------------------------------------------------------------------- the command line


def test_port_0_takes_a_free_port_and_reports_it(start_server: StartServer, join: Join) -> None:
    first, second = start_server(), start_server()
    assert first.host == second.host == "127.0.0.1"
    assert first.port > 0 and second.port > 0
    assert first.port != second.port
    for server in (first, second):
        alice, bob = join(server, 2)
        fence(alice, bob)


def test_ipv6_loopback_is_served(start_server: StartServer, join: Join) -> None:
    if not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    server = start_server("--host", "::1")
    assert server.host == "::1"
    alice, bob = join(server, 2)
    assert alice.sock.family == socket.AF_INET6
    fence(alice, bob)


def test_help_exits_0_and_says_how_to_open_the_chat_to_a_network(server_module: str) -> None:
    result = run_server_once(server_module, "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "0.0.0.0" in text
    for option in ("--host", "--port", "--max-line", "--max-clients", "--sendq"):
        assert option in text


def test_a_port_in_use_gives_one_clear_error_line_and_a_nonzero_exit(
    server: ServerProcess,
) -> None:
    result = run_server_once(server.module, "--port", str(server.port))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "listening on" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if "in use" in line]
    assert len(errors) == 1, result.stderr
    assert str(server.port) in errors[0]


@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_a_bad_port_gives_a_clear_error_and_a_nonzero_exit(server_module: str, port: str) -> None:
    result = run_server_once(server_module, "--port", port)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "listening on" not in result.stdout
    assert any("port" in line and "error" in line.lower() for line in result.stderr.splitlines())


# --------------------------------------------------------------------------- threads


def test_thread_count_follows_the_clients_as_they_come_and_go(
    server: ServerProcess, connect: Callable[..., LineClient]
) -> None:
    base = base_threads(server)
    wait_for_threads(server, base)
    clients: list[LineClient] = []
    for target in (5, 10):
        while len(clients) < target:
            clients.append(connect())
        wait_for_threads(server, base + target)
    for client in clients[:3]:
        client.close()
    wait_for_threads(server, base + 7)
    for client in clients[3:]:
        client.close()
    wait_for_threads(server, base)


def allowed_cpus(pid: int) -> dict[str, set[int]]:
    """The CPUs each thread of `pid` may run on, by thread id, as the kernel says."""
    allowed = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            allowed[task] = os.sched_getaffinity(int(task))
        except OSError:
            pass  # the thread ended meanwhile
    return allowed


def test_every_thread_may_run_on_every_cpu_the_server_was_given(
    start_server: StartServer, join: Join
) -> None:
    # Where the server runs is the operator's choice (taskset), not the server's.
    server = start_server()
    join(server, 3)  # client threads too, started after the server set itself up
    wait_for_threads(server, base_threads(server) + 3)
    allowed = allowed_cpus(server.pid)
    assert len(allowed) == base_threads(server) + 3
    assert all(cpus == os.sched_getaffinity(0) for cpus in allowed.values()), allowed


def test_a_refused_newcomer_leaves_no_thread_behind(start_server: StartServer, join: Join) -> None:
    server = start_server("--max-clients", "1")
    join(server, 1)
    for _ in range(5):
        refused = LineClient(server.address, welcome=False)
        assert "server full" in refused.expect_eof()[0]
        refused.close()
    wait_for_threads(server, base_threads(server) + 1)


def test_peers_that_come_and_go_at_once_leave_no_thread_nor_descriptor_behind(
    server: ServerProcess, join: Join
) -> None:
    [alice] = join(server, 1)
    wait_for_threads(server, base_threads(server) + 1)
    descriptors = open_fds(server.pid)
    peers = 40
    for i in range(peers):
        peer = socket.create_connection(server.address, timeout=DEADLINE)
        if i % 2:  # half with a RST, half with a FIN; none reads its welcome
            reset_on_close(peer)
        peer.close()
    left = 0
    while left < peers:  # alice sees each of them go: the server is done with all of them
        left += bool(re.match(r"^\* guest-\d+ left$", alice.read_line()))
    wait_for_threads(server, base_threads(server) + 1)
    wait_for(lambda: open_fds(server.pid) == descriptors, f"{descriptors} open descriptors")
    [bob] = join(server, 1, among=[alice])
    fence(bob, alice)


# --------------------------------------------------------------------------- slow and stuck readers


@pytest.mark.timeout(45)
def test_stuck_reader_is_cut_and_others_lose_nothing(start_server: StartServer, join: Join) -> None:
    server = start_server("--sendq", str(SMALL_SENDQ))
    alice, bob = join(server, 2)
    [stuck] = join(server, 1, among=(alice, bob), rcvbuf=SMALL_RCVBUF)  # it never reads again
    notices: list[str] = []
    for _ in range(300):  # at most ~10 MB through the room; the cut comes long before
        notices += pass_lines(alice, bob, 16 * 1024)
        notices += pass_lines(bob, alice, 16 * 1024)
        if notices:
            break
    # Others keep chatting after the cut, and every line still arrives, in order.
    for _ in range(10):
        notices += pass_lines(alice, bob, 16 * 1024)
        notices += pass_lines(bob, alice, 16 * 1024)
    assert len(notices) == 2, notices
    assert all(re.match(rf"^\* {stuck.name} left\b", notice) for notice in notices), notices
    stuck.expect_eof(timeout=DEADLINE * 2)
    wait_for(lambda: log_lines_about(server, stuck.name), f"a log line on cutting {stuck.name}")
    wait_for_threads(server, base_threads(server) + 2)


@pytest.mark.timeout(45)
def test_a_slow_reader_that_keeps_reading_is_never_cut(
    start_server: StartServer, join: Join
) -> None:
    server = start_server("--sendq", str(SMALL_SENDQ))
    [alice] = join(server, 1)
    [reader] = join(server, 1, among=[alice], rcvbuf=SMALL_RCVBUF)
    for _ in range(40):  # 40 x 48 KiB: ~2 MB, in bursts under the --sendq of 64 KiB
        assert pass_lines(alice, reader, 48 * 1024) == []
    fence(alice, reader)
    assert log_lines_about(server, reader.name) == []


@pytest.mark.timeout(45)
def test_a_reader_that_stops_does_not_hold_up_the_others(
    start_server: StartServer, join: Join
) -> None:
    server = start_server("--sendq", str(LARGE_SENDQ))
    alice, bob = join(server, 2)
    [stuck] = join(server, 1, among=(alice, bob), rcvbuf=SMALL_RCVBUF)
    for _ in range(PAST_KERNEL_BUFFERS // (128 << 10)):  # a backlog for `stuck`
        assert pass_lines(alice, bob, 128 << 10) == []
        assert pass_lines(bob, alice, 4 << 10) == []
    bob.say("/who")
    assert stuck.name in bob.next_line_is(r"^\* here now \(3\): ")  # still here, not cut


# --------------------------------------------------------------------------- signals and restarts


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_tells_every_client_and_exits_0_within_2s(
    start_server: StartServer, join: Join, signum: int
) -> None:
    server = start_server()
    clients = join(server, 3)
    code, seconds = stop_and_time(server, signum)
    for client in clients:
        assert client.expect_eof() == ["* server shutting down"]
    assert code == 0
    assert seconds < STOP_WITHIN


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_right_after_the_listening_line_still_stops_cleanly(
    start_server: StartServer, signum: int
) -> None:
    server = start_server()  # it has printed `listening on`: a supervisor may stop it now
    code, seconds = stop_and_time(server, signum)
    assert code == 0
    assert seconds < STOP_WITHIN


def test_shutdown_is_prompt_with_a_stuck_reader_and_a_half_sent_line(
    start_server: StartServer, join: Join
) -> None:
    server = start_server("--sendq", str(LARGE_SENDQ))
    alice, bob = join(server, 2)
    [half] = join(server, 1, among=(alice, bob))
    join(server, 1, among=(alice, bob, half), rcvbuf=SMALL_RCVBUF)  # it never reads
    for _ in range(PAST_KERNEL_BUFFERS // (128 << 10)):  # a backlog its writer waits on
        pass_lines(alice, bob, 128 << 10)
    word = marker()
    alice.say(word)
    for client in (bob, half):  # caught up: nothing is unread but what shutting down sends
        client.expect(rf"^{alice.name}: {word}$")
    half.send(b"half a line, never finished")
    code, seconds = stop_and_time(server, signal.SIGTERM)
    for client in (alice, bob, half):
        assert client.expect_eof() == ["* server shutting down"]
    assert code == 0
    assert seconds < STOP_WITHIN


def test_shutdown_is_prompt_while_the_room_lags_and_senders_are_paused(
    start_server: StartServer, join: Join
) -> None:
    server = start_server("-v", "--sendq", "65536")
    [alice] = join(server, 1)
    readers = join(server, 2, among=[alice])
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:  # they read, slowly: senders wait for them
        sock.settimeout(0.01)
        while not stop.is_set():
            try:
                if not sock.recv(1024):
                    return
            except TimeoutError:
                continue
            except OSError:
                return
            stop.wait(0.005)

    threads = [threading.Thread(target=trickle, args=(r.sock,), daemon=True) for r in readers]
    for thread in threads:
        thread.start()
    alice.sock.setblocking(False)
    line = b"y" * 1000 + b"\n"
    try:
        wait_for(
            lambda: send_some(alice.sock, line * 16) or "a sender waits" in server.stderr(),
            "a sender to wait for the laggards",
        )
        code, seconds = stop_and_time(server, signal.SIGTERM)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5.0)
    assert code == 0
    assert seconds < STOP_WITHIN


def send_some(sock: socket.socket, data: bytes) -> bool:
    """Send what the socket takes now; False (a wait_for goes on) whatever happened."""
    try:
        sock.send(data)
    except BlockingIOError:
        pass
    return False


@pytest.mark.parametrize("how", ["clean stop", "SIGKILL"])
def test_a_restart_on_the_same_port_works_at_once(
    start_server: StartServer, join: Join, how: str
) -> None:
    first = start_server()
    alice, bob = join(first, 2)  # connections open at the stop: the port has sockets lingering
    fence(alice, bob)
    if how == "SIGKILL":
        first.signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
    else:
        first.signal(signal.SIGTERM)
        assert first.wait() == 0
    second = start_server("--port", str(first.port))
    assert second.port == first.port
    carol, dave = join(second, 2)
    fence(carol, dave)


# --------------------------------------------------------------------------- peers that misbehave


@pytest.mark.parametrize("when", ["after a line", "mid-line"])
def test_a_peer_that_resets_is_removed_cleanly(
    server: ServerProcess, join: Join, when: str
) -> None:
    alice, peer = join(server, 2)
    word = marker()
    peer.send(f"{word}\n".encode() if when == "after a line" else f"unfinished {word}".encode())
    if when == "after a line":
        alice.next_line_is(rf"^{peer.name}: {word}$")
    peer.reset()
    alice.next_line_is(rf"^\* {peer.name} left$")
    wait_for_threads(server, base_threads(server) + 1)


def test_a_peer_that_half_closes_after_a_line_is_removed_and_its_line_delivered(
    server: ServerProcess, join: Join
) -> None:
    alice, peer = join(server, 2)
    word = marker()
    peer.send(f"last words {word}\n".encode())
    peer.sock.shutdown(socket.SHUT_WR)
    alice.next_line_is(rf"^{peer.name}: last words {word}$")
    alice.next_line_is(rf"^\* {peer.name} left$")
    peer.expect_eof()
    wait_for_threads(server, base_threads(server) + 1)


def test_a_peer_that_half_closes_mid_line_is_removed_and_its_last_line_delivered(
    server: ServerProcess, join: Join
) -> None:
    alice, peer = join(server, 2)
    word = marker()
    peer.send(f"no newline {word}".encode())
    peer.sock.shutdown(socket.SHUT_WR)
    alice.next_line_is(rf"^{peer.name}: no newline {word}$")  # the end of input ends it
    alice.next_line_is(rf"^\* {peer.name} left$")
    peer.expect_eof()
    wait_for_threads(server, base_threads(server) + 1)


VANISHING_PEER = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
stream = sock.makefile("rb")
welcome = stream.readline()
sock.sendall(b"/who\\n")
stream.readline()
sock.sendall(b"half a line that never ends")
sys.stdout.write(welcome.decode())
sys.stdout.flush()
sys.stdin.read()  # wait here to be killed
"""


def test_a_peer_whose_process_dies_mid_line_is_removed_cleanly(
    server: ServerProcess, join: Join
) -> None:
    [alice] = join(server, 1)
    peer = subprocess.Popen(
        [sys.executable, "-c", VANISHING_PEER, server.host, str(server.port)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        name = peer.stdout.readline().split()[2].rstrip(".")
        alice.next_line_is(rf"^\* {name} joined$")
        wait_for_threads(server, base_threads(server) + 2)
        peer.kill()
        peer.wait(DEADLINE)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait(DEADLINE)
    # It had read all it was sent, so its kernel closes with a FIN, as a half-close would
    # (a reset, with unread data, would lose the line): the end of input ends the line.
    alice.next_line_is(rf"^{name}: half a line that never ends$")
    alice.next_line_is(rf"^\* {name} left$")
    wait_for_threads(server, base_threads(server) + 1)


def test_a_reader_that_resets_with_a_backlog_is_removed_cleanly(
    start_server: StartServer, join: Join
) -> None:
    server = start_server("--sendq", str(LARGE_SENDQ))
    alice, bob = join(server, 2)
    [stuck] = join(server, 1, among=(alice, bob), rcvbuf=SMALL_RCVBUF)
    for _ in range(PAST_KERNEL_BUFFERS // (128 << 10)):  # a backlog its writer waits on
        pass_lines(alice, bob, 128 << 10)
    stuck.reset()
    alice.next_line_is(rf"^\* {stuck.name} left$")
    bob.next_line_is(rf"^\* {stuck.name} left$")
    for _ in range(4):  # the room goes on
        assert pass_lines(alice, bob, 32 * 1024) == []
    wait_for_threads(server, base_threads(server) + 2)


def test_a_peer_streaming_without_newlines_costs_bounded_memory(
    server: ServerProcess, join: Join
) -> None:
    alice, bob = join(server, 2)
    before = rss_bytes(server.pid)
    reset_peak_rss(server.pid)
    chunk = b"z" * (1 << 20)
    for _ in range(32):  # 32 MiB with no newline: the server holds one line at most
        alice.send(chunk)
    word = marker()
    alice.send(f"\n{word}\n".encode())
    bob.next_line_is(rf"^{alice.name}: {word}$")
    [error] = alice.lines_until_sync()  # one error for the whole of it
    assert error.startswith("* error: ")
    # The peak, not RSS now: a server that held the flood and freed it at the newline would
    # be back under the bound by now, but its peak is past 32 MiB.
    grown = peak_rss_bytes(server.pid) - before
    assert grown < 16 << 20, f"peak RSS grew {grown >> 10} KiB"
