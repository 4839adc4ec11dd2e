"""The grader's test clients: sockets that send lines with tokens and see what arrives.

The grader knows nothing of a submission's protocol. Each line a probe sends is a
token that no other line contains (`tk<run>s<sender>n<seq>`, then `~` filler of a
varying length, so a stale buffer shows), and a line is relayed to a probe when the
token's whole text arrives there in one line, whatever the server put around it
(`Client 3: `, a name, a timestamp). Lines the server writes by itself carry no
token and are allowed; a line echoed to its sender is neither required nor punished.

All probes of a check live in one `Crowd`, one selector loop that reads every probe
(and writes what each has queued) while a check waits for a condition with a
deadline. The grader is a tool, not the product: it may multiplex.

    >>> tokens = Tokens("ab12cd")
    >>> tokens.line(3, 7)
    b'tkab12cds003n00007-~~~~~~'
    >>> Tokens.parse(b"guest-1: tkab12cds003n00007-~~~~~~")
    [(3, 7)]
"""

from __future__ import annotations

import re
import secrets
import selectors
import socket
import struct
import time
from collections.abc import Callable

RECV_SIZE = 65536
KEEP = 16 * 1024 * 1024  # bytes a probe keeps of what it receives: a flood is cut off here
KEEP_ALL = 256 * 1024 * 1024  # and all the probes of a crowd together
FILLER = b"~"
TOKEN = re.compile(rb"tk([0-9a-f]{6})s(\d{3})n(\d{5})")


