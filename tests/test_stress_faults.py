"""Stress: framing at scale, peers that misbehave, signals and restarts.

From the hardening issue. Each test runs against every server in conftest.SERVERS,
at CI size, or at full size with STRESS=full (harness/load.py, SIZES). A server that
prints a traceback fails the test (the fixture checks its stderr when it stops), so
"removed cleanly" is checked for every fault here.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable

import pytest

from harness.lines import load_line
from harness.load import Swarm
from harness.proc import peak_rss_bytes, reset_peak_rss, rss_bytes, thread_count
from harness.sockets import read_until_eof, stuck_reader
from tests.conftest import StartServer
from tests.promises import BASE_THREADS, DEFAULT_MAX_LINE, STOP_WITHIN
from tests.servers import LineClient
from tests.sizes import SIZES

pytestmark = [pytest.mark.stress, pytest.mark.timeout(SIZES.timeout)]
RecordProperty = Callable[[str, object], None]  # the record_property fixture

SETTLE = 10.0  # seconds for the server to notice clients that left
TEXT = "héllo wörld ✓ 𝄞 ünïcode"  # 2-, 3- and 4-byte characters
LINES = 100
BACKLOG_LINES = 9000  # ~650 KiB for a stuck reader: far past its window, under --sendq


def pair(address: tuple[str, int]) -> tuple[LineClient, LineClient]:
    """A sender and a receiver, with the receiver's join notice behind the sender."""
    sender, receiver = LineClient(address), LineClient(address)
    sender.next_line_is(rf"^\* {receiver.name} joined$")
    return sender, receiver


def split_inside_characters(line: bytes) -> list[bytes]:
    """`line` in three pieces, cut after the first byte of é and the second byte of 𝄞."""
    first = line.index("é".encode()) + 1
    second = line.index("𝄞".encode()) + 2
    return [line[:first], line[first:second], line[second:]]


WAYS = ("whole", "byte by byte", "inside a character", "all in one send")


def pieces(way: str, lines: list[bytes]) -> list[bytes]:
    """`lines` cut into the pieces sent one send() each, the `way` named."""
    match way:
        case "whole":
            return lines
        case "byte by byte":
            return [bytes([byte]) for line in lines for byte in line]
        case "inside a character":
            return [piece for line in lines for piece in split_inside_characters(line)]
        case _:
            return [b"".join(lines)]


def test_lines_arrive_whole_however_they_are_split(start_server: StartServer) -> None:
    server = start_server()
    sender, receiver = pair(server.address)
    sender.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one send, one segment
    try:
        for way in WAYS:
            texts = [f"{way} {k:03d} {TEXT}" for k in range(LINES)]
            for piece in pieces(way, [(text + "\n").encode() for text in texts]):
                sender.send(piece)
            got = [receiver.read_line() for _ in texts]
            assert got == [f"{sender.name}: {text}" for text in texts], way
    finally:
        sender.close()
        receiver.close()


