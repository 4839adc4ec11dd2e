"""The room's delivery and its rules for readers that lag (room.py, outbox.py, lag.py).

Real TCP connections on loopback, a room with no server around it: each member is
the server's end of a connection, and the test holds the other end, reading it
when and as fast as the test says. The rules' clocks are made short here (LagRules)
so that a test of "cut after so long" takes a fraction of a second.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from section_a.lag import LagRules
from section_a.outbox import SHARE_MIN, SHARE_READERS, Flusher, Outbox, SharedPages
from section_a.protocol import LineFramer
from section_a.reader import LineReader
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


def make_room(rules: LagRules) -> ChatRoom:
    room = ChatRoom(rules=rules)
    room.start()
    return room


@pytest.fixture
def rooms() -> Iterator[list[ChatRoom]]:
    started: list[ChatRoom] = []
    yield started
    for room in started:
        room.close()
        room.stop(5.0)


def join(room: ChatRoom, pair: Pair, rcvbuf: int = 0) -> tuple[Member, Peer]:
    conn, peer = pair.connect(rcvbuf)
    member = room.join(conn, conn.getpeername())
    assert member is not None
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


def test_a_reader_that_keeps_up_gets_every_send_at_once(pair: Pair, flusher: Flusher) -> None:
    conn, peer = pair.connect()
    outbox = Outbox(conn, LagRules(sendq=SENDQ), flusher)
    for i in range(10):
        assert outbox.send(b"line %d\n" % i) is False
    assert outbox.backlog == 0
    assert peer.read_all(b"line 9\n") == b"".join(b"line %d\n" % i for i in range(10))


def test_what_the_socket_cannot_take_waits_in_order_and_goes_when_it_drains(
    pair: Pair, flusher: Flusher
) -> None:
    conn, peer = pair.connect(SMALL_RCVBUF)
    outbox = Outbox(conn, LagRules(sendq=SENDQ), flusher)
    sent = [b"%06d" % i + LINE for i in range(3000)]  # ~300 KB: far past the kernel's buffers
    for line in sent:
        outbox.send(line)
    assert outbox.backlog > 0, "the kernel took everything: the test needs a bigger burst"
    assert peer.read_all(sent[-1]) == b"".join(sent)
    wait_for(lambda: outbox.backlog == 0, "the backlog to drain")


def test_a_block_handed_over_as_pages_waits_in_order_like_any_other(
    pair: Pair, flusher: Flusher
) -> None:
    conn, peer = pair.connect(SMALL_RCVBUF)
    outbox = Outbox(conn, LagRules(sendq=SENDQ), flusher)
    block = b"".join(b"%06d" % i + LINE for i in range(3000))  # far past the kernel's buffers
    with SharedPages(block, SHARE_READERS) as pages:
        assert pages >= 0, "a block this big is shared"
        outbox.send(block, pages)  # a blocking socket would hang here: nobody reads yet
    outbox.send(b"after\n")
    assert outbox.backlog > 0, "the kernel took everything: the test needs a bigger block"
    assert peer.read_all(b"after\n") == block + b"after\n"


def test_an_idle_reader_waits_through_the_timeout_its_socket_has_for_sending() -> None:
    class Idle:
        """A client's socket in timeout mode (outbox.py), idle for two of its timeouts."""

        timeouts = 2

        def recv(self, size: int) -> bytes:
            if self.timeouts:
                self.timeouts -= 1
                raise TimeoutError("timed out")
            return b"at last\n"

    reader = LineReader(Idle(), LineFramer(100))  # type: ignore[arg-type]
    assert reader.read() == [b"at last"]


def test_a_reader_lags_past_sendq_until_it_is_back_under_half(pair: Pair, flusher: Flusher) -> None:
    # Not the tiny buffer: reading it 4 KiB at a time, the window would reopen too little
    # for the kernel to say so, and the sender would wait for its zero-window probe.
    conn, peer = pair.connect(READER_RCVBUF)
    outbox = Outbox(conn, LagRules(sendq=SENDQ), flusher)
    caught_up: list[int] = []
    told = threading.Event()

    def on_caught_up(box: Outbox) -> None:
        caught_up.append(box.backlog)
        told.set()

    outbox.on_caught_up = on_caught_up
    while not outbox.send(CHUNK):
        assert outbox.backlog <= SENDQ, "it was past sendq and did not lag"
    assert outbox.backlog > SENDQ and outbox.lagging_since > 0
    deadline = time.monotonic() + 10.0
    while not told.is_set():
        assert time.monotonic() < deadline, "it never caught up"
        # The flusher says so just after its last write: one that stopped lagging is about
        # to, and the reader may have read everything by then, so it reads with a short wait.
        assert outbox.lagging_since or told.wait(1.0), "it stopped lagging before it caught up"
        peer.read_some(READ_SIZE, timeout=0.1)
    assert caught_up[0] <= SENDQ // 2 and outbox.lagging_since == 0


