"""Load for the chat servers: many clients driven from one thread, and what they measured.

A thread per simulated client would make the test process the bottleneck (and the
thing measured). So every client here is a non-blocking socket in one selector
(epoll), driven by one loop in the calling thread:

    Swarm.connect(n) --batches--> sockets in one selector <--- run_until(done, deadline)
         |                               |  readable: recv, count marked lines per block
         |                               |  writable: send what a sender has queued
         v                               |  timers:   steady senders, paced readers
    sync / fan_out / steady / churn -----+--> Delivery: per receiver, lines expected and
                                              received, order, who was cut, lines/s, latency

Every line a load client sends is 64 bytes and carries a mark, its sender and its
sequence number, and in steady() runs the time it was sent (`time.monotonic_ns()`:
sender and receiver are this one process, so the clocks agree):

    ~L00007:0000042:0000012345678901234:...........................\\n

The server delivers it to the others as ``guest-8: ~L00007:...``. A receiver counts
`MARK` in each block of whole lines (bytes.count: about 1 GB/s), and looks at lines
one by one only where a block holds a line of the server's own (they all start with
``*``, found at memchr speed). Checking what arrived costs little more: in a fan-out
every sender's lines are known in advance, exactly as the server will forward them,
so each run of lines from one sender is compared with the expected bytes as a whole
(bytes.startswith, at memcmp speed); a lost, repeated, reordered or altered line
breaks a run. Only steady() parses each line, to read the time it was sent.

Every wait has a deadline, every loop ends, and clients only ever connect to the
address they are given (loopback in the tests). Used by the stress tests and by
`make bench` alike: nothing here imports pytest.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import re
import selectors
import socket
import statistics
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

Address = tuple[str, int]

MARK = b"~L"  # starts the text of every load line; appears in nothing else the server sends
LINE_SIZE = 64  # bytes in one load line, its newline included
BATCH = 200  # connections opened at once: far below the listen backlog (SOMAXCONN)
RECV_SIZE = 64 * 1024  # bytes read at once; under malloc's mmap threshold, so no page faults
TIMEOUT = 30.0  # seconds: the default deadline of every wait
DRAIN = 5.0  # seconds steady() waits for the last lines once its senders stop
QUIET = 10.0  # seconds without a load line after which a fan-out is over (longer than a pause)
RECENT = 16  # lines of the server's own that a client keeps, for assertions and messages
# The receive buffer of readers that must all read equally fast (the congestion tests). Left to
# autotune, Linux may keep one connection's window small, and that client then lags alone,
# which the room rightly cuts (docs/reliability.md). Set before connect, a fixed buffer gives
# every reader the same window.
READER_RCVBUF = 1024 * 1024

_STAMPED = re.compile(rb"~L(\d{5}):(\d{7}):(\d{19}):")
_WELCOME = re.compile(rb"^\* welcome, (\S+)\.")
_STARTED = (0, errno.EINPROGRESS)  # a non-blocking connect that is done, or under way


def load_line(sender: int, seq: int, stamp_ns: int = 0) -> bytes:
    """One load line: mark, sender, sequence number, send time, padding to LINE_SIZE.

    >>> line = load_line(7, 42, 12345)
    >>> len(line), line[:36]
    (64, b'~L00007:0000042:0000000000000012345:')
    """
    head = b"~L%05d:%07d:%019d:" % (sender, seq, stamp_ns)
    return head.ljust(LINE_SIZE - 1, b".") + b"\n"


def stuck_reader(address: Address, rcvbuf: int = 4096) -> socket.socket:
    """A connected socket that is never read: its window closes after a few KiB.

    SO_RCVBUF is set before connect, so the window is small from the handshake on
    (the kernel doubles the value for its own bookkeeping); 0 keeps the default.
    """
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(address)
    return sock


def read_until_eof(sock: socket.socket, timeout: float = TIMEOUT) -> int:
    """Read and discard until the peer closes (FIN or reset); return the bytes read.

    Fails after `timeout` seconds without the close.
    """
    deadline = time.monotonic() + timeout
    total = 0
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(RECV_SIZE)
        except TimeoutError:
            break
        except ConnectionResetError:
            return total
        if not data:
            return total
        total += len(data)
    raise AssertionError(f"no EOF within {timeout:.1f}s ({total} bytes read)")


def abort(sock: socket.socket) -> None:
    """Close `sock` with a reset (RST) instead of a FIN: a peer that vanishes mid-stream."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _last_notices(block: bytes, n: int) -> list[bytes]:
    """The last `n` lines of the server's own ("* ...") in `block`, oldest first."""
    if not n:
        return []
    pieces = block.rsplit(b"\n* ", n)  # from the end, in C: each piece after the first is one
    found = [b"* " + piece.partition(b"\n")[0] for piece in pieces[1:]]
    if len(pieces) <= n and block.startswith(b"* "):  # room for one more: the very first line
        found.insert(0, pieces[0].partition(b"\n")[0])
    return found