def test_a_line_at_the_limit_passes_and_one_byte_over_is_refused(
    start_server: StartServer,
) -> None:
    server = start_server()
    sender, receiver = pair(server.address)
    at_limit = "é" * (DEFAULT_MAX_LINE // 2)  # as many bytes: the limit counts bytes
    try:
        for ending in ("\n", "\r\n"):
            sender.send((at_limit + ending).encode())
            assert receiver.read_line() == f"{sender.name}: {at_limit}"
            sender.send(("a" * DEFAULT_MAX_LINE + ending).encode())
            assert receiver.read_line() == f"{sender.name}: {'a' * DEFAULT_MAX_LINE}"
            for over in (at_limit + "a", "a" * (DEFAULT_MAX_LINE + 1)):
                sender.send((over + ending).encode())
                sender.next_line_is(r"^\* error: line too long")
            sender.say("after the long ones")
            receiver.next_line_is(rf"^{sender.name}: after the long ones$")
    finally:
        sender.close()
        receiver.close()


def test_a_flood_without_newline_keeps_memory_bounded_and_is_served_after_it(
    start_server: StartServer, record_property: RecordProperty
) -> None:
    server = start_server()
    sender, receiver = pair(server.address)
    chunk = b"x" * 65536
    try:
        before = rss_bytes(server.pid)
        reset_peak_rss(server.pid)  # the peak of the flood, not the start-up's
        for _ in range(SIZES.flood_bytes // len(chunk)):
            sender.send(chunk)
        sender.send(b"\nback after the flood\n")
        sender.next_line_is(r"^\* error: line too long")
        receiver.next_line_is(rf"^{sender.name}: back after the flood$")
        grown = peak_rss_bytes(server.pid) - before  # the peak: memory freed after still counts
    finally:
        sender.close()
        receiver.close()
    print(
        f"\n{server.module}: {SIZES.flood_bytes >> 20} MiB without a newline: "
        f"peak RSS {grown / 1024:+.0f} KiB"
    )
    record_property("flood_peak_rss_growth_kib", round(grown / 1024))
    assert grown < SIZES.flood_bytes / 10


def test_peers_that_reset_mid_line_are_removed_cleanly(start_server: StartServer) -> None:
    server = start_server()
    base = BASE_THREADS[server.module]
    with Swarm(server.address) as swarm:
        alice, bob, *peers = swarm.connect(12)
        swarm.sync()
        for peer in peers:
            swarm.send(peer, b"half a line that never ends")
        for peer in peers:
            swarm.disconnect(peer, reset=True)
        swarm.run_until(
            lambda: thread_count(server.pid) == base + 2, "the reset peers to go", SETTLE, 0.01
        )
        delivery = swarm.fan_out([alice], 10, receivers=[bob])
        assert delivery.received == {bob.index: 10}, delivery.summary()


def test_a_half_closed_peer_gets_its_line_out_and_is_removed(start_server: StartServer) -> None:
    server = start_server()
    base = BASE_THREADS[server.module]
    with Swarm(server.address) as swarm:
        watcher, peer = swarm.connect(2)
        swarm.sync()
        swarm.send(peer, load_line(peer.index, 0))
        swarm.half_close(peer)
        left = f"* {peer.name} left".encode()
        swarm.run_until(
            lambda: peer.cut and any(line.startswith(left) for line in watcher.recent),
            "the server to close the half-closed peer and say so",
        )
        assert watcher.load_lines == 1, "the half-closed peer's last line was lost"
        swarm.run_until(lambda: thread_count(server.pid) == base + 1, "its thread to end", SETTLE)


def test_peers_that_vanish_during_a_broadcast_are_removed_cleanly(
    start_server: StartServer,
) -> None:
    server = start_server()
    base = BASE_THREADS[server.module]
    with Swarm(server.address) as swarm:
        clients = swarm.connect(30)
        swarm.sync()
        stay, vanish = clients[:20], clients[20:]
        for k, client in enumerate(vanish):
            client.vanish_after = 200 + 500 * k  # reset after that many lines, mid-stream
        delivery = swarm.fan_out(stay[:5], 2000, receivers=stay)
        assert not (delivery.lost or delivery.extra or delivery.cut or delivery.disordered), (
            delivery.summary()
        )
        assert all(c.closed_by_us for c in vanish), "a peer was cut before it could vanish"
        swarm.run_until(
            lambda: thread_count(server.pid) == base + len(stay), "the vanished to go", SETTLE, 0.01
        )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_server_at_once_and_every_client_sees_eof(
    start_server: StartServer, signum: signal.Signals
) -> None:
    server = start_server()
    stuck = stuck_reader(server.address)
    with Swarm(server.address) as swarm:
        clients = swarm.connect(49)  # with the stuck reader: 50
        swarm.sync()
        assert swarm.who(clients[0]) == 50
        # The stuck reader's window closes and ~650 KiB wait for it, under the limit: in the
        # server's socket buffer, and in its outbox once that buffer is full.
        delivery = swarm.fan_out(clients[:1], BACKLOG_LINES, verify=False)
        assert not (delivery.lost or delivery.extra or delivery.cut), delivery.summary()
        assert "backlog" not in server.stderr(), "the stuck reader was cut: no backlog left"
        swarm.send(clients[-1], b"a line the server will never see end")

        signalled = time.monotonic()
        server.signal(signum)
        try:
            status = server.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_WITHIN}s after {signum.name}")
        took = time.monotonic() - signalled
        assert status == 0, f"exit status {status} after {signum.name}"
        swarm.run_until(lambda: all(c.eof for c in clients), "every client to see EOF")
        read_until_eof(stuck)
    stuck.close()
    print(f"\n{server.module}: stopped {took:.2f}s after {signum.name} with 50 clients")


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_restart_on_the_same_port_works_at_once(start_server: StartServer, how: str) -> None:
    first = start_server()
    with Swarm(first.address) as swarm:
        clients = swarm.connect(5)
        swarm.sync()
        assert not swarm.fan_out(clients[:1], 100).lost
        if how == "stopped":
            first.signal(signal.SIGTERM)
            assert first.wait() == 0
        else:
            first.kill()
        swarm.run_until(lambda: all(c.eof for c in clients), "every client to see the server go")

    second = start_server("--port", str(first.port))
    assert second.port == first.port
    with Swarm(second.address) as swarm:
        clients = swarm.connect(5)
        delivery = swarm.fan_out(clients[:1], 100)
        assert delivery.delivered == 400 and not delivery.disordered, delivery.summary()
