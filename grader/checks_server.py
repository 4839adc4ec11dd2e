"""The server checks of the assignment's letter: it starts, relays, and has a thread per client.

Each check starts a fresh server (`Subject.start`), so no check inherits another's
clients, and each names what it measured next to what it expected. Threads are
counted by the kernel (/proc/PID/task), never taken from what a program prints,
and against the server's own base with no client: a server that keeps a thread of
its own (a flusher, a signal thread) has base + n threads with n clients.
"""

from __future__ import annotations

import time

from grader.checks import Verdict, check, threads_
from grader.probes import FILLER, TOKEN, Crowd
from grader.relaying import missing, not_relayed, relayed, say_and_check, warm_up
from grader.subject import CannotRun, Failed, Running, Subject

STARTS = 10
IDLE_CPU = 2.0  # per cent of one core, at most, while nothing happens
IDLE_WINDOW = 2.0  # seconds over which idle CPU is measured
PAUSE = 0.3  # seconds between the pieces of a split line: the server reads each alone


@check("starts", "server", f"it listens within 5 s, {STARTS} starts in a row", deadline=60)
def starts(subject: Subject) -> Verdict:
    slowest = 0.0
    for attempt in range(1, STARTS + 1):
        began = time.monotonic()
        try:
            with subject.start():
                slowest = max(slowest, time.monotonic() - began)
        except CannotRun as exc:
            return Verdict(False, f"start {attempt} of {STARTS}: {exc}")
    return Verdict(True, f"{STARTS} of {STARTS} starts listening, the slowest in {slowest:.2f} s")


