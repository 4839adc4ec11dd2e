"""An outbox over a real TCP connection whose reader never reads, or reads slowly (outbox.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from section_a.flow import FlowControl
from section_a.outbox import SLOW_LIMIT_FACTOR, STUCK_AFTER, STUCK_WINDOWS, Flusher, Outbox
from tests.support import wait_for

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(30)]

SENDQ = 64 * 1024
LINE = b"x" * 99 + b"\n"


@pytest.fixture
def stuck_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server end, client end) of a loopback TCP connection; the client never reads."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: window
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    with server, client:
        yield server, client


def fill_past(outbox: Outbox, size: int) -> None:
    """Send lines until the outbox holds more than `size` bytes of backlog."""
    while outbox.backlog <= size:
        assert outbox.send(LINE), outbox.reason


def test_a_reader_that_stops_is_cut_once_stuck_in_a_quiet_room(
    flusher: Flusher, stuck_pair: tuple[socket.socket, socket.socket]
) -> None:
    """Past --sendq, but it began to lag a moment ago: cut only after whole windows of
    no progress, though the room sends it just a line now and then."""
    flow = FlowControl(SENDQ)
    flow.member_joined()
    outbox = Outbox(stuck_pair[0], SENDQ, flusher, flow)
    fill_past(outbox, SENDQ)
    crossed = time.monotonic()
    assert not outbox.closed
    deadline = crossed + STUCK_AFTER * (STUCK_WINDOWS + 1) + 5.0
    ticks = threading.Event()
    while outbox.send(LINE):  # a quiet room: a line every 50 ms
        assert time.monotonic() < deadline, "the stuck reader was not cut"
        assert flow.holding == 0, "a reader that reads nothing held the room"
        ticks.wait(0.05)
    assert time.monotonic() - crossed >= STUCK_AFTER * STUCK_WINDOWS * 0.9
    assert outbox.reason == f"backlog over {SENDQ} bytes"
    assert flow.lagging == 0  # a cut member stops counting at once


def test_past_four_times_the_limit_anyone_is_cut_at_once(
    flusher: Flusher, stuck_pair: tuple[socket.socket, socket.socket]
) -> None:
    flow = FlowControl(SENDQ)
    flow.member_joined()
    outbox = Outbox(stuck_pair[0], SENDQ, flusher, flow)
    bound = SENDQ * SLOW_LIMIT_FACTOR
    while outbox.send(LINE):
        assert outbox.backlog <= bound
    assert outbox.reason == f"backlog over {bound} bytes"


def test_a_reader_past_the_limit_that_still_reads_holds_the_room_until_back_under(
    flusher: Flusher, stuck_pair: tuple[socket.socket, socket.socket]
) -> None:
    """The same connection, but its client reads (slowly): past --sendq it holds the room;
    once it has read its way back under, it holds it no more."""
    server, client = stuck_pair
    flow = FlowControl(SENDQ)
    flow.member_joined()
    outbox = Outbox(server, SENDQ, flusher, flow)
    fill_past(outbox, SENDQ * 2)
    stop = threading.Event()

    def read_slowly() -> None:  # 4 KiB every 5 ms; never blocks, so that it can be stopped
        while not stop.wait(0.005):
            try:
                client.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    try:
        wait_for(lambda: flow.holding == 1, "the reader to hold the room", timeout=10)
        wait_for(lambda: outbox.backlog <= SENDQ, "the reader to read its way back under")
        outbox.flush()  # what the flusher does as the socket drains: the state is told
        assert flow.holding == 0
        assert not outbox.closed
    finally:
        stop.set()
        reader.join(5)
        outbox.close()  # as its owner does before closing the socket: the flusher forgets it
