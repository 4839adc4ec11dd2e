"""Promises of the README that no other test held the code to, against both servers.

Where to listen (`--host ::` serves IPv6 and IPv4; `--host 0.0.0.0`), the default
limit of clients, `-q`, "nothing polls" (an idle server and an idle client use no CPU
and are never woken), the client telling a reset from an orderly close, and join and
leave notices "within 50 ms". Every number is the README's (tests/promises.py).
"""

from __future__ import annotations

import re
import select
import socket
import statistics
import subprocess
import time
from collections.abc import Callable

import pytest

from harness.load import Swarm
from harness.proc import context_switches, cpu_seconds
from harness.sockets import reset_on_close
from section_a.serving import raise_fd_limit
from tests.conftest import StartServer
from tests.promises import (
    DEFAULT_MAX_CLIENTS,
    EXIT_SERVER_GONE,
    NOTICE_WITHIN,
    SERVER_FULL,
)
from tests.pty_client import Spawn, client_argv, client_env
from tests.servers import ROOT, LineClient, ServerProcess, has_ipv6_loopback, join_room
from tests.support import DEADLINE

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(60)]

Connect = Callable[..., LineClient]

IDLE_FOR = 1.0  # seconds an idle process is watched
IDLE_CPU = 0.02  # seconds of CPU it may use meanwhile: two clock ticks, for the reading itself
# Times its threads may be switched to, in all, meanwhile. Waiting in recv(), accept() or
# read() with no timeout, they should never be: 0 is what is measured here. A
# thread that woke to poll even 10 times a second would pass 10; the margin is for a stray
# wake-up (a signal, a page fault that sleeps), not for a timer.
IDLE_SWITCHES = 5
TRIALS = 7  # joins and leaves timed; the median is held to the bound
# The bound on the median time from a connect (or close) to the notice at another client:
# the README's 50 ms, plus what the rest takes on a loaded 2-core machine (accept, a thread
# started, a write: 1 to 5 ms measured here; the median of 7 absorbs a few trials the
# scheduler delays). A notice held twice as long (100 ms) fails.
NOTICE_BOUND = NOTICE_WITHIN + 0.030


def assert_idle(pid: int, what: str) -> None:
    """Over IDLE_FOR seconds, `pid` uses no CPU and none of its threads wakes."""
    cpu, switches = cpu_seconds(pid), context_switches(pid)
    time.sleep(IDLE_FOR)  # a measurement: what the process does while nothing happens
    spent, woken = cpu_seconds(pid) - cpu, context_switches(pid) - switches
    assert spent <= IDLE_CPU, f"{what} used {spent:.3f}s of CPU in {IDLE_FOR:.0f}s of nothing"
    assert woken <= IDLE_SWITCHES, f"{what}'s threads woke {woken} times in {IDLE_FOR:.0f}s"


# --------------------------------------------------------------------------- where to listen


def test_host_all_ipv6_serves_ipv6_and_ipv4_alike(start_server: StartServer) -> None:
    if not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback, so --host :: cannot be tried")
    server = start_server("--host", "::")
    assert server.host == "::"
    v6 = LineClient(("::1", server.port))
    v4 = LineClient(("127.0.0.1", server.port))
    try:
        assert v6.sock.family == socket.AF_INET6 and v4.sock.family == socket.AF_INET
        v6.next_line_is(rf"^\* {v4.name} joined$")
        v4.say("over IPv4")
        v6.next_line_is(rf"^{v4.name}: over IPv4$")
        v6.say("over IPv6")
        v4.next_line_is(rf"^{v6.name}: over IPv6$")
    finally:
        v6.close()
        v4.close()


def test_host_all_ipv4_is_served(start_server: StartServer) -> None:
    server = start_server("--host", "0.0.0.0")
    assert server.host == "0.0.0.0"
    first, second = LineClient(("127.0.0.1", server.port)), LineClient(("127.0.0.1", server.port))
    try:
        first.next_line_is(rf"^\* {second.name} joined$")
        second.say("on every address")
        first.next_line_is(rf"^{second.name}: on every address$")
    finally:
        first.close()
        second.close()


# --------------------------------------------------------------------------- the defaults


