"""Reading a client: lines as fast as they come, or (``--rate``) no faster than a rate.

A `LineReader` reads big (a whole burst of lines in one recv(), which the room then
sends on as one block) but waits with a small buffer: a thread blocked in recv()
holds a buffer of the size it asked for, so an idle client is read with a small one.

Flood control (``--rate``) is optional. A `TokenBucket` per client holds up to
``--burst`` tokens and refills at ``--rate`` a second; carrying out a line takes a
token. Lines over the rate are not lost: the `RateLimitedReader` keeps reading the
socket (so a flood is noticed) and holds the lines until their tokens come. While
it holds some, its recv() waits no longer than the next token (SO_RCVTIMEO: the
kernel ends the wait). What it holds is bounded too: past ``--recvq`` bytes of held
lines the client is flooding, and is cut.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque

from section_a.protocol import LineFramer, Overlong
from section_a.sockets import set_deadline

# Bytes read at once: a burst of lines in one recv(), sent on to each reader in one send().
RECV_SIZE = 64 * 1024
# What an idle client's thread waits with (after a read that was not a burst): a thread
# blocked in recv() holds a buffer of this size. A chat line fits, and under 512 bytes it
# comes from Python's small-object allocator, not from malloc's per-thread arenas.
IDLE_RECV_SIZE = 256

Events = list[bytes | Overlong]


class LineReader:
    """Lines from a socket, as fast as they come."""

    __slots__ = ("_size", "conn", "framer")  # one per client: no __dict__ for each

    def __init__(self, conn: socket.socket, framer: LineFramer) -> None:
        self.conn = conn
        self.framer = framer
        self._size = IDLE_RECV_SIZE

    def read(self) -> Events | None:
        """The lines of the next recv() (maybe none); None at EOF."""
        data = self.conn.recv(self._size)
        # Big reads for a burst of lines; small ones when idle, and while the framer
        # discards an over-long line (a flood with no newline then holds no big buffers).
        burst = len(data) >= IDLE_RECV_SIZE and not self.framer.discarding
        self._size = RECV_SIZE if burst else IDLE_RECV_SIZE
        return self.framer.feed(data) if data else None


class Flooding(Exception):
    """A rate-limited client sent more than may wait for it."""


class TokenBucket:
    """Flood control for one client: on average `rate` lines a second, `burst` at once."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self, wanted: int) -> int:
        """Take up to `wanted` tokens; returns how many were granted."""
        self._refill()
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted

    def delay(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate)


class RateLimitedReader(LineReader):
    """Lines from a socket, no faster than a token bucket allows; a flood is cut."""

    __slots__ = ("_eof", "_held", "_held_bytes", "bucket", "closing", "recvq")

    def __init__(
        self,
        conn: socket.socket,
        framer: LineFramer,
        bucket: TokenBucket,
        recvq: int,
        closing: threading.Event,
    ) -> None:
        super().__init__(conn, framer)
        self.bucket = bucket
        self.recvq = recvq
        self.closing = closing  # set when the server shuts down: held lines are dropped
        self._held: deque[bytes | Overlong] = deque()  # read, waiting for a token
        self._held_bytes = 0
        self._eof = False

    def read(self) -> Events | None:
        while True:
            if self._held:
                granted = self.bucket.take(len(self._held))
                if granted:
                    return [self._release() for _ in range(granted)]
            if self._eof:
                if not self._held or self.closing.is_set():
                    return None
                self.closing.wait(self.bucket.delay())  # the socket says nothing more: wait
                continue
            # With lines held, wait for input no longer than the next token.
            set_deadline(self.conn, socket.SO_RCVTIMEO, self.bucket.delay() if self._held else 0)
            try:
                events = super().read()
            except BlockingIOError:  # the wait ran out: a token is due
                continue
            if events is None:
                self._eof = True  # the lines already read are still carried out
                continue
            for event in events:
                self._held.append(event)
                self._held_bytes += len(event) if isinstance(event, bytes) else 0
            if self._held_bytes > self.recvq:
                raise Flooding(f"flooding: over {self.recvq} bytes of lines waiting")

    def _release(self) -> bytes | Overlong:
        event = self._held.popleft()
        self._held_bytes -= len(event) if isinstance(event, bytes) else 0
        return event
