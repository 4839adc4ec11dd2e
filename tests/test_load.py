"""The load generator's verdicts, tested: harness/load.py decides every stress test.

No chat server here. The test plays the server (a listening socket, and a thread that
answers /sync as the chat server does): it welcomes the swarm's clients, and writes to a
receiver a transcript, the bytes the chat server would send (`NAME: ` and the load line,
in the sender's order), with one fault made on purpose: a line lost, repeated, swapped,
altered, a sender cut midway, a line split across reads. Each test checks the verdict
`Swarm.fan_out` returns, in both of its modes: counting lines only, and checking every
sender's lines whole and in order.
"""

from __future__ import annotations

import re
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.clients import Client
from harness.lines import LINE_SIZE, last_notices, load_line
from harness.load import Swarm
from harness.results import Delivery
from tests.support import DEADLINE

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(30)]

LINES = 40  # load lines a sender sends in each test
QUIET = 0.3  # seconds without a line after which a fan-out with a line missing is over
MODES = [pytest.param(True, id="verify"), pytest.param(False, id="count")]


class FakeServer:
    """The server's end of each client's connection, and a thread that answers /sync.

    The test writes transcripts itself (`write`); the thread reads what the clients
    send (so that their lines never fill a buffer) and answers each ``/sync-N`` the
    way the chat server does, with an error line naming it.
    """

    def __init__(self, conns: list[socket.socket]) -> None:
        self.conns = conns
        self._selector = selectors.DefaultSelector()
        self._stop_r, self._stop_w = socket.socketpair()
        self._selector.register(self._stop_r, selectors.EVENT_READ)
        for conn in conns:
            self._selector.register(conn, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._answer, name="fake-server")
        self._thread.start()

    def _answer(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.fileobj is self._stop_r:
                    return
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._selector.unregister(conn)
                for token in re.findall(rb"/sync-\d+", data):
                    conn.sendall(b"* error: unknown command %s; /help lists them\n" % token)

    def close(self) -> None:
        self._stop_w.send(b"x")
        self._thread.join(DEADLINE)
        self._selector.close()
        for sock in (self._stop_r, self._stop_w, *self.conns):
            sock.close()


@dataclass
class FakeRoom:
    """The swarm's clients, and the fake server's end of each one's connection."""

    swarm: Swarm
    clients: list[Client]
    server: FakeServer

    def forwarded(self, sender: Client, seqs: range | list[int] = range(LINES)) -> list[bytes]:
        """`sender`'s load lines as the chat server forwards them to the others."""
        return [sender.name.encode() + b": " + load_line(sender.index, seq) for seq in seqs]

    def write(self, receiver: Client, lines: list[bytes]) -> None:
        self.server.conns[receiver.index].sendall(b"".join(lines))

    def cut(self, client: Client) -> None:
        """End `client`'s connection from the server's side: the server cut it."""
        self.server.conns[client.index].shutdown(socket.SHUT_RDWR)


MakeRoom = Callable[..., FakeRoom]


@pytest.fixture
def room() -> Iterator[MakeRoom]:
    """A swarm of `n` clients connected to a fake server, every one welcomed."""
    opened: list[tuple[Swarm, FakeServer]] = []

    def make(n: int = 2, pace: tuple[int, float] | None = None) -> FakeRoom:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(DEADLINE)
            swarm = Swarm(listener.getsockname()[:2])
            clients = swarm.connect(n, pace=pace, wait=False)
            by_port = {}
            for _ in clients:
                conn, (_, port) = listener.accept()
                by_port[port] = conn
        conns = [by_port[client.sock.getsockname()[1]] for client in clients]
        for k, conn in enumerate(conns, 1):
            conn.sendall(b"* welcome, guest-%d. here now: nobody else. type /help\n" % k)
        server = FakeServer(conns)
        opened.append((swarm, server))
        swarm.run_until(lambda: all(c.welcomed for c in clients), "the welcomes", DEADLINE)
        return FakeRoom(swarm, clients, server)

    yield make
    for swarm, server in opened:
        swarm.close()
        server.close()


def fan_out(room: FakeRoom, verify: bool, transcript: list[bytes]) -> Delivery:
    """Client 0 sends LINES lines; client 1, the receiver, gets `transcript` instead."""
    sender, receiver = room.clients[:2]
    room.write(receiver, transcript)
    return room.swarm.fan_out(
        [sender], LINES, receivers=[receiver], verify=verify, timeout=DEADLINE, quiet=QUIET
    )


# --------------------------------------------------------------------------- one sender


@pytest.mark.parametrize("verify", MODES)
def test_a_complete_transcript_is_a_pass(room: MakeRoom, verify: bool) -> None:
    fake = room()
    delivery = fan_out(fake, verify, fake.forwarded(fake.clients[0]))
    receiver = fake.clients[1].index
    assert delivery.received == delivery.expected == {receiver: LINES}
    assert not (delivery.lost or delivery.extra or delivery.disordered or delivery.cut)
    assert delivery.checked is verify


@pytest.mark.parametrize("verify", MODES)
def test_a_lost_line_is_lost_in_either_mode(room: MakeRoom, verify: bool) -> None:
    fake = room()
    lines = fake.forwarded(fake.clients[0])
    del lines[17]
    delivery = fan_out(fake, verify, lines)
    assert delivery.lost == {fake.clients[1].index: 1}
    assert bool(delivery.disordered) is verify  # checking sees where: 18 came after 16


@pytest.mark.parametrize("verify", MODES)
def test_a_duplicated_line_is_caught_in_either_mode(room: MakeRoom, verify: bool) -> None:
    fake = room()
    lines = fake.forwarded(fake.clients[0])
    lines.insert(10, lines[9])
    delivery = fan_out(fake, verify, lines)
    receiver = fake.clients[1].index
    assert delivery.extra == {receiver: 1}, delivery.summary()
    assert not delivery.lost
    assert bool(delivery.disordered) is verify


def test_a_duplicate_that_makes_up_for_a_lost_line_is_caught_by_checking_only(
    room: MakeRoom,
) -> None:
    """Counting cannot see it (the count is right): why the stress tests also check."""
    fake = room()
    lines = fake.forwarded(fake.clients[0])
    lines[25] = lines[24]  # 24 twice, 25 never
    counted = fan_out(fake, False, lines)
    assert not (counted.lost or counted.extra or counted.disordered)
    assert not counted.checked  # so the verdict says it did not look

    fake = room()
    lines = fake.forwarded(fake.clients[0])
    lines[25] = lines[24]
    checked = fan_out(fake, True, lines)
    assert checked.disordered == {fake.clients[1].index}, checked.summary()


def test_a_reordered_line_is_disorder(room: MakeRoom) -> None:
    fake = room()
    lines = fake.forwarded(fake.clients[0])
    lines[5], lines[6] = lines[6], lines[5]
    delivery = fan_out(fake, True, lines)
    assert delivery.disordered == {fake.clients[1].index}
    assert not (delivery.lost or delivery.extra)


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda line: line.replace(b".", b",", 1), id="padding"),
        pytest.param(lambda line: line.replace(b":0000", b":9999", 1), id="sequence"),
        pytest.param(lambda line: line.replace(b":00000", b":x0000", 1), id="digit-to-letter"),
        pytest.param(lambda line: line.replace(b"guest-1", b"guest-7", 1), id="name"),
    ],
)
def test_an_altered_line_is_disorder(room: MakeRoom, alter: Callable[[bytes], bytes]) -> None:
    fake = room()
    lines = fake.forwarded(fake.clients[0])
    lines[30] = alter(lines[30])
    assert lines[30] != fake.forwarded(fake.clients[0])[30]
    delivery = fan_out(fake, True, lines)
    assert delivery.disordered == {fake.clients[1].index}, delivery.summary()