def _family(address: Address) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Delivery:
    """What one run delivered, per receiver (keyed by `Client.index`)."""

    expected: dict[int, int]  # load lines each receiver should get
    received: dict[int, int]  # load lines each receiver got
    disordered: frozenset[int]  # receivers that got a sender's lines out of order, or altered
    cut: frozenset[int]  # receivers that got EOF (or a reset) from the server
    elapsed: float  # seconds from the first line sent to the last one received
    checked: bool  # whether order (and content) were checked, or lines only counted
    latencies_ns: tuple[int, ...] = ()  # send-to-receive time of every line (steady only)

    @property
    def lost(self) -> dict[int, int]:
        """Lines missing at receivers that were not cut (a cut sender's unread lines too)."""
        return {
            i: self.expected[i] - self.received[i]
            for i in self.expected
            if i not in self.cut and self.received[i] < self.expected[i]
        }

    @property
    def extra(self) -> dict[int, int]:
        """Lines past the expected count, by receiver: duplicated (or from elsewhere).

        The one check of content a count-only run makes. It cannot see a duplicate that
        makes up for a lost line (the count is right); only a checked run (`fan_out` with
        `verify`, `steady`) sees those, as disorder.
        """
        return {i: self.received[i] - n for i, n in self.expected.items() if self.received[i] > n}

    @property
    def delivered(self) -> int:
        return sum(self.received.values())

    @property
    def rate(self) -> float:
        """Delivered lines per second, over all receivers."""
        return self.delivered / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self, quantile: float) -> float:
        """The `quantile` (0.5, 0.99; 1.0 for the maximum) of delivery latency, in ms."""
        if not self.latencies_ns:
            raise ValueError("no latencies: only steady() stamps its lines")
        if quantile >= 1.0 or len(self.latencies_ns) < 2:
            return max(self.latencies_ns) / 1e6
        cuts = statistics.quantiles(self.latencies_ns, n=1000, method="inclusive")
        return cuts[round(quantile * 1000) - 1] / 1e6

    def summary(self) -> str:
        text = (
            f"{self.delivered:,} lines delivered in {self.elapsed:.2f}s "
            f"({self.rate:,.0f} lines/s); lost {sum(self.lost.values()):,}"
            f"{' (counting lines cut senders never sent)' if self.lost and self.cut else ''}, "
            f"extra {sum(self.extra.values()):,}, cut {len(self.cut)}, "
            f"out of order {len(self.disordered) if self.checked else 'unchecked'}"
        )
        if self.latencies_ns:
            text += (
                f"; latency p50 {self.latency_ms(0.5):.1f} ms, p99 {self.latency_ms(0.99):.1f} ms,"
                f" max {self.latency_ms(1.0):.1f} ms"
            )
        return text


@dataclass(frozen=True)
class Churn:
    """What `Swarm.churn` did: cycles completed and failed, and how fast."""

    completed: int
    failures: tuple[str, ...]  # why each failed cycle failed
    elapsed: float

    @property
    def rate(self) -> float:
        """Completed connect-send-disconnect cycles per second."""
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0


# --------------------------------------------------------------------------- clients

# How load lines are examined as they arrive: counted only; compared with the expected
# streams (fan_out); or parsed one by one for order and send time (steady).
COUNT, VERIFY, LATENCY = "count", "verify", "latency"