def test_a_cut_reader_loses_its_backlog_and_its_peer_sees_the_end(
    pair: Pair, flusher: Flusher
) -> None:
    conn, peer = pair.connect(SMALL_RCVBUF)
    outbox = Outbox(conn, LagRules(sendq=SENDQ), flusher)
    fill_box = b"a" * 200_000
    outbox.send(fill_box)
    outbox.cut("test")
    assert (outbox.closed, outbox.backlog, outbox.reason) == (True, 0, "test")
    assert outbox.send(b"after\n") is False
    peer.sock.settimeout(5.0)
    while data := peer.sock.recv(1 << 16):  # what the kernel had, then EOF: never the rest
        peer.received += data
    assert len(peer.received) < len(fill_box) and b"after" not in peer.received


# --------------------------------------------------------------------------- the room's order


def test_everyone_hears_the_room_in_the_same_order(pair: Pair, rooms: list[ChatRoom]) -> None:
    room = make_room(LagRules(sendq=SENDQ))
    rooms.append(room)
    members = [join(room, pair) for _ in range(4)]
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


class CountingOutbox:
    """Stands in for a member's outbox, counting the room's sends to it."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.sends: list[bytes] = []

    def send(self, data: bytes, pages: int = -1) -> bool:
        self.sends.append(data)
        return self.outbox.send(data, pages)

    def __getattr__(self, name: str) -> object:  # everything else is the real outbox's
        return getattr(self.outbox, name)


def test_lines_said_while_the_room_is_busy_reach_each_reader_in_one_send(
    pair: Pair, rooms: list[ChatRoom]
) -> None:
    room = make_room(LagRules(sendq=SENDQ))
    rooms.append(room)
    members = [join(room, pair) for _ in range(4)]
    counted = []
    for member, _ in members:
        counting = CountingOutbox(member.outbox)
        member.outbox = counting  # type: ignore[assignment]
        counted.append(counting)
    with room._lock:  # the room is busy: three members say a line meanwhile
        threads = [saying(room, m, b"%d:1\n" % i) for i, (m, _) in enumerate(members[:3])]
        wait_for(lambda: len(room._queue) == 3, "three lines queued for the room")
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
    everything = b"0:1\n1:1\n2:1\n"
    assert counted[3].sends == [everything], "the lines went to the reader one send each"
    for index in range(3):  # each sender got the other two, in the room's order, together
        assert counted[index].sends == [everything.replace(b"%d:1\n" % index, b"")]
    for index, (_, peer) in enumerate(members):
        peer.read_all(b"2:1\n" if index != 2 else b"1:1\n")


class Handing:
    """Records every sendfile(): which socket was handed pages, and from which memfd."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.handed: list[tuple[int, int]] = []
        self._sendfile = os.sendfile
        monkeypatch.setattr(os, "sendfile", self.sendfile)

    def sendfile(self, out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        self.handed.append((out_fd, in_fd))
        return self._sendfile(out_fd, in_fd, offset, count)


@pytest.mark.parametrize(("readers", "shared"), [(SHARE_READERS, True), (SHARE_READERS - 1, False)])
def test_a_big_block_for_enough_readers_is_handed_to_them_as_the_same_pages(
    pair: Pair,
    rooms: list[ChatRoom],
    monkeypatch: pytest.MonkeyPatch,
    readers: int,
    shared: bool,
) -> None:
    room = make_room(LagRules(sendq=SENDQ))
    rooms.append(room)
    (sender, _), *others = [join(room, pair) for _ in range(readers + 1)]
    handing = Handing(monkeypatch)
    small = b"s" * (SHARE_MIN - 2) + b"\n"  # one byte short
    room.say(sender, small)
    assert handing.handed == [], "a block under SHARE_MIN was shared"
    big = b"b" * SHARE_MIN + b"\n"
    room.say(sender, big)
    for _, peer in others:
        assert peer.read_all(big).endswith(small + big)
    if shared:
        assert sorted(out for out, _ in handing.handed) == sorted(m.outbox.fd for m, _ in others)
        assert len({memfd for _, memfd in handing.handed}) == 1, "each reader had its own copy"
    else:
        assert handing.handed == [], f"shared with fewer than {SHARE_READERS} readers"


def test_with_no_descriptor_left_for_a_memfd_each_reader_gets_a_copy(
    pair: Pair, rooms: list[ChatRoom], monkeypatch: pytest.MonkeyPatch
) -> None:
    room = make_room(LagRules(sendq=SENDQ))
    rooms.append(room)
    (sender, _), *readers = [join(room, pair) for _ in range(SHARE_READERS + 1)]
    handing = Handing(monkeypatch)

    def no_descriptor_left(name: str, flags: int = 0) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "memfd_create", no_descriptor_left)
    big = b"b" * SHARE_MIN + b"\n"
    room.say(sender, big)
    for _, peer in readers:
        assert peer.read_all(big).endswith(big)
    assert handing.handed == []


