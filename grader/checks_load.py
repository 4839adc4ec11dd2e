"""The server checks under pressure: many clients, many lines, clients that misbehave.

What a submission must survive beyond the quiet case: ten clients talking at once,
a hundred in the room, a client that resets mid-line or leaves with unread data, one
that stops reading, two hundred that come and go, and SIGINT. `stuck_reader` and
`shutdown` go beyond the assignment's letter and are reported, not required, in the
default scheme. Descriptors are counted in /proc/PID/fd, threads in /proc/PID/task.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from grader.checks import Verdict, check
from grader.probes import TOKEN, Crowd, Probe
from grader.relaying import received_tokens, say_and_check, warm_up
from grader.subject import Failed, Running, Subject

SENDERS, LINES = 10, 100
STUCK_LATENCY = 1.0  # seconds: a stuck reader may delay nobody's lines longer
STUCK_SENDING = 3.0  # seconds of sending while one client reads nothing
STUCK_RATE = 1500  # lines of 1 KB a second: 4.5 MB in all, more than the kernel buffers
CHURN, CHURN_BATCH = 200, 10
DISCONNECT_BURST = 6000  # lines of 1 KB on their way to a client that stops reading
# Bursts at most, until the server stops taking them: a server whose writes block on the
# client that stopped reading is then blocked in one when that client resets.
DISCONNECT_BURSTS = 2
# Clients that reset while a stream of lines flows to them, each another chance to catch
# a server writing to one after its reset: short lines (many to each of a server's reads,
# so that it has more to write at once), and the reset once it has this many bytes.
STREAMED_CLIENTS, STREAM_LINES, STREAM_FILLER, STREAMED = 3, 10_000, 64, 16 * 1024
BACK_TIMEOUT = 3.0  # seconds for threads and descriptors to come back to base


@check("concurrent_senders", "server", "10 x 100 lines at once: all whole, each sender's in order")
def concurrent_senders(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        probes = crowd.connect(SENDERS)
        warm_up(crowd, probes)
        sent: dict[int, list[bytes]] = {}
        for probe in probes:
            sent[probe.number] = [crowd.line(probe) for _ in range(LINES)]
        for probe in probes:  # each a burst, one after another at once: they overlap
            crowd.send(probe, b"".join(text + b"\n" for text in sent[probe.number]))
        marker = f"tk{crowd.tokens.run}".encode()
        everything = (SENDERS - 1) * LINES
        crowd.wait(lambda: all(p.received.count(marker) >= everything for p in probes), 10.0)
        for probe in probes:
            got: dict[int, list[bytes]] = {}
            for sender, _, line in received_tokens(probe, crowd.tokens.run):
                got.setdefault(sender, []).append(line)
            for sender, texts in sent.items():
                if sender != probe.number:
                    _compare(probe, sender, texts, got.get(sender, []))
    return Verdict(
        True,
        f"{SENDERS} clients x {LINES} lines at once: each line reached the "
        f"{SENDERS - 1} others whole, each sender's in order",
    )


def _compare(probe: Probe, sender: int, texts: list[bytes], lines: list[bytes]) -> None:
    """`lines` (what `probe` got from `sender`, in order) hold `texts` whole, in order."""
    position = 0
    for line in lines:
        if position < len(texts) and texts[position] in line:
            position += 1
    if position < len(texts):
        missing = texts[position]
        near = next((line for line in lines if missing[:18] in line), None)
        how = f"it arrived as {near[:80]!r}" if near else "it never arrived (or out of order)"
        raise Failed(
            f"{probe} got {position} of client {sender}'s {len(texts)} lines whole and in "
            f"order; line {position + 1}: {how}"
        )


@check("many_clients", "server", "100 connected, a line reaches all 99 others")
def many_clients(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        probes = crowd.connect(100)
        warm_up(crowd, probes, timeout=5.0)
        say_and_check(crowd, probes[0], timeout=5.0)
    return Verdict(True, "with 100 clients connected, a line reached all 99 others")


@check("disconnects", "server", "resets mid-line and mid-stream, unread data left: it lives on")
def disconnects(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        base = server.settled(server.fds)
        alice, bob, resetter, *streamed = probes = crowd.connect(3 + STREAMED_CLIENTS)
        unread = crowd.connect(1, rcvbuf=4096)[0]
        warm_up(crowd, [*probes, unread])
        crowd.send(resetter, crowd.line(resetter)[:10])  # half a line, then gone
        crowd.wait(lambda: False, 0.1)
        crowd.close(resetter, reset=True)
        say_and_check(crowd, alice)
        for victim in streamed:
            _reset_mid_stream(crowd, alice, victim)
        # unread stops reading while lines keep coming, until the server's writes to it
        # wait (or it is cut); then it goes, its bytes unread: the kernel sends a reset
        # to a socket the server may be writing to, which raises SIGPIPE in a C program
        # that did not ask for MSG_NOSIGNAL, and ends it.
        crowd.stop_reading(unread)
        for _ in range(DISCONNECT_BURSTS):  # until alice's lines wait: the server is held
            for _ in range(DISCONNECT_BURST):  # more than the kernel buffers for unread
                crowd.say(alice, filler=1000)
            if not crowd.wait(lambda: not alice.outbox, 1.0):
                break
        crowd.close(unread, reset=True)
        for _ in range(100):
            crowd.say(alice, filler=1000)
        try:
            say_and_check(crowd, alice)
            say_and_check(crowd, bob)
        except Failed as exc:
            why = "after resets mid-line and mid-stream and a close with unread data"
            raise Failed(f"{why}: {exc}") from None
        crowd.close(alice)
        crowd.close(bob)
        back, fds = _back(server, server.fds, base)
        if not back:
            return Verdict(
                False,
                f"{fds} descriptors {BACK_TIMEOUT:g} s after all {len(probes) + 1} clients "
                f"left, {base} before they came: a departed client's socket is kept",
            )
    return Verdict(
        True, f"it lived on, the others chatted, and its descriptors came back to {base}"
    )


def _reset_mid_stream(crowd: Crowd, sender: Probe, victim: Probe) -> None:
    # `victim` resets while a stream of `sender`'s lines flows to it: the server writes to
    # it again at once, mostly before the thread that reads it has seen the reset and
    # dropped it. A C server that did not ask for MSG_NOSIGNAL then dies of SIGPIPE.
    before = victim.total
    lines = (crowd.line(sender, filler=STREAM_FILLER) for _ in range(STREAM_LINES))
    crowd.send(sender, b"".join(line + b"\n" for line in lines))
    crowd.wait(lambda: victim.total - before > STREAMED, 2.0)
    crowd.close(victim, reset=True)
    crowd.wait(lambda: not sender.outbox, 2.0)


@check("stuck_reader", "server", "one client stops reading; the others get each line within 1 s")
def stuck_reader(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        sender, *readers = probes = crowd.connect(3)
        stuck = crowd.connect(1, rcvbuf=4096)[0]
        warm_up(crowd, [*probes, stuck])
        crowd.stop_reading(stuck)
        arrivals = Arrivals(readers, crowd.tokens.run)
        outstanding: dict[tuple[int, int], float] = {}  # sent, not yet everywhere: when sent
        began, seq = time.monotonic(), 0
        while time.monotonic() - began < STUCK_SENDING or outstanding:
            # Lines of 1 KB, 32 at a time, STUCK_RATE a second: several MB in all, more
            # than the kernel buffers for the stuck reader.
            elapsed = time.monotonic() - began
            if elapsed < STUCK_SENDING and seq < elapsed * STUCK_RATE:
                for _ in range(32):
                    seq += 1
                    crowd.say(sender, seq=seq, filler=1000)
                    outstanding[(sender.number, seq)] = time.monotonic()
            crowd.pump(0.01)
            arrivals.update(outstanding)
            if outstanding:
                (_, number), at = min(outstanding.items(), key=lambda item: item[1])
                if (age := time.monotonic() - at) > STUCK_LATENCY:
                    return Verdict(
                        False,
                        f"with {stuck} not reading, line {number} from "
                        f"{sender} had not reached all the others after {age:.1f} s "
                        f"({seq} lines of 1 KB sent)",
                    )
    return Verdict(
        True,
        f"with {stuck} not reading, {seq} lines of 1 KB reached the others, the slowest "
        f"in {arrivals.slowest:.2f} s (at most {STUCK_LATENCY:g} s expected)",
    )


class Arrivals:
    """Which token lines have reached every one of `readers`, reading only new lines."""

    def __init__(self, readers: list[Probe], run: str) -> None:
        self.readers = readers
        self.run = run.encode()
        self.seen: dict[int, set[tuple[int, int]]] = {r.number: set() for r in readers}
        self.done: dict[int, int] = {r.number: 0 for r in readers}
        self.slowest = 0.0  # seconds from a line's sending to its arrival everywhere

    def update(self, outstanding: dict[tuple[int, int], float]) -> None:
        """Read the readers' new lines; drop from `outstanding` what is now everywhere."""
        for reader in self.readers:
            lines = reader.complete_lines()
            for line in lines[self.done[reader.number] :]:
                for match in TOKEN.finditer(line):
                    if match.group(1) == self.run:
                        self.seen[reader.number].add((int(match.group(2)), int(match.group(3))))
            self.done[reader.number] = len(lines)
        now = time.monotonic()
        for key in list(outstanding):
            if all(key in seen for seen in self.seen.values()):
                self.slowest = max(self.slowest, now - outstanding.pop(key))


