"""Delivery latency measured apart from the load: two clients and a thread of their own.

The load generator (harness/load.py) drives every simulated client from one loop, and
stamps a line's arrival when the loop gets round to reading it: behind a busy loop, or
on a machine whose other CPU is taken, a line waits in the kernel and its latency is
the generator's as much as the server's. A `Probe` is one sender and one reader, served
by a thread of their own, and the time a line arrived is the kernel's: the reader asks
for SO_TIMESTAMPNS, and each read comes with the time the kernel received its data
(its latest segment's, when a read takes several: never earlier than a line came). The
sender stamps each line with the time it sends it. So the figure is the server's
delivery time alone: neither the generator's loop, nor the GIL, nor a pause of this
whole process can add to it.

    probe = Probe(address, rate=20)     # joins the room: two more clients
    probe.start()
    ...                                 # the load runs, in this thread
    latencies = probe.stop()            # seconds, one per probe line
"""

from __future__ import annotations

import re
import select
import socket
import statistics
import struct
import threading
import time

from harness.sockets import Address

PROBE = re.compile(rb": probe (\d+) (\d+)\n")  # what the reader sees: NAME: probe SEQ STAMP
DRAIN = 5.0  # seconds the reader waits for the last probe lines once sending stops
# Linux: a socket option, and the control message that then comes with every read: a
# struct timespec of CLOCK_REALTIME (so the sender stamps with time.time_ns()).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("qq")


class Probe:
    """A sender of a line every 1/`rate` s, and a reader that stamps each one on arrival."""

    def __init__(self, address: Address, rate: float, timeout: float = DRAIN) -> None:
        self.period = 1.0 / rate
        self.timeout = timeout
        self.sender = socket.create_connection(address, timeout=timeout)
        self.reader = socket.create_connection(address, timeout=timeout)
        for sock in (self.sender, self.reader):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        for sock in (self.sender, self.reader):  # joined: the room counts both from now on
            welcome = b""
            while not welcome.endswith(b"\n"):  # a byte at a time: nothing after it is taken
                byte = sock.recv(1)
                assert byte, "the server closed the probe before its welcome"
                welcome += byte
        self.latencies: list[float] = []
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[float]:
        """Stop sending, wait for the lines sent so far, and return their latencies."""
        self._stop.set()
        self._thread.join(self.timeout * 2)
        self.sender.close()
        self.reader.close()
        if self.error is not None:
            raise AssertionError(f"the probe failed: {self.error!r}") from self.error
        if self._thread.is_alive():
            raise AssertionError("the probe's thread did not end")
        return self.latencies

    def _run(self) -> None:
        try:
            self._measure()
        except BaseException as exc:  # handed to stop(), which fails the test with it
            self.error = exc

    def _measure(self) -> None:
        for sock in (self.sender, self.reader):
            sock.setblocking(False)
        buffer = b""
        due = time.monotonic()
        deadline = float("inf")
        while len(self.latencies) < self.sent or deadline == float("inf"):
            now = time.monotonic()
            if self._stop.is_set() and deadline == float("inf"):
                deadline = now + self.timeout  # no more sending: only the last lines to come
            if now >= deadline:
                raise TimeoutError(f"{self.sent - len(self.latencies)} probe lines never came")
            if deadline == float("inf") and now >= due:
                self.sender.sendall(b"probe %d %d\n" % (self.sent, time.time_ns()))
                self.sent += 1
                due += self.period  # on a fixed schedule: no drift
            wake = min(due if deadline == float("inf") else deadline, now + self.period)
            ready = select.select(
                [self.reader, self.sender], [], [], max(0.0, wake - time.monotonic())
            )[0]
            if self.sender in ready and not self.sender.recv(65536):
                # It reads what the room says, or the server would cut it as a stuck reader.
                raise ConnectionError("the server closed the probe's sender")
            if self.reader not in ready:
                continue
            data, ancillary, _, _ = self.reader.recvmsg(65536, socket.CMSG_SPACE(TIMESPEC.size))
            if not data:  # before the stamp: an end of input comes with none
                raise ConnectionError("the server closed the probe's reader")
            arrived = next(
                seconds * 1_000_000_000 + nanoseconds
                for level, kind, value in ancillary
                if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS)
                for seconds, nanoseconds in [TIMESPEC.unpack(value)]
            )
            buffer += data
            end = buffer.rfind(b"\n") + 1
            for seq, stamp in PROBE.findall(buffer, 0, end):
                if int(seq) != len(self.latencies):
                    raise AssertionError(f"probe line {int(seq)} came {len(self.latencies)}th")
                self.latencies.append((arrived - int(stamp)) / 1e9)
            buffer = buffer[end:]


def p99_ms(latencies: list[float]) -> float:
    """The 99th percentile of `latencies` (seconds), in ms; the maximum under 100 samples."""
    if len(latencies) < 100:
        return max(latencies) * 1000
    return statistics.quantiles(latencies, n=100, method="inclusive")[98] * 1000