@dataclass(eq=False)
class Client:
    """One simulated client of a `Swarm`: a non-blocking socket and what it has read."""

    index: int  # its number in the swarm; also its sender number in load lines
    sock: socket.socket
    pace: tuple[int, float] | None = None  # read at most (bytes, every seconds); None: at once
    vanish_after: int = 0  # reset the connection once this many load lines arrived (0: never)
    name: str = ""  # from the welcome line
    first: bytes | None = None  # the first line it got: the welcome, or a refusal
    notices: int = 0  # lines the server itself wrote ("* ..."): welcome, notices, replies
    recent: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECENT))  # last notices
    load_lines: int = 0  # load lines received since the current run began
    eof: bool = False  # closed: by the server (EOF, reset), or by the swarm (`closed_by_us`)
    closed_by_us: bool = False
    # -- the loop's bookkeeping
    tail: bytes = b""  # the start of a line whose newline has not arrived
    out: deque[memoryview] = field(default_factory=deque)  # queued for sending
    events: int = 0  # what the selector watches for
    token: bytes | None = None  # a reply it waits for (see Swarm.sync)
    target: int = 0  # load lines it waits for in the current run
    next_seq: dict[bytes, int] = field(default_factory=dict)  # sender -> line expected next
    last_seq: dict[bytes, bytes] = field(default_factory=dict)  # sender -> last seq seen
    disordered: int = 0
    latencies: list[int] = field(default_factory=list)
    on_first: Callable[[Client], None] | None = None  # called once its first line is in
    on_eof: Callable[[Client], None] | None = None  # called once it is closed, either way

    @property
    def welcomed(self) -> bool:
        return bool(self.name)

    @property
    def cut(self) -> bool:
        """The server closed it (not the swarm)."""
        return self.eof and not self.closed_by_us

    @property
    def satisfied(self) -> bool:
        return self.first is not None and self.token is None and self.load_lines >= self.target