@check("relays", "server", "a line reaches every other client, with 2, 3 and 10 clients")
def relays(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        for size in (2, 3, 10):
            try:
                warm_up(crowd, crowd.connect(size - len(crowd.probes)))
                for sender in crowd.probes:
                    say_and_check(crowd, sender)
            except Failed as exc:
                raise Failed(f"with {size} clients: {exc}") from None
    return Verdict(True, "each client's line reached every other client, with 2, 3 and 10")


@check("thread_per_client", "server", "base + n threads with n clients, n = 1, 5, 20")
def thread_per_client(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        base = server.settled(server.threads)
        seen = []
        for n in (1, 5, 20):
            crowd.connect(n - len(crowd.probes))
            ok, threads = _reaches(server, crowd, base + n)
            seen.append(threads)
            if not ok:
                return Verdict(
                    False,
                    f"{threads_(base)} with no client, {threads} with {n} connected "
                    f"(expected {base} + {n} = {base + n}, one thread per client)",
                )
    counts = ", ".join(map(str, seen))
    return Verdict(True, f"{threads_(base)} with no client; {counts} with 1, 5, 20 (base + n)")


@check("threads_end", "server", "back to base once clients leave, also one that resets")
def threads_end(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        base = server.settled(server.threads)
        probes = crowd.connect(5)
        ok, threads = _reaches(server, crowd, base + 5)
        if threads == base:  # no thread per client, so none to end: thread_per_client says so
            return Verdict(None, f"could not run: {threads_(base)} with no client and with 5 alike")
        if not ok:
            return Verdict(
                False, f"{threads_(base)} with no client, {threads} with 5 (expected {base + 5})"
            )
        crowd.close(probes[0], reset=True)
        ok, threads = _reaches(server, crowd, base + 4)
        if not ok:
            return Verdict(
                False,
                f"{threads} threads after 1 of 5 clients reset (expected {base + 4}): "
                "its thread did not end",
            )
        for probe in probes[1:]:
            crowd.close(probe)
        ok, threads = _reaches(server, crowd, base)
        if not ok:
            return Verdict(
                False, f"{threads} threads 2 s after the other 4 closed (expected the base, {base})"
            )
    return Verdict(
        True, f"{base} + 5 threads with 5 clients, {base} again once they left (1 reset)"
    )


@check("no_busy_wait", "server", "under 2 % of a core over 2 s, 10 idle clients, and after")
def no_busy_wait(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        crowd.connect(10)
        server.settled(server.threads)
        busy = _cpu_percent(server, crowd)
        for probe in list(crowd.probes):
            crowd.close(probe)
        server.settled(server.threads)
        after = _cpu_percent(server, crowd)
    evidence = (
        f"{busy:.1f} % of a core with 10 idle clients, {after:.1f} % after they left, "
        f"over {IDLE_WINDOW:g} s each (at most {IDLE_CPU:g} % expected)"
    )
    return Verdict(busy <= IDLE_CPU and after <= IDLE_CPU, evidence)


@check("framing", "server", "a line sent in two pieces, and two lines in one send, arrive whole")
def framing(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        probes = crowd.connect(3)
        warm_up(crowd, probes)
        sender = probes[0]
        for cut in (9, 24):  # inside the token, then inside the filler
            text = crowd.line(sender, filler=30)
            crowd.send(sender, text[:cut])
            crowd.wait(lambda: False, PAUSE)  # the server reads the first piece alone
            crowd.send(sender, text[cut:] + b"\n")
            lost = relayed(crowd, sender, text)
            if lost:
                detail = not_relayed(crowd, sender, text, lost, 2.0)
                raise Failed(
                    f"a line sent in two pieces (cut at byte {cut}) did not arrive whole: {detail}"
                )
        sender = probes[1]
        first, second = crowd.line(sender), crowd.line(sender)
        crowd.send(sender, first + b"\n" + second + b"\n")
        lost = relayed(crowd, sender, first) + relayed(crowd, sender, second)
        if lost:
            detail = not_relayed(
                crowd, sender, first if missing(crowd, sender, first) else second, lost, 2.0
            )
            raise Failed(f"two lines in one send: {detail}")
        for probe in (probes[0], probes[2]):
            for line in probe.complete_lines():
                if first in line and second[:18] in line:
                    return Verdict(
                        False, f"two lines in one send arrived as one at {probe}: {line[:100]!r}"
                    )
    return Verdict(
        True, "lines split in two pieces arrived whole; two lines in one send arrived apart"
    )


@check("clean_bytes", "server", "nothing arrives that no client sent, besides the server's own")
def clean_bytes(subject: Subject) -> Verdict:
    with subject.start() as server, Crowd(server.address) as crowd:
        probes = crowd.connect(4)
        warm_up(crowd, probes)
        sent = []
        for filler in (60, 5, 40, 1):  # long, then short: a stale buffer shows its old tail
            for sender in probes:
                text = crowd.say(sender, filler=filler)
                sent.append((sender, text))
                lost = relayed(crowd, sender, text)
                if lost:
                    raise Failed(not_relayed(crowd, sender, text, lost, 2.0))
        crowd.wait(lambda: False, 0.2)  # anything more the server had in store
        for probe in probes:
            if b"\0" in probe.received:
                at = probe.received.find(b"\0")
                shown = bytes(probe.received[max(0, at - 40) : at + 20])
                return Verdict(False, f"{probe} received a NUL byte: ...{shown!r}...")
            for line in probe.complete_lines():
                if _stale(crowd, line):
                    return Verdict(
                        False, f"{probe} received a piece of an earlier line: {line[:100]!r}"
                    )
        for sender, text in sent:
            shapes = {}
            for probe in crowd.probes:
                if probe is not sender:
                    lines = [line for line in probe.complete_lines() if text in line]
                    shapes[probe.number] = lines[0].replace(text, b"<line>") if lines else b""
            if len(set(shapes.values())) > 1:
                return Verdict(False, f"one line from {sender} arrived differently: {shapes}")
    return Verdict(
        True, "16 lines arrived byte for byte, the same at every client; no NUL, no stale bytes"
    )


def _stale(crowd: Crowd, line: bytes) -> bool:
    """Whether `line` holds filler that is no whole line's: a piece of an earlier one."""
    for match in TOKEN.finditer(line):
        text = crowd.sent.get((int(match.group(2)), int(match.group(3))))
        if text is not None and text in line:
            line = line.replace(text, b"")
    return FILLER * 3 in line


def _reaches(server: Running, crowd: Crowd, goal: int, timeout: float = 2.0) -> tuple[bool, int]:
    """Whether the server's threads reach `goal` within `timeout`, reading the probes meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        threads = server.threads()
        if threads == goal or time.monotonic() >= deadline:
            return threads == goal, threads
        crowd.pump(0.02)


def _cpu_percent(server: Running, crowd: Crowd) -> float:
    began, cpu = time.monotonic(), server.cpu()
    crowd.wait(lambda: False, IDLE_WINDOW)
    return 100 * (server.cpu() - cpu) / (time.monotonic() - began)