@check("churn", "server", "200 connect-say-leave cycles: alive, threads and descriptors back")
def churn(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        threads, fds = server.settled(server.threads), server.settled(server.fds)
        for _ in range(CHURN // CHURN_BATCH):
            batch = crowd.connect(CHURN_BATCH)
            for probe in batch:
                crowd.say(probe)
            crowd.pump(0.0)
            for probe in batch:
                crowd.close(probe)
        if not server.alive():
            return Verdict(False, server.died())
        back_threads, now_threads = _back(server, server.threads, threads)
        back_fds, now_fds = _back(server, server.fds, fds)
        pair = crowd.connect(2)
        warm_up(crowd, pair)
        say_and_check(crowd, pair[0])
    evidence = (
        f"after {CHURN} cycles: threads {threads} -> {now_threads}, "
        f"descriptors {fds} -> {now_fds} (back to base expected); two new clients chat"
    )
    return Verdict(back_threads and back_fds, evidence)


@check("shutdown", "server", "SIGINT (Ctrl-C) ends it within 2 s", deadline=10)
def shutdown(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        crowd.connect(3)  # idle clients, each perhaps with a thread blocked in recv()
        server.settled(server.threads)
        server.program.signal(signal.SIGINT)  # to the group, as Ctrl-C in its terminal
        began = time.monotonic()
        crowd.wait(lambda: not server.alive(), 2.0)
        took = time.monotonic() - began
        if server.alive():
            return Verdict(False, "still running 2 s after SIGINT")
        return Verdict(True, f"ended {took:.2f} s after SIGINT ({server.program.ending()})")


def _back(server: Running, read: Callable[[], int], goal: int) -> tuple[bool, int]:
    return server.reaches(read, goal, BACK_TIMEOUT)
