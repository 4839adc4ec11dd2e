"""The load generator: many chat clients in one thread, and what they measured.

Every client is a non-blocking socket in one selector loop (loop.py); a `Swarm` runs
operations on them, each pumping the loop until its condition holds or its deadline
passes:

    Swarm.connect(n) --batches--> sockets in one selector <--- run_until(done, deadline)
         |                               |  readable: recv, count marked lines per block
         |                               |  writable: send what a sender has queued
         v                               |  timers:   steady senders, paced readers
    sync / fan_out / steady / churn -----+--> Delivery: per receiver, lines expected and
                                              received, order, who was cut, lines/s, latency

What the clients send and how they check it is lines.py; the verdicts are results.py.
Every wait has a deadline, every loop ends, and clients only ever connect to the address
they are given (loopback in the tests). Used by the stress tests and `make bench` alike.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Sequence

from harness.clients import COUNT, LATENCY, VERIFY, Client
from harness.lines import LINE_SIZE, forwarded, load_line
from harness.loop import Loop
from harness.results import Churn, Delivery
from harness.sockets import TIMEOUT

BATCH = 200  # connections opened at once: far below the listen backlog (SOMAXCONN)
DRAIN = 5.0  # seconds steady() waits for the last lines once its senders stop
QUIET = 10.0  # seconds without a load line after which a fan-out is over (longer than a pause)
# The receive buffer of readers that must all read equally fast (the congestion tests). Left to
# autotune, Linux may keep one connection's window small, and that client then lags alone,
# which the room rightly cuts (docs/reliability.md). Set before connect, a fixed buffer gives
# every reader the same window.
READER_RCVBUF = 1024 * 1024


class Swarm(Loop):
    """Many chat clients of one server: `connect` them, then run operations on them.

    Use as a context manager, or call `close`.
    """

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
                width = len(sender.name.encode()) + 2 + LINE_SIZE  # "NAME: " and the line
                self._streams[b"%05d" % sender.index] = (forwarded(sender.name, payload), width)
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
        size: int = LINE_SIZE,
    ) -> Delivery:
        """Each sender sends `rate` lines a second (of `size` bytes) for `duration` seconds.

        The senders' ticks are spread evenly over each period, not all at once. Each
        line is stamped with `time.monotonic_ns()` when it is sent, and each receiver
        takes its latency when it reads it. With `until`, sending goes on past
        `duration` until `until()` holds (checked every 50 ms), never past `timeout`;
        then the run waits at most `drain` seconds for the last lines.
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
                    line = load_line(sender.index, sent[sender.index], time.monotonic_ns(), size)
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
        return Delivery.of(receivers, expected, elapsed, checked=mode != COUNT)

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