def test_joins_and_leaves_while_the_room_is_busy_reach_each_reader_in_one_send(
    pair: Pair, rooms: list[ChatRoom]
) -> None:
    room = make_room(LagRules(sendq=SENDQ))
    rooms.append(room)
    (alice, _), (bob, _), (carol, _) = [join(room, pair) for _ in range(3)]
    counting = CountingOutbox(alice.outbox)
    alice.outbox = counting  # type: ignore[assignment]
    with room._lock:  # the room is busy writing: two members leave and two arrive meanwhile
        arriving = [pair.connect()[0] for _ in range(2)]
        threads = [threading.Thread(target=room.leave, args=(m,)) for m in (bob, carol)]
        threads += [threading.Thread(target=room.join, args=(c, c.getpeername())) for c in arriving]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(room._queue) == 4, "two leave and two join notices queued")
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
    assert len(counting.sends) == 1, f"alice was told them in {len(counting.sends)} sends"
    told = sorted(counting.sends[0].splitlines())
    newcomers = sorted(m.name for m in room._members if m not in (alice,))
    assert told == sorted(
        [b"* %s left" % m.name.encode() for m in (bob, carol)]
        + [b"* %s joined" % name.encode() for name in newcomers]
    )


def test_the_welcome_comes_first_and_the_join_notice_goes_to_those_it_names(
    pair: Pair, rooms: list[ChatRoom]
) -> None:
    room = make_room(LagRules(sendq=SENDQ))
    rooms.append(room)
    alice, alice_peer = join(room, pair)
    conn, bob_peer = pair.connect()
    bob = room.join(conn, conn.getpeername())
    assert bob is not None
    welcome = bob_peer.read_all(b"\n")
    assert welcome.startswith(f"* welcome, {bob.name}. here now: {alice.name}.".encode())
    assert alice_peer.read_all(b"joined\n").endswith(f"* {bob.name} joined\n".encode())
    assert b"joined" not in bob_peer.received


def test_a_newcomer_gets_what_was_queued_after_it_joined_and_nothing_before(
    pair: Pair, rooms: list[ChatRoom]
) -> None:
    room = make_room(LagRules(sendq=SENDQ))
    rooms.append(room)
    alice, _ = join(room, pair)
    bob, bob_peer = join(room, pair)
    with room._lock:  # the room is busy: alice's line waits in the queue as carol joins
        thread = saying(room, alice, b"before carol\n")
        wait_for(lambda: len(room._queue) == 1, "alice's line queued for the room")
        conn, carol_peer = pair.connect()
        carol = room.join(conn, conn.getpeername())  # the room's lock is re-entrant
        assert carol is not None
    thread.join(5)
    heard = bob_peer.read_all(f"* {carol.name} joined\n".encode())
    assert heard.index(b"before carol\n") < heard.index(b"joined\n"), "bob heard them out of order"
    room.say(bob, b"after carol\n")
    assert b"before carol" not in carol_peer.read_all(b"after carol\n")


# --------------------------------------------------------------------------- readers that lag


def test_a_sender_waits_while_a_reader_lags_and_goes_on_once_it_caught_up(
    pair: Pair, rooms: list[ChatRoom]
) -> None:
    room = make_room(LagRules(sendq=SENDQ, stall=60.0, max_lag=60.0))
    rooms.append(room)
    alice, _ = join(room, pair)
    bob, bob_peer = join(room, pair, rcvbuf=SMALL_RCVBUF)
    _, carol_peer = join(room, pair)
    fill(room, bob, SENDQ)
    thread = saying(room, alice, b"while bob lags\n")
    carol_peer.read_all(b"while bob lags\n")  # the line went out at once...
    wait_for(lambda: room.waiting == 1, "alice to wait for bob")  # ... and its sender waits
    assert thread.is_alive()
    bob_peer.read_all(b"while bob lags\n", timeout=10.0)  # bob reads: caught up, alice goes on
    thread.join(5.0)
    assert not thread.is_alive() and room.waiting == 0
    assert not bob.outbox.closed


