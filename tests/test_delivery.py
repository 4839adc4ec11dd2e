"""The room's delivery and its rules for readers that lag (room.py, outbox.py, lag.py).

Real TCP connections on loopback, a room with no server around it: each member is
the server's end of a connection, and the test holds the other end, reading it
when and as fast as the test says. The rules' clocks are made short here (LagRules)
so that a test of "cut after so long" takes a fraction of a second. The tests look
at the room through what it shows: a member's outbox (its backlog, since when it
lags or is stalled, why it was cut) and the room's pace (senders waiting).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from section_a.lag import LagRules
from section_a.outbox import Outbox, Pace
from section_a.room import ChatRoom, Member
from tests.support import wait_for

pytestmark = pytest.mark.timeout(30)

SENDQ = 64 * 1024
SMALL_RCVBUF = 4096  # the peer's receive buffer: the kernel holds little for a reader
READER_RCVBUF = 64 * 1024  # a reader the test reads READ_SIZE at a time
READ_SIZE = 16 * 1024
LINE = b"x" * 99 + b"\n"
CHUNK = LINE * 100  # 10 KB
SAID = re.compile(rb"\d+:\d+")  # what the order test's members say: SPEAKER:NUMBER


class Peer:
    """The far end of one member's connection: what the test reads, when it reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""

    def read_all(self, until: bytes, timeout: float = 5.0) -> bytes:
        """Read until `until` has arrived (or fail); return everything read so far."""
        self.sock.settimeout(0.1)
        deadline = time.monotonic() + timeout
        while until not in self.received:
            assert time.monotonic() < deadline, f"{until!r} did not arrive"
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            assert data, f"EOF before {until!r}"
            self.received += data
        return self.received

    def read_some(self, size: int, timeout: float = 5.0) -> int:
        """Read what has come, up to `size` bytes: 0 if nothing came within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(size)
        except TimeoutError:
            return 0
        self.received += data
        return len(data)


class Pair:
    """Makes TCP connections on loopback: the server's end for the room, the other for a Peer."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sockets: list[socket.socket] = [self.listener]

    def connect(self, rcvbuf: int = 0) -> tuple[socket.socket, Peer]:
        client = socket.socket()
        if rcvbuf:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        client.connect(self.listener.getsockname())
        server, _ = self.listener.accept()
        self.sockets += [client, server]
        return server, Peer(client)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    pairs = Pair()
    yield pairs
    pairs.close()


class Rooms:
    """The rooms a test makes, closed at its end, with every member's writer joined."""

    def __init__(self) -> None:
        self.made: list[tuple[ChatRoom, list[Member]]] = []

    def make(self, rules: LagRules) -> ChatRoom:
        room = ChatRoom(rules=rules)
        self.made.append((room, []))
        return room

    def close(self) -> None:
        for room, _ in self.made:
            room.close()
        for room, members in self.made:
            for member in members:
                room.leave(member)  # as each member's thread would: joins its writer
        assert not writers(), "a writer thread outlived its member"

    def joined(self, room: ChatRoom, member: Member) -> None:
        next(members for made, members in self.made if made is room).append(member)


@pytest.fixture
def rooms() -> Iterator[Rooms]:
    made = Rooms()
    yield made
    made.close()


def writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("writer")]


def join(rooms: Rooms, room: ChatRoom, pair: Pair, rcvbuf: int = 0) -> tuple[Member, Peer]:
    conn, peer = pair.connect(rcvbuf)
    member = room.join(conn, conn.getpeername())
    assert member is not None
    rooms.joined(room, member)
    peer.read_all(b"\n")  # its welcome
    return member, peer


def fill(room: ChatRoom, member: Member, past: int) -> None:
    """Tell `member` lines until its backlog is past `past` bytes (telling never waits)."""
    while member.outbox.backlog <= past:
        room.tell(member, CHUNK)


