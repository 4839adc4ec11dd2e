"""The selector loop under the load generator: clients as non-blocking sockets, one thread.

A thread per simulated client would make the test process the bottleneck (and the
thing measured). So every client is a non-blocking socket in one selector (epoll),
driven by `Loop._pump` in the calling thread, with timers for what must happen at a
time (a steady sender's next line, a paced reader's next read). Each block of whole
lines a client reads is looked at once (lines.py): load lines counted, checked or
timed, as the run wants, and the server's own lines counted and the last few kept.
What runs on the loop (connect, sync, fan_out, steady, churn) is `Swarm`, in load.py.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import selectors
import socket
import time
from collections.abc import Callable
from typing import Self

from harness import lines
from harness.clients import COUNT, LATENCY, RECENT, VERIFY, Client
from harness.sockets import RECV_SIZE, TIMEOUT, Address, family, reset_on_close

_STARTED = (0, errno.EINPROGRESS)  # a non-blocking connect that is done, or under way


class Loop:
    """Clients of one server and the loop that drives them; `Swarm` (load.py) runs on it.

    `run_until` pumps the loop until a condition holds or a deadline passes. Every
    client reads as fast as it can unless it is given a `pace`. Use as a context
    manager, or call `close`.
    """

    def __init__(self, address: Address) -> None:
        self.address = address
        self.clients: list[Client] = []
        self._selector = selectors.DefaultSelector()
        self._waiting: set[Client] = set()  # clients still short of what they wait for
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._timer_seq = itertools.count()
        self._transient = itertools.count(-1, -1)  # indexes of churn clients, never senders
        self._syncs = itertools.count(1)  # numbers the /sync-N questions
        self._mode = COUNT
        self._streams: dict[bytes, tuple[bytes, int]] = {}  # sender -> (its lines, width)
        self._progress = 0.0  # when a load line last arrived

    def __enter__(self) -> Self:
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

    def _open(
        self,
        rcvbuf: int = 0,
        pace: tuple[int, float] | None = None,
        keep: bool = True,
        wait: bool = True,
        on_first: Callable[[Client], None] | None = None,
        on_eof: Callable[[Client], None] | None = None,
    ) -> Client:
        sock = socket.socket(family(self.address), socket.SOCK_STREAM)
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
        load = block.count(lines.MARK)
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
        client.disordered += lines.check_runs(block, self._streams, client.next_seq)

    def _time(self, client: Client, block: bytes) -> None:
        # One parse per line, for the send time: fine at the rates steady() runs at.
        now = time.monotonic_ns()
        last = client.last_seq
        stamped = lines.STAMPED.findall(block)
        client.disordered += block.count(lines.MARK) - len(stamped)  # altered past recognition
        for sender, seq, stamp in stamped:
            if seq <= last.get(sender, b""):  # fixed width: bytes compare as numbers
                client.disordered += 1
            last[sender] = seq
            client.latencies.append(now - int(stamp))

    def _notices(self, client: Client, block: bytes) -> None:
        count = lines.notice_count(block)
        if not count:
            return
        client.notices += count
        client.recent.extend(lines.last_notices(block, min(count, RECENT)))
        if client.token is not None and lines.in_a_notice(block, client.token):
            client.token = None
        if client.first is None:
            client.first = lines.first_notice(block)
            if welcome := lines.WELCOME.match(client.first):
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
            reset_on_close(client.sock)
        self._lost(client)

    def close(self) -> None:
        """Close every client and the selector."""
        for client in self.clients:
            self.disconnect(client)
        self._selector.close()