@pytest.mark.parametrize("verify", MODES)
def test_the_servers_own_lines_between_load_lines_are_not_load(
    room: MakeRoom, verify: bool
) -> None:
    fake = room()
    lines = fake.forwarded(fake.clients[0])
    lines.insert(12, b"* guest-9 joined\n")
    lines.insert(30, b"* guest-9 left\n")
    delivery = fan_out(fake, verify, lines)
    assert delivery.received == delivery.expected
    assert not (delivery.lost or delivery.extra or delivery.disordered)
    notices = [line for line in fake.clients[1].recent if b"guest-9" in line]
    assert notices == [b"* guest-9 joined", b"* guest-9 left"]


@pytest.mark.parametrize("verify", MODES)
@pytest.mark.parametrize("faulty", [False, True], ids=["whole", "with-a-duplicate"])
def test_lines_split_across_reads_anywhere_are_counted_and_checked_once_whole(
    room: MakeRoom, verify: bool, faulty: bool
) -> None:
    # 7 bytes a read: every line, and most marks, are split between reads somewhere.
    fake = room(pace=(7, 0.0005))
    assert (len(fake.clients[0].name) + 2 + LINE_SIZE) % 7, "7 must not divide a line"
    lines = fake.forwarded(fake.clients[0])
    if faulty:
        lines.insert(20, lines[19])
    delivery = fan_out(fake, verify, lines)
    receiver = fake.clients[1].index
    assert delivery.received == {receiver: LINES + faulty}
    assert delivery.extra == ({receiver: 1} if faulty else {})
    assert delivery.disordered == ({receiver} if faulty and verify else set())