def test_a_reader_that_stopped_reading_is_cut_without_making_anyone_wait(
    pair: Pair, rooms: list[ChatRoom]
) -> None:
    rules = LagRules(sendq=SENDQ, stall=0.2, max_lag=60.0)
    room = make_room(rules)
    rooms.append(room)
    alice, _ = join(room, pair)
    bob, _ = join(room, pair, rcvbuf=SMALL_RCVBUF)  # it never reads
    _, carol_peer = join(room, pair)
    fill(room, bob, SENDQ)
    wait_for(
        lambda: time.monotonic() - bob.outbox.last_taken > rules.stall,
        "bob's socket to take nothing for longer than the stall",
    )
    room.say(alice, b"hello\n")
    assert room.waits == 0, "a reader that had stopped held the room up"
    assert bob.outbox.closed and "nothing read for 0.2s" in bob.outbox.reason
    carol_peer.read_all(b"hello\n")


def test_a_reader_that_stops_while_a_sender_waits_for_it_is_cut_after_the_stall(
    pair: Pair, rooms: list[ChatRoom]
) -> None:
    rules = LagRules(sendq=SENDQ, stall=0.3, max_lag=60.0)
    room = make_room(rules)
    rooms.append(room)
    alice, _ = join(room, pair)
    bob, _ = join(room, pair, rcvbuf=SMALL_RCVBUF)
    _, carol_peer = join(room, pair)
    fill(room, bob, SENDQ)  # bob's socket took bytes a moment ago: it is waited for, at first
    started = time.monotonic()
    room.say(alice, b"hello\n")
    waited = time.monotonic() - started
    assert room.waits >= 1 and bob.outbox.closed and "nothing read" in bob.outbox.reason
    assert waited < rules.stall + 2.0, f"alice waited {waited:.1f}s for a reader that stopped"
    carol_peer.read_all(b"hello\n")


def test_a_reader_that_reads_too_slowly_for_the_room_is_cut_after_max_lag(
    pair: Pair, rooms: list[ChatRoom]
) -> None:
    rules = LagRules(sendq=SENDQ, stall=60.0, max_lag=0.5)
    room = make_room(rules)
    rooms.append(room)
    alice, _ = join(room, pair)
    bob, bob_peer = join(room, pair, rcvbuf=SMALL_RCVBUF)
    fill(room, bob, 4 * SENDQ)  # far more than it reads in max_lag at a trickle
    stop = threading.Event()

    def trickle() -> None:  # it reads, slowly: never stopped, never caught up
        while not stop.wait(0.02):
            try:
                bob_peer.read_some(512)
            except OSError:
                return

    reader = threading.Thread(target=trickle, daemon=True)
    reader.start()
    try:
        started = time.monotonic()
        room.say(alice, b"hello\n")
        waited = time.monotonic() - started
    finally:
        stop.set()
        reader.join(5.0)
    assert bob.outbox.closed and bob.outbox.reason.endswith("for 0.5s")
    assert rules.max_lag * 0.9 <= waited < rules.max_lag + 2.0


def test_notices_and_replies_never_wait(pair: Pair, rooms: list[ChatRoom]) -> None:
    room = make_room(LagRules(sendq=SENDQ, stall=60.0, max_lag=60.0))
    rooms.append(room)
    alice, alice_peer = join(room, pair)
    bob, _ = join(room, pair, rcvbuf=SMALL_RCVBUF)
    fill(room, bob, SENDQ)
    room.tell(alice, b"a reply\n")
    room.who(alice)
    assert room.rename(alice, "alice") is None
    carol, _ = join(room, pair)
    room.leave(carol)
    assert room.waits == 0
    alice_peer.read_all(f"* {carol.name} left\n".encode())


def test_closing_the_room_releases_a_waiting_line(pair: Pair, rooms: list[ChatRoom]) -> None:
    room = make_room(LagRules(sendq=SENDQ, stall=60.0, max_lag=60.0))
    alice, _ = join(room, pair)
    bob, _ = join(room, pair, rcvbuf=SMALL_RCVBUF)
    fill(room, bob, SENDQ)
    thread = saying(room, alice, b"hello\n")
    wait_for(lambda: room.waiting == 1, "alice's line to wait for bob")
    room.close()
    thread.join(5.0)
    assert not thread.is_alive()
    room.stop(5.0)


def test_the_kernel_send_buffer_is_bounded_by_sendq(pair: Pair, flusher: Flusher) -> None:
    conn, _ = pair.connect()
    autotuned = conn.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    Outbox(conn, LagRules(sendq=SENDQ), flusher)
    # Linux doubles what is asked (for its own bookkeeping), and reports the doubled size.
    assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * SENDQ != autotuned