def pump_until(
    condition: Callable[[], bool], timeout: float, pump: Callable[[float], None]
) -> bool:
    """Call `pump(wait)` until `condition()` holds (True) or `timeout` passes (False).

    Each pump waits at most 50 ms, so a condition that holds is seen soon after.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        pump(min(remaining, 0.05))
    return True


class Tokens:
    """The lines of one run: a token per (sender, seq), a filler whose length varies."""

    def __init__(self, run: str | None = None) -> None:
        self.run = run or secrets.token_hex(3)

    def line(self, sender: int, seq: int, filler: int | None = None) -> bytes:
        length = 4 + (sender * 7 + seq) % 13 if filler is None else filler
        return f"tk{self.run}s{sender:03d}n{seq:05d}-".encode() + FILLER * length

    @staticmethod
    def parse(line: bytes) -> list[tuple[int, int]]:
        """The (sender, seq) of every token in `line`."""
        return [(int(m.group(2)), int(m.group(3))) for m in TOKEN.finditer(line)]


class Probe:
    """One test client: a socket, what it has received, split into lines."""

    def __init__(self, number: int, sock: socket.socket) -> None:
        self.number = number
        self.sock = sock
        self.received = bytearray()
        self.total = 0  # bytes received, including those past KEEP
        self.outbox = bytearray()
        self.reading = True
        self.eof = False  # the server closed (or reset) this connection
        self.closed = False  # the grader closed it
        self.stuck = False  # the grader stopped reading it, on purpose
        self.error = ""
        self._scanned = 0  # received[:_scanned] is split into lines already
        self.lines: list[bytes] = []

    def complete_lines(self) -> list[bytes]:
        """Every whole line received so far (its newline, and a \\r before it, removed)."""
        end = self.received.rfind(b"\n")
        if end >= self._scanned:
            chunk = bytes(self.received[self._scanned : end])
            self.lines.extend(line.rstrip(b"\r") for line in chunk.split(b"\n"))
            self._scanned = end + 1
        return self.lines

    def has(self, text: bytes) -> bool:
        return text in self.received

    def __repr__(self) -> str:
        return f"client {self.number}"


class Crowd:
    """Probes connected to one address, read and written in one selector loop."""

    def __init__(self, address: tuple[str, int], tokens: Tokens | None = None) -> None:
        self.address = address
        self.tokens = tokens or Tokens()
        self.probes: list[Probe] = []
        self._seq = 0
        self._kept = 0  # bytes received and kept, all probes together
        self.sent: dict[tuple[int, int], bytes] = {}  # (sender, seq): the text of every line made
        self._selector = selectors.DefaultSelector()

    def connect(self, count: int, timeout: float = 5.0, rcvbuf: int = 0) -> list[Probe]:
        """`count` more probes, each connected within `timeout`, or OSError says why."""
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        new = []
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            if rcvbuf:  # before connect, so the window is small from the handshake on
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
            try:
                sock.connect(self.address)
            except OSError:
                sock.close()
                raise
            sock.setblocking(False)
            probe = Probe(len(self.probes), sock)
            self.probes.append(probe)
            self._selector.register(sock, selectors.EVENT_READ, probe)
            new.append(probe)
        return new

    def line(self, probe: Probe, seq: int | None = None, filler: int | None = None) -> bytes:
        """A fresh token line for `probe` to send (numbered `seq`, else the next number)."""
        if seq is None:
            self._seq += 1
            seq = self._seq
        text = self.tokens.line(probe.number, seq, filler)
        self.sent[(probe.number, seq)] = text
        return text

    def send(self, probe: Probe, data: bytes) -> None:
        """Queue `data`; it is written as the socket takes it, while the crowd is pumped."""
        probe.outbox += data
        self._update(probe)
        self._write(probe)

    def say(self, probe: Probe, seq: int | None = None, filler: int | None = None) -> bytes:
        """Send a token line from `probe` (numbered `seq`, else the next); return its text."""
        text = self.line(probe, seq, filler)
        self.send(probe, text + b"\n")
        return text

    def stop_reading(self, probe: Probe) -> None:
        probe.reading = False
        probe.stuck = True
        self._update(probe)

    def close(self, probe: Probe, reset: bool = False) -> None:
        """Close `probe`: with a FIN, or with a reset (RST) when `reset`."""
        if reset:  # SO_LINGER on with no time: close() sends RST and drops what is queued
            probe.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if probe.sock.fileno() >= 0:
            try:
                self._selector.unregister(probe.sock)
            except KeyError:  # not reading, nothing to write: it was not registered
                pass
            probe.sock.close()
        probe.closed = True

    def close_all(self) -> None:
        for probe in self.probes:
            if not probe.closed:
                self.close(probe)
        self._selector.close()

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Read and write until `condition()` holds (True) or `timeout` passes (False)."""
        return pump_until(condition, timeout, self.pump)

    def pump(self, timeout: float) -> None:
        """One round: wait up to `timeout` for sockets, read or write each one ready."""
        if not self._selector.get_map():
            time.sleep(timeout)
            return
        for key, events in self._selector.select(timeout):
            probe: Probe = key.data
            if events & selectors.EVENT_WRITE:
                self._write(probe)
            if events & selectors.EVENT_READ and probe.sock.fileno() >= 0:
                self._read(probe)

    def _read(self, probe: Probe) -> None:
        try:
            data = probe.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:  # a reset
            probe.error = exc.strerror or str(exc)
            data = b""
        if not data:
            probe.reading = False
            probe.eof = True
            self._update(probe)
            return
        probe.total += len(data)
        if len(probe.received) < KEEP and self._kept < KEEP_ALL:
            probe.received += data
            self._kept += len(data)

    def _write(self, probe: Probe) -> None:
        if not probe.outbox or probe.sock.fileno() < 0:
            return
        try:
            sent = probe.sock.send(probe.outbox)
        except BlockingIOError:
            return
        except OSError as exc:
            probe.error = exc.strerror or str(exc)
            probe.outbox.clear()
        else:
            del probe.outbox[:sent]
        self._update(probe)

    def _update(self, probe: Probe) -> None:
        if probe.sock.fileno() < 0:
            return
        events = (selectors.EVENT_READ if probe.reading else 0) | (
            selectors.EVENT_WRITE if probe.outbox else 0
        )
        try:
            registered = bool(self._selector.get_key(probe.sock))
        except KeyError:
            registered = False
        if events and registered:
            self._selector.modify(probe.sock, events, probe)
        elif events:
            self._selector.register(probe.sock, events, probe)
        elif registered:
            self._selector.unregister(probe.sock)

    def __enter__(self) -> Crowd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