# --------------------------------------------------------------------------- several senders


@pytest.mark.parametrize("verify", MODES)
def test_a_sender_cut_midway_loses_its_unsent_lines_and_nothing_else_is_wrong(
    room: MakeRoom, verify: bool
) -> None:
    """Three clients, each sending and receiving. The server cuts client 0 after it
    forwarded 15 of its lines: those arrive, in order, and its other 25 are lost at the
    others; client 0, cut, is not counted as losing anything."""
    fake = room(3)
    a, b, c = fake.clients
    fake.write(b, [*fake.forwarded(a, range(15)), *fake.forwarded(c)])
    fake.write(c, [*fake.forwarded(b)[:20], *fake.forwarded(a, range(15)), *fake.forwarded(b)[20:]])
    fake.write(a, fake.forwarded(b)[:3])
    fake.cut(a)
    delivery = fake.swarm.fan_out(fake.clients, LINES, verify=verify, timeout=DEADLINE, quiet=QUIET)
    assert delivery.cut == {a.index}
    assert delivery.lost == {b.index: LINES - 15, c.index: LINES - 15}, delivery.summary()
    assert not (delivery.extra or delivery.disordered), delivery.summary()
    assert "cut senders never sent" in delivery.summary()


def test_interleaved_senders_are_each_checked_in_their_own_order(room: MakeRoom) -> None:
    fake = room(3)
    a, b, c = fake.clients
    from_a, from_b = fake.forwarded(a), fake.forwarded(b)
    mixed = [line for pair in zip(from_a, from_b, strict=True) for line in pair]
    fake.write(c, mixed)
    fake.write(a, from_b)
    fake.write(b, from_a[:9] + from_a[10:])  # b misses a's line 9
    delivery = fake.swarm.fan_out(
        [a, b], LINES, receivers=fake.clients, timeout=DEADLINE, quiet=QUIET
    )
    assert delivery.lost == {b.index: 1}
    assert delivery.disordered == {b.index}, delivery.summary()


# --------------------------------------------------------------------------- the verdict itself


def test_lost_and_extra_are_per_receiver_and_skip_the_cut() -> None:
    delivery = Delivery(
        expected={0: 10, 1: 10, 2: 10, 3: 10},
        received={0: 10, 1: 7, 2: 12, 3: 4},
        disordered=frozenset(),
        cut=frozenset({3}),
        elapsed=1.0,
        checked=False,
    )
    assert delivery.lost == {1: 3}
    assert delivery.extra == {2: 2}
    assert delivery.delivered == 33
    assert "lost 3" in delivery.summary() and "extra 2" in delivery.summary()


# Lines as a server writes them: its own ("* ..."), chat lines, and lines that only look alike.
LINES_OF_A_BLOCK = st.lists(
    st.sampled_from([b"* a joined", b"* b left", b"*", b"guest-1: * not a notice", b"x", b" * y"]),
    max_size=40,
)


@given(lines=LINES_OF_A_BLOCK, n=st.integers(0, 20))
def test_the_last_notices_of_a_block_are_found_from_its_end(lines: list[bytes], n: int) -> None:
    block = b"".join(line + b"\n" for line in lines)
    notices = [line for line in lines if line.startswith(b"* ")]
    assert block.count(b"\n* ") + block.startswith(b"* ") == len(notices)
    assert last_notices(block, n) == (notices[-n:] if n else [])