def saying(room: ChatRoom, member: Member, data: bytes) -> threading.Thread:
    """`member` says `data` in a thread of its own, as its client's thread would."""
    thread = threading.Thread(target=room.say, args=(member, data), daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- outbox


def test_a_reader_that_keeps_up_gets_every_send_at_once_and_no_writer(pair: Pair) -> None:
    conn, peer = pair.connect()
    outbox = Outbox(conn, LagRules(sendq=SENDQ), Pace())
    for i in range(10):
        outbox.send(b"line %d\n" % i)
    assert outbox.backlog == 0 and not writers()
    assert peer.read_all(b"line 9\n") == b"".join(b"line %d\n" % i for i in range(10))


def test_what_the_socket_cannot_take_waits_in_order_for_a_writer_that_ends_when_it_drains(
    pair: Pair,
) -> None:
    conn, peer = pair.connect(SMALL_RCVBUF)
    outbox = Outbox(conn, LagRules(sendq=SENDQ, stall=60.0), Pace())
    sent = [b"%06d" % i + LINE for i in range(3000)]  # ~300 KB: far past the kernel's buffers
    for line in sent:
        outbox.send(line)
    assert outbox.backlog > 0, "the kernel took everything: the test needs a bigger burst"
    assert [t.name for t in writers()] == ["writer"], "one writer for the backlog"
    assert peer.read_all(sent[-1]) == b"".join(sent)
    wait_for(lambda: outbox.backlog == 0 and not writers(), "the writer to end, its work done")
    outbox.send(b"after\n")  # and the next send goes at once again, with no writer
    assert outbox.backlog == 0 and not writers()
    assert peer.read_all(b"after\n").endswith(sent[-1] + b"after\n")


def test_a_reader_lags_past_sendq_until_it_is_back_under_half(pair: Pair) -> None:
    # Not the tiny buffer: reading it 4 KiB at a time, the window would reopen too little
    # for the kernel to say so, and the writer would wait for its zero-window probe.
    conn, peer = pair.connect(READER_RCVBUF)
    pace = Pace()
    outbox = Outbox(conn, LagRules(sendq=SENDQ, patience=60.0, stall=60.0), pace)
    while outbox.backlog <= SENDQ:
        assert not outbox.lagging_since, "it lagged before it was past sendq"
        outbox.send(CHUNK)
    assert outbox.lagging_since > 0 and len(pace.lagging) == 1
    seen: list[int] = []
    deadline = time.monotonic() + 10.0
    while outbox.lagging_since:
        assert time.monotonic() < deadline, "it never caught up"
        seen.append(outbox.backlog)
        peer.read_some(READ_SIZE, timeout=0.1)
    # It stopped lagging at a send: the backlog went from over half to at most half there.
    assert outbox.backlog <= SENDQ // 2 and not pace.lagging
    assert max(seen[-3:]) > SENDQ // 2 or len(seen) < 3 or seen[0] > SENDQ


def test_a_cut_reader_loses_its_backlog_and_its_peer_sees_the_end(pair: Pair) -> None:
    conn, peer = pair.connect(SMALL_RCVBUF)
    outbox = Outbox(conn, LagRules(sendq=SENDQ, stall=60.0), Pace())
    fill_box = b"a" * 200_000
    outbox.send(fill_box)
    outbox.cut("test")
    assert (outbox.closed, outbox.backlog, outbox.reason) == (True, 0, "test")
    outbox.send(b"after\n")
    peer.sock.settimeout(5.0)
    while data := peer.sock.recv(1 << 16):  # what the kernel had, then EOF: never the rest
        peer.received += data
    assert len(peer.received) < len(fill_box) and b"after" not in peer.received
    outbox.close(5.0)
    assert not writers()


def test_the_kernel_send_buffer_is_bounded_by_sendq(pair: Pair) -> None:
    conn, _ = pair.connect()
    autotuned = conn.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    Outbox(conn, LagRules(sendq=SENDQ), Pace())
    # Linux doubles what is asked (for its own bookkeeping), and reports the doubled size.
    assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * SENDQ != autotuned


def test_a_small_line_goes_out_at_once_not_after_an_ack(pair: Pair) -> None:
    # Nagle's algorithm holds a small segment while an earlier one is not acknowledged:
    # in a busy room every reader's lines then waited for its delayed ACKs (bench: the
    # busy room's p50 went from 3 to 10 ms when the rewrite left TCP_NODELAY out).
    conn, _ = pair.connect()
    Outbox(conn, LagRules(sendq=SENDQ), Pace())
    assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# --------------------------------------------------------------------------- the room's order


def test_everyone_hears_the_room_in_the_same_order(pair: Pair, rooms: Rooms) -> None:
    room = rooms.make(LagRules(sendq=SENDQ))
    members = [join(rooms, room, pair) for _ in range(4)]
    lines = 200

    def talk(index: int, member: Member) -> None:
        for n in range(lines):
            room.say(member, b"%d:%d\n" % (index, n))

    threads = [threading.Thread(target=talk, args=(i, m)) for i, (m, _) in enumerate(members)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    heard = []
    for index, (_, peer) in enumerate(members):
        last = [b"%d:%d\n" % (other, lines - 1) for other in range(4) if other != index]
        for line in last:
            peer.read_all(line)
        heard.append([line for line in peer.received.split(b"\n") if SAID.fullmatch(line)])
    for a in range(4):
        for b in range(a + 1, 4):
            both = {b"%d" % a, b"%d" % b}  # lines neither said: both heard them, in one order
            seen_by_a = [line for line in heard[a] if line.split(b":")[0] not in both]
            seen_by_b = [line for line in heard[b] if line.split(b":")[0] not in both]
            assert seen_by_a == seen_by_b and len(seen_by_a) == 2 * lines


def test_the_welcome_comes_first_and_the_join_notice_goes_to_those_it_names(
    pair: Pair, rooms: Rooms
) -> None:
    room = rooms.make(LagRules(sendq=SENDQ))
    alice, alice_peer = join(rooms, room, pair)
    conn, bob_peer = pair.connect()
    bob = room.join(conn, conn.getpeername())
    assert bob is not None
    rooms.joined(room, bob)
    welcome = bob_peer.read_all(b"\n")
    assert welcome.startswith(f"* welcome, {bob.name}. here now: {alice.name}.".encode())
    assert alice_peer.read_all(b"joined\n").endswith(f"* {bob.name} joined\n".encode())
    assert b"joined" not in bob_peer.received


def test_a_newcomer_gets_what_is_said_after_it_joined_and_nothing_before(
    pair: Pair, rooms: Rooms
) -> None:
    room = rooms.make(LagRules(sendq=SENDQ))
    alice, _ = join(rooms, room, pair)
    bob, bob_peer = join(rooms, room, pair)
    room.say(alice, b"before carol\n")
    carol, carol_peer = join(rooms, room, pair)
    heard = bob_peer.read_all(f"* {carol.name} joined\n".encode())
    assert heard.index(b"before carol\n") < heard.index(b"joined\n"), "bob heard them out of order"
    room.say(bob, b"after carol\n")
    assert b"before carol" not in carol_peer.read_all(b"after carol\n")


def test_a_member_that_leaves_with_a_backlog_takes_its_writer_with_it(
    pair: Pair, rooms: Rooms
) -> None:
    room = rooms.make(LagRules(sendq=SENDQ, patience=60.0, stall=60.0))
    alice, _ = join(rooms, room, pair)
    fill(room, alice, SENDQ // 2)
    assert writers(), "a backlog has a writer"
    room.leave(alice)  # its writer was blocked in send(): it is woken and joined
    assert not writers() and alice.outbox.closed


# --------------------------------------------------------------------------- readers that lag


def test_a_sender_waits_while_a_reader_lags_and_reads_and_goes_on_once_it_caught_up(
    pair: Pair, rooms: Rooms
) -> None:
    room = rooms.make(LagRules(sendq=SENDQ, patience=60.0, stall=60.0, max_lag=60.0))
    alice, _ = join(rooms, room, pair)
    bob, bob_peer = join(rooms, room, pair, rcvbuf=SMALL_RCVBUF)
    _, carol_peer = join(rooms, room, pair)
    fill(room, bob, SENDQ)
    thread = saying(room, alice, b"while bob lags\n")
    carol_peer.read_all(b"while bob lags\n")  # the line went out at once...
    wait_for(lambda: room.pace.waiting == 1, "alice to wait for bob")  # ... and its sender waits
    assert thread.is_alive()
    bob_peer.read_all(b"while bob lags\n", timeout=10.0)  # bob reads: caught up, alice goes on
    thread.join(5.0)
    assert not thread.is_alive() and room.pace.waiting == 0
    assert not bob.outbox.closed


def test_a_reader_that_stopped_reading_makes_nobody_wait_and_is_cut_after_the_stall(
    pair: Pair, rooms: Rooms
) -> None:
    rules = LagRules(sendq=SENDQ, patience=0.05, stall=0.3, max_lag=60.0)
    room = rooms.make(rules)
    alice, _ = join(rooms, room, pair)
    bob, _ = join(rooms, room, pair, rcvbuf=SMALL_RCVBUF)  # it never reads
    _, carol_peer = join(rooms, room, pair)
    fill(room, bob, SENDQ)
    wait_for(lambda: bob.outbox.stalled_since > 0, "bob's writer to find it takes nothing")
    room.say(alice, b"hello\n")
    assert room.pace.waits == 0, "a reader that had stopped held the room up"
    carol_peer.read_all(b"hello\n")
    wait_for(lambda: bob.outbox.closed, "bob to be cut", timeout=rules.stall + 2.0)
    assert "nothing read for 0.3s" in bob.outbox.reason


def test_a_stalled_reader_that_does_not_lag_may_stay(pair: Pair, rooms: Rooms) -> None:
    rules = LagRules(sendq=SENDQ, patience=0.05, stall=0.2, max_lag=60.0)
    room = rooms.make(rules)
    alice, _ = join(rooms, room, pair, rcvbuf=SMALL_RCVBUF)  # it never reads
    while alice.outbox.backlog < SENDQ // 4:  # past what the kernel holds, not past sendq
        room.tell(alice, CHUNK)
    wait_for(
        lambda: alice.outbox.stalled_since and time.monotonic() - alice.outbox.stalled_since > 0.5,
        "it to have taken nothing for more than the stall",
    )
    assert not alice.outbox.closed and not alice.outbox.lagging_since


def test_a_reader_that_stops_while_a_sender_waits_for_it_holds_the_sender_for_patience_only(
    pair: Pair, rooms: Rooms
) -> None:
    rules = LagRules(sendq=SENDQ, patience=0.2, stall=60.0, max_lag=60.0)
    room = rooms.make(rules)
    alice, _ = join(rooms, room, pair)
    bob, _ = join(rooms, room, pair, rcvbuf=SMALL_RCVBUF)
    _, carol_peer = join(rooms, room, pair)
    fill(room, bob, SENDQ)  # bob's socket took bytes a moment ago: it is waited for, at first
    started = time.monotonic()
    room.say(alice, b"hello\n")
    waited = time.monotonic() - started
    assert room.pace.waits == 1 and bob.outbox.stalled_since and not bob.outbox.closed
    assert waited < rules.patience + 1.0, f"alice waited {waited:.1f}s for a reader that stopped"
    carol_peer.read_all(b"hello\n")


def test_a_stalled_reader_whose_backlog_passes_the_hard_limit_is_cut_at_once(
    pair: Pair, rooms: Rooms
) -> None:
    rules = LagRules(sendq=SENDQ, patience=0.05, stall=60.0, max_lag=60.0)
    room = rooms.make(rules)
    alice, _ = join(rooms, room, pair, rcvbuf=SMALL_RCVBUF)  # it never reads
    fill(room, alice, SENDQ)
    wait_for(lambda: alice.outbox.stalled_since > 0, "its writer to find it takes nothing")
    while not alice.outbox.closed:
        assert alice.outbox.backlog <= rules.hard * SENDQ, "past the hard limit and not cut"
        room.tell(alice, CHUNK)
    assert alice.outbox.reason == f"backlog over {rules.hard * SENDQ} bytes and nothing read"


def test_a_reader_that_reads_too_slowly_for_the_room_is_cut_after_max_lag(
    pair: Pair, rooms: Rooms
) -> None:
    rules = LagRules(sendq=SENDQ, stall=60.0, max_lag=0.5)
    room = rooms.make(rules)
    alice, _ = join(rooms, room, pair)
    bob, bob_peer = join(rooms, room, pair, rcvbuf=READER_RCVBUF)
    fill(room, bob, 3 * SENDQ)  # far more than it reads in max_lag at a trickle
    stop = threading.Event()

    def trickle() -> None:  # it reads, slowly: never stopped, never caught up
        while not stop.wait(0.01):
            try:
                bob_peer.read_some(2048)
            except OSError:
                return

    reader = threading.Thread(target=trickle, daemon=True)
    reader.start()
    try:
        started = time.monotonic()
        room.say(alice, b"hello\n")
        wait_for(lambda: bob.outbox.closed, "bob to be cut", timeout=rules.max_lag + 2.0)
        waited = time.monotonic() - started
    finally:
        stop.set()
        reader.join(5.0)
    assert bob.outbox.reason.endswith("for 0.5s")
    assert rules.max_lag * 0.8 <= waited < rules.max_lag + 2.0


def test_notices_and_replies_never_wait(pair: Pair, rooms: Rooms) -> None:
    room = rooms.make(LagRules(sendq=SENDQ, patience=60.0, stall=60.0, max_lag=60.0))
    alice, alice_peer = join(rooms, room, pair)
    bob, _ = join(rooms, room, pair, rcvbuf=SMALL_RCVBUF)
    fill(room, bob, SENDQ)
    assert len(room.pace.lagging) == 1
    room.tell(alice, b"a reply\n")
    room.who(alice)
    assert room.rename(alice, "alice") is None
    carol, _ = join(rooms, room, pair)
    room.leave(carol)
    assert room.pace.waits == 0
    alice_peer.read_all(f"* {carol.name} left\n".encode())


def test_closing_the_room_releases_a_waiting_line(pair: Pair, rooms: Rooms) -> None:
    room = rooms.make(LagRules(sendq=SENDQ, patience=60.0, stall=60.0, max_lag=60.0))
    alice, _ = join(rooms, room, pair)
    bob, _ = join(rooms, room, pair, rcvbuf=SMALL_RCVBUF)
    fill(room, bob, SENDQ)
    thread = saying(room, alice, b"hello\n")
    wait_for(lambda: room.pace.waiting == 1, "alice's line to wait for bob")
    room.close()
    thread.join(5.0)
    assert not thread.is_alive()