def test_by_default_exactly_1024_clients_are_served(start_server: StartServer) -> None:
    raise_fd_limit()  # one descriptor a client here too
    server = start_server()
    with Swarm(server.address) as swarm:
        # The room fills first, then one more comes: which of many racing connections the
        # server admits last is up to its threads, so they do not race here.
        clients = swarm.connect(DEFAULT_MAX_CLIENTS, timeout=DEADLINE * 6)
        refused = [c for c in clients if not c.welcomed]
        assert not refused, f"{len(refused)} refused of {DEFAULT_MAX_CLIENTS}"
        [extra] = swarm.connect(1, timeout=DEADLINE)
        assert not extra.welcomed and extra.first == SERVER_FULL.encode()


# --------------------------------------------------------------------------- -q


def join_and_sync(server: ServerProcess) -> None:
    """A client joins, and the server has done with its arrival (its log line included)."""
    client = LineClient(server.address)
    try:
        client.sync()  # its thread answers /who only after the join, logged, is over
    finally:
        client.close()


def test_quiet_logs_no_info_when_a_client_joins(start_server: StartServer) -> None:
    loud = start_server()
    join_and_sync(loud)
    assert re.search(r" INFO .* joined", loud.stderr()), "without -q a join is logged"
    quiet = start_server("-q", "--max-clients", "1")
    held = LineClient(quiet.address)
    held.sync()  # its thread answers /who only after the join, logged, is over
    refused = LineClient(quiet.address, welcome=False)
    try:
        # Refused, and logged before the refusal is sent: once it is closed, the line is there.
        assert refused.expect_eof() == [SERVER_FULL]
    finally:
        held.close()
        refused.close()
    log = quiet.stderr()
    assert re.search(r" WARNING .*refused", log), f"warnings still come with -q: {log!r}"
    assert " INFO " not in log, log


# --------------------------------------------------------------------------- nothing polls


def test_an_idle_server_with_idle_clients_uses_no_cpu_and_never_wakes(
    server: ServerProcess, connect: Connect
) -> None:
    alice, bob = join_room(connect, 2)
    alice.sync()
    bob.sync()
    assert_idle(server.pid, server.module)


def test_an_idle_terminal_client_uses_no_cpu_and_never_wakes(
    server: ServerProcess, spawn: Spawn
) -> None:
    client = spawn(client_argv(server.address))
    client.welcome()
    client.wait_prompt()
    assert_idle(client.pid, "the client")
    client.leave()


# --------------------------------------------------------------------------- the client's ends


@pytest.mark.parametrize(
    ("close", "said"),
    [
        ("orderly", "-- the server closed the connection"),
        ("reset", "-- lost the connection: Connection reset by peer"),
    ],
)
def test_the_client_tells_a_reset_from_an_orderly_close(close: str, said: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(DEADLINE)
        client = subprocess.Popen(
            client_argv(listener.getsockname()[:2]),
            stdin=subprocess.PIPE,  # open and silent: only the server can end it
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=client_env(),
        )
        try:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"* welcome, guest-1. here now: nobody else.\n")
                # Once it shows the welcome, it is connected and reading: a reset now is one.
                assert client.stdout is not None
                shown = select.select([client.stdout], [], [], DEADLINE)[0]
                assert shown and client.stdout.readline().startswith(b"* welcome, guest-1.")
                if close == "reset":  # close() sends a RST, not a FIN
                    reset_on_close(conn)
            client.wait(DEADLINE)
            out, err = client.communicate()
        finally:
            if client.poll() is None:
                client.kill()
                client.communicate()
    assert client.returncode == EXIT_SERVER_GONE, (out, err)
    assert err.decode().splitlines() == [said]


# --------------------------------------------------------------------------- notices in time


def test_join_and_leave_notices_reach_the_others_within_50_ms(
    server: ServerProcess, connect: Connect
) -> None:
    [watcher] = join_room(connect, 1)
    joins, leaves = [], []
    for _ in range(TRIALS):
        started = time.monotonic()
        newcomer = LineClient(server.address, welcome=False)
        name = watcher.expect(r"^\* \S+ joined$").split()[1]
        joins.append(time.monotonic() - started)
        newcomer.read_line()  # its welcome, so that its thread is past the join
        started = time.monotonic()
        newcomer.close()
        watcher.next_line_is(rf"^\* {re.escape(name)} left")
        leaves.append(time.monotonic() - started)
    shown = (
        f"joins {', '.join(f'{t * 1000:.0f}' for t in joins)} ms; "
        f"leaves {', '.join(f'{t * 1000:.0f}' for t in leaves)} ms"
    )
    print(f"\n{server.module}: {shown}")
    assert statistics.median(joins) <= NOTICE_BOUND, shown
    assert statistics.median(leaves) <= NOTICE_BOUND, shown