class Swarm:
    """Many chat clients of one server, driven by one selector loop in the calling thread.

    Create clients with `connect`; each operation (`sync`, `fan_out`, `steady`,
    `churn`, `run_until`) then pumps the loop until its condition holds or its
    deadline passes. Every client reads as fast as it can unless it is given a
    `pace`. Use as a context manager, or call `close`.
    """

    def __init__(self, address: Address) -> None:
        self.address = address
        self.clients: list[Client] = []
        self._selector = selectors.DefaultSelector()
        self._waiting: set[Client] = set()  # clients still short of what they wait for
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._timer_seq = itertools.count()
        self._syncs = itertools.count(1)
        self._transient = itertools.count(-1, -1)  # indexes of churn clients, never senders
        self._mode = COUNT
        self._streams: dict[bytes, tuple[bytes, int]] = {}  # sender -> (its lines, width)
        self._progress = 0.0  # when a load line last arrived

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def live(self) -> list[Client]:
        return [c for c in self.clients if not c.eof]

    @property
    def welcomed(self) -> int:
        """How many clients got a welcome (whether still connected or not)."""
        return sum(1 for c in self.clients if c.welcomed)

    # ------------------------------------------------------------------ connecting

    def connect(
        self,
        n: int,
        *,
        batch: int = BATCH,
        rcvbuf: int = 0,
        pace: tuple[int, float] | None = None,
        wait: bool = True,
        timeout: float = TIMEOUT,
        after_batch: Callable[[list[Client]], None] | None = None,
    ) -> list[Client]:
        """Open `n` clients, `batch` at a time; return them.

        With `wait` (the default) each batch's first lines (welcome or refusal)
        are in before the next batch connects, so the listen backlog is never
        overrun; `after_batch` is then called with every client opened so far.
        Without `wait` all connections are started at once and nothing is waited for.
        """
        deadline = time.monotonic() + timeout
        opened: list[Client] = []
        for start in range(0, n, batch):
            group = [self._open(rcvbuf, pace, wait=wait) for _ in range(min(batch, n - start))]
            opened += group
            if wait:
                self.run_until(
                    lambda: not self._waiting,
                    f"the first line of clients {group[0].index}..{group[-1].index}",
                    deadline - time.monotonic(),
                )
                if after_batch is not None:
                    after_batch(opened)
        return opened

    def _open(
        self,
        rcvbuf: int = 0,
        pace: tuple[int, float] | None = None,
        keep: bool = True,
        wait: bool = True,
        on_first: Callable[[Client], None] | None = None,
        on_eof: Callable[[Client], None] | None = None,
    ) -> Client:
        sock = socket.socket(_family(self.address), socket.SOCK_STREAM)
        if rcvbuf:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        status = sock.connect_ex(self.address)
        index = len(self.clients) if keep else next(self._transient)
        client = Client(index, sock, pace=pace, on_first=on_first, on_eof=on_eof)
        if keep:
            self.clients.append(client)
        if keep and wait:
            self._waiting.add(client)
        if status not in _STARTED:
            client.recent.append(f"connect: {errno.errorcode.get(status, status)}".encode())
            self._lost(client)
        elif pace is None:
            self._watch(client)
        else:
            self._at(time.monotonic(), lambda now: self._paced_read(client, now))
        return client

    # ------------------------------------------------------------------ the loop

    def run_until(
        self,
        done: Callable[[], object],
        what: str,
        timeout: float = TIMEOUT,
        interval: float = 0.0,
    ) -> None:
        """Pump the loop until `done()` is true; fail naming `what` after `timeout`.

        `done` is checked after every round of events, or at most every
        `interval` seconds when it is costly (reading /proc or a log, say).
        """
        if not self._pump(done, time.monotonic() + timeout, interval):
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")

    def run_for(self, seconds: float) -> None:
        """Pump the loop for `seconds`: the clients go on reading meanwhile."""
        self._pump(lambda: False, time.monotonic() + seconds, 0.0)

    def _pump(self, done: Callable[[], object], deadline: float, interval: float) -> bool:
        checked = -interval
        while True:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, fire = heapq.heappop(self._timers)
                fire(now)
            # After the timers: what they did may be what `done` waits for.
            if now - checked >= interval:
                if done():
                    return True
                checked = now
            if now >= deadline:
                return False
            wake = min(deadline, checked + interval) if interval else deadline
            if self._timers:
                wake = min(wake, self._timers[0][0])
            for key, mask in self._selector.select(max(0.0, wake - now)):
                client: Client = key.data
                if client.eof:
                    continue  # closed earlier in this round (its descriptor may be reused)
                if mask & selectors.EVENT_READ:
                    self._read(client)
                if mask & selectors.EVENT_WRITE and not client.eof:
                    self._write(client)

    def _at(self, when: float, fire: Callable[[float], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_seq), fire))

    def _watch(self, client: Client) -> None:
        # Keep the selector in step with the client: read unless paced, write while queued.
        events = (0 if client.pace else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if client.out else 0
        )
        if client.eof or events == client.events:
            return
        if not client.events:
            self._selector.register(client.sock, events, client)
        elif not events:
            self._selector.unregister(client.sock)
        else:
            self._selector.modify(client.sock, events, client)
        client.events = events

    # ------------------------------------------------------------------ reading

    def _read(self, client: Client, size: int = RECV_SIZE) -> None:
        try:
            data = client.sock.recv(size)
        except BlockingIOError:
            return
        except OSError:  # reset by the server (or refused): gone, as with EOF
            data = b""
        if data:
            self._absorb(client, data)
        else:
            self._lost(client)

    def _paced_read(self, client: Client, now: float) -> None:
        assert client.pace is not None
        if client.eof:
            return
        self._read(client, client.pace[0])
        self._at(now + client.pace[1], lambda later: self._paced_read(client, later))

    def _absorb(self, client: Client, data: bytes) -> None:
        # Whole lines only: a mark split between two reads is counted once it is whole.
        end = data.rfind(b"\n") + 1
        if not end:
            client.tail += data
            return
        block = client.tail + data[:end] if client.tail else data[:end]
        client.tail = data[end:]
        load = block.count(MARK)
        if load:
            client.load_lines += load
            self._progress = time.monotonic()
            if self._mode == VERIFY:
                self._verify(client, block)
            elif self._mode == LATENCY:
                self._time(client, block)
        if b"*" in block:  # memchr: most blocks hold no line of the server's own
            self._notices(client, block)
        if client.vanish_after and client.load_lines >= client.vanish_after:
            self.disconnect(client, reset=True)
        elif client in self._waiting and client.satisfied:
            self._waiting.discard(client)

    def _verify(self, client: Client, block: bytes) -> None:
        # Compare each run of lines from one sender with what that sender sent, as a whole:
        # the run is grown 1, 2, 4... lines while it matches, then bisected at the first
        # mismatch, so a run of k lines costs about 2*log2(k) comparisons of whole pieces.
        # A run that does not start with the line expected next is one disorder (a line
        # lost, repeated, reordered or altered); checking goes on from the line that came.
        at, end = 0, len(block)
        nexts = client.next_seq
        while (mark := block.find(MARK, at)) >= 0:
            start = block.rfind(b"\n", 0, mark) + 1  # the start of the line holding the mark
            sender = block[mark + 2 : mark + 7]
            stream, width = self._streams.get(sender, (b"", 1))
            seq = nexts.get(sender, 0)
            most = min((end - start) // width, len(stream) // width - seq)
            good, step, growing = 0, 1, True
            while step and good < most:
                take = step if step < most - good else most - good
                offset = (seq + good) * width
                if block.startswith(stream[offset : offset + take * width], start + good * width):
                    good += take
                    step = step * 2 if growing else step // 2
                else:
                    growing = False
                    step = take // 2
            if good:
                nexts[sender] = seq + good
                at = start + good * width
            else:
                client.disordered += 1
                seen = block[mark + 8 : mark + 15]
                if seen.isdigit():  # go on from the line that came; an altered number says nothing
                    nexts[sender] = int(seen) + 1
                at = block.index(b"\n", mark) + 1

    def _time(self, client: Client, block: bytes) -> None:
        # One parse per line, for the send time: fine at the rates steady() runs at.
        now = time.monotonic_ns()
        last = client.last_seq
        stamped = _STAMPED.findall(block)
        client.disordered += block.count(MARK) - len(stamped)  # altered past recognition
        for sender, seq, stamp in stamped:
            if seq <= last.get(sender, b""):  # fixed width: bytes compare as numbers
                client.disordered += 1
            last[sender] = seq
            client.latencies.append(now - int(stamp))

    def _notices(self, client: Client, block: bytes) -> None:
        # The server's own lines ("* ..."), counted at C speed: a client of a big room gets
        # thousands of notices, so only the first line, the last RECENT and the one with
        # the token awaited are looked at one by one.
        count = block.count(b"\n* ") + block.startswith(b"* ")
        if not count:
            return
        client.notices += count
        client.recent.extend(_last_notices(block, min(count, RECENT)))
        token = client.token
        if token is not None:
            at = block.find(token)
            while at >= 0:
                if block.startswith(b"* ", block.rfind(b"\n", 0, at) + 1):
                    client.token = None
                    break
                at = block.find(token, at + 1)
        if client.first is None:
            start = 0 if block.startswith(b"* ") else block.find(b"\n* ") + 1
            client.first = block[start : block.index(b"\n", start)]
            if welcome := _WELCOME.match(client.first):
                client.name = welcome.group(1).decode()
            if client.on_first is not None:
                client.on_first(client)

    def _lost(self, client: Client) -> None:
        if client.eof:
            return
        client.eof = True
        self._waiting.discard(client)
        if client.events:
            self._selector.unregister(client.sock)
            client.events = 0
        client.out.clear()
        client.sock.close()
        if client.on_eof is not None:
            client.on_eof(client)

    # ------------------------------------------------------------------ writing

    def send(self, client: Client, data: bytes) -> None:
        """Queue `data` for `client` and send what its socket takes now."""
        if client.eof:
            return
        client.out.append(memoryview(data))
        self._write(client)

    def _write(self, client: Client) -> None:
        out = client.out
        while out:
            try:
                sent = client.sock.send(out[0])
            except BlockingIOError:
                break
            except OSError:  # reset or broken pipe: the server is gone for this client
                self._lost(client)
                return
            if sent < len(out[0]):
                out[0] = out[0][sent:]
                break
            out.popleft()
        self._watch(client)

    # ------------------------------------------------------------------ operations

    def sync(self, clients: Iterable[Client] | None = None, timeout: float = TIMEOUT) -> None:
        """Wait until everything the server sent to `clients` so far has arrived.

        Each asks the server something only it is answered: an unknown command,
        ``/sync-N``, whose error reply is cheap (``/who`` would list every name:
        n replies of n names). The reply goes through the same outbox as everything
        queued for that client before it, so once it is in, nothing older is still
        on its way (the join notices of the others, say).
        """
        token = self._ask_sync(self.live if clients is None else clients)
        self.run_until(lambda: not self._waiting, f"the replies to {token.decode()}", timeout)

    def _ask_sync(self, clients: Iterable[Client]) -> bytes:
        token = b"/sync-%d" % next(self._syncs)
        for client in clients:
            if not client.eof:
                client.token = token
                self._waiting.add(client)
                self.send(client, token + b"\n")
        return token

    def fan_out(
        self,
        senders: Sequence[Client],
        lines: int,
        *,
        receivers: Sequence[Client] | None = None,
        verify: bool = True,
        timeout: float = TIMEOUT,
        quiet: float = QUIET,
    ) -> Delivery:
        """Each sender sends `lines` load lines, as fast as the server takes them.

        Every client reads as fast as it can (or at its pace) meanwhile. Ends when
        every receiver (default: every live client) has all the lines of the other
        senders or was cut, and then its reply to a /sync (so that a line sent twice
        is counted too); or once no line has come for `quiet` seconds (lines will
        not come: say, a cut sender's unread ones); or at the deadline. The result
        says who got what. With `verify`, receivers check each sender's
        lines came whole and in order (see `_verify`); else they only count. The
        lines carry no send time.
        """
        receivers = self.live if receivers is None else list(receivers)
        payloads = [b"".join(load_line(s.index, seq) for seq in range(lines)) for s in senders]
        self._streams = {}
        if verify:  # what each receiver will see: "NAME: " before each line
            for sender, payload in zip(senders, payloads, strict=True):
                prefix = sender.name.encode() + b": "
                forwarded = prefix + payload.replace(b"\n", b"\n" + prefix)[: -len(prefix)]
                self._streams[b"%05d" % sender.index] = (forwarded, len(prefix) + LINE_SIZE)
        expected = {r.index: lines * sum(1 for s in senders if s is not r) for r in receivers}
        self._begin(receivers, expected, VERIFY if verify else COUNT)
        started = self._progress = time.monotonic()
        for sender, payload in zip(senders, payloads, strict=True):
            self.send(sender, payload)
        stalled = False

        def watch(now: float) -> None:  # a timer, so that it runs even when nothing arrives
            nonlocal stalled
            stalled = now - self._progress > quiet
            if self._waiting and not stalled:
                self._at(now + min(1.0, quiet), watch)

        self._at(started + quiet, watch)
        self._pump(lambda: not self._waiting or stalled, started + timeout, 0.0)
        elapsed = time.monotonic() - started
        if not self._waiting:
            # Every receiver has its count. A line the server sent twice may still be on its
            # way (and would make up for a lost one in the next run): what the server sent a
            # receiver before its reply to a /sync is in once the reply is, so count until then.
            self._ask_sync(receivers)
            self._pump(lambda: not self._waiting, started + timeout, 0.0)
        return self._result(receivers, expected, started, elapsed)

    def steady(
        self,
        senders: Sequence[Client],
        *,
        rate: float,
        duration: float,
        receivers: Sequence[Client] | None = None,
        until: Callable[[], object] | None = None,
        timeout: float = TIMEOUT,
        drain: float = DRAIN,
    ) -> Delivery:
        """Each sender sends `rate` lines a second for `duration` seconds; latency measured.

        The senders' ticks are spread evenly over each period, not all at once.
        Each line is stamped with `time.monotonic_ns()` when it is sent, and each
        receiver takes its latency when it reads it. With `until`, sending goes on
        past `duration` until `until()` holds (checked every 50 ms), but never past
        `timeout`. Then the run waits at most `drain` seconds for the last lines.
        """
        receivers = self.live if receivers is None else list(receivers)
        self._begin(receivers, {}, LATENCY)
        sent = {s.index: 0 for s in senders}
        started = time.monotonic()
        period = 1.0 / rate
        sending = True

        def ticker(sender: Client, first: float) -> Callable[[float], None]:
            def tick(now: float) -> None:
                if sending and not sender.eof:
                    line = load_line(sender.index, sent[sender.index], time.monotonic_ns())
                    self.send(sender, line)
                    sent[sender.index] += 1
                    self._at(first + sent[sender.index] * period, tick)  # no drift

            return tick

        for i, sender in enumerate(senders):
            first = started + period * i / len(senders)
            self._at(first, ticker(sender, first))

        def enough() -> bool:
            return time.monotonic() - started >= duration and (until is None or bool(until()))

        self._pump(enough, started + timeout, 0.05)
        sending = False
        stopped = time.monotonic()
        expected = {r.index: sum(n for s, n in sent.items() if s != r.index) for r in receivers}
        for r in receivers:
            r.target = expected[r.index]
            if not r.eof and not r.satisfied:
                self._waiting.add(r)
        self._pump(lambda: not self._waiting, stopped + drain, 0.0)
        return self._result(receivers, expected, started)

    def _begin(self, receivers: Sequence[Client], expected: dict[int, int], mode: str) -> None:
        self._mode = mode
        for r in receivers:
            r.load_lines = r.disordered = 0
            r.next_seq.clear()
            r.last_seq.clear()
            r.latencies.clear()
            r.target = expected.get(r.index, 0)
            if not r.eof and not r.satisfied:
                self._waiting.add(r)

    def _result(
        self,
        receivers: Sequence[Client],
        expected: dict[int, int],
        started: float,
        elapsed: float | None = None,
    ) -> Delivery:
        elapsed = time.monotonic() - started if elapsed is None else elapsed
        self._waiting.difference_update(receivers)
        for r in receivers:
            r.target = 0  # the run is over: nothing more to wait for
            r.token = None
        mode, self._mode = self._mode, COUNT
        return Delivery(
            expected=expected,
            received={r.index: r.load_lines for r in receivers},
            disordered=frozenset(r.index for r in receivers if r.disordered),
            cut=frozenset(r.index for r in receivers if r.cut),
            elapsed=elapsed,
            checked=mode != COUNT,
            latencies_ns=tuple(itertools.chain.from_iterable(r.latencies for r in receivers)),
        )

    def churn(
        self,
        cycles: int,
        parallel: int,
        *,
        line: bytes = b"churn\n",
        timeout: float = TIMEOUT,
    ) -> Churn:
        """`cycles` connect-send-disconnect cycles, `parallel` at a time.

        A cycle: connect, read the welcome, send `line`, half-close (FIN), read
        until the server closes too. So each cycle is over on the server's side
        (it read the line and saw the client leave) before another takes its place.
        The swarm's own clients go on reading meanwhile. Churn clients are not
        kept in `clients`.
        """
        started = time.monotonic()
        opened = completed = 0
        failures: list[str] = []
        active: set[Client] = set()
        stopping = False

        def greet(client: Client) -> None:
            if not client.welcomed:
                return  # refused: it fails when the server closes it
            self.send(client, line)  # a few bytes into an empty buffer: sent at once
            if not client.eof:
                client.sock.shutdown(socket.SHUT_WR)

        def leave(client: Client) -> None:
            nonlocal completed
            active.discard(client)
            if client.welcomed and not client.closed_by_us:
                completed += 1
            elif not stopping:
                why = client.first or b"; ".join(client.recent) or b"closed before a welcome"
                failures.append(why.decode(errors="replace"))
            self._at(time.monotonic(), top_up)  # from the loop: no recursion if connects fail

        def top_up(now: float = 0.0) -> None:
            nonlocal opened
            while not stopping and opened < cycles and len(active) < parallel:
                opened += 1
                client = self._open(keep=False, on_first=greet, on_eof=leave)
                if not client.eof:
                    active.add(client)

        top_up()
        if not self._pump(lambda: completed + len(failures) >= cycles, started + timeout, 0.0):
            unfinished = cycles - completed - len(failures)
            failures.append(f"{unfinished} cycles unfinished at the deadline")
        stopping = True
        for client in list(active):
            self.disconnect(client)
        return Churn(completed, tuple(failures), time.monotonic() - started)

    def who(self, client: Client, timeout: float = TIMEOUT) -> int:
        """How many members the room has, as the server tells `client` (/who)."""
        answer = b"* here now ("
        client.token = answer
        self._waiting.add(client)
        self.send(client, b"/who\n")
        self.run_until(lambda: client.token is None, "the reply to /who", timeout)
        reply = next(line for line in reversed(client.recent) if line.startswith(answer))
        return int(reply[len(answer) :].partition(b")")[0])

    # ------------------------------------------------------------------ leaving

    def half_close(self, client: Client) -> None:
        """Send FIN once what is queued is sent; the client still reads until the server closes."""
        if client.out:
            raise RuntimeError("half_close with output still queued")
        client.sock.shutdown(socket.SHUT_WR)

    def disconnect(self, client: Client, reset: bool = False) -> None:
        """Close one client: with a FIN, or with a reset (`reset=True`) like a crashed peer."""
        if client.eof:
            return
        client.closed_by_us = True
        if reset:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._lost(client)

    def close(self) -> None:
        """Close every client and the selector."""
        for client in self.clients:
            self.disconnect(client)
        self._selector.close()
