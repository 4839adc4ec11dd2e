"""Whether a line was relayed, and what arrived instead: the verbs the server checks share.

`relayed(crowd, sender, text)` is the assignment's promise for one line: its text,
whole, in one line of every other probe's input. `warm_up` proves every probe is in
the room before a check counts on it (a server may accept before it registers a
client, and a line sent in that moment is lost through no fault of the relay).
`arrived_instead` is the evidence when a line did not arrive: what the probe did get
that looks like it, or its last line.
"""

from __future__ import annotations

import time

from grader.probes import TOKEN, Crowd, Probe
from grader.subject import Failed

RETRY = 0.5  # seconds between a warm-up's lines
RELAY_TIMEOUT = 2.0  # seconds for a line to reach every other client
SHOWN = 100  # characters of received bytes shown in evidence


def others(crowd: Crowd, sender: Probe) -> list[Probe]:
    """The probes that should hear `sender`: not closed, nor left unread on purpose."""
    return [p for p in crowd.probes if p is not sender and not p.closed and not p.stuck]


def missing(
    crowd: Crowd, sender: Probe, text: bytes, among: list[Probe] | None = None
) -> list[Probe]:
    """The probes (other than `sender`) whose input does not hold `text` whole."""
    return [probe for probe in (among or others(crowd, sender)) if not probe.has(text)]


def relayed(
    crowd: Crowd, sender: Probe, text: bytes, timeout: float = RELAY_TIMEOUT
) -> list[Probe]:
    """Wait for `text` (sent by `sender`) to reach every other probe; those it did not reach."""
    crowd.wait(lambda: not missing(crowd, sender, text), timeout)
    return missing(crowd, sender, text)


def say_and_check(crowd: Crowd, sender: Probe, timeout: float = RELAY_TIMEOUT) -> None:
    """`sender` says a line; `Failed` unless every other probe gets it whole in time."""
    text = crowd.say(sender)
    lost = relayed(crowd, sender, text, timeout)
    if lost:
        raise Failed(not_relayed(crowd, sender, text, lost, timeout))


def not_relayed(crowd: Crowd, sender: Probe, text: bytes, lost: list[Probe], timeout: float) -> str:
    reached = len(others(crowd, sender)) - len(lost)
    first = lost[0]
    return (
        f"a line from {sender} reached {reached} of {len(others(crowd, sender))} others "
        f"within {timeout:g} s; {first} got {arrived_instead(first, text)}"
    )


def arrived_instead(probe: Probe, text: bytes) -> str:
    """What `probe` got that bears on `text`: the start of the text, or its last bytes."""
    if probe.eof:
        closed = f"the server closed the connection{_why(probe)}"
        if not probe.received:
            return f"nothing, and {closed}"
        return f"{bytes(probe.received[-SHOWN:])!r}, and {closed}"
    received = bytes(probe.received)
    # Its token (this very line), else "tk", the run and the sender (a piece of it),
    # else the last piece of this run's lines (a token cut in two).
    for head in (text[: text.find(b"-") + 1], text[:12], text[:9]):
        where = received.rfind(head)
        if where >= 0:
            start = received.rfind(b"\n", 0, where) + 1
            end = received.find(b"\n", where)
            line = received[start : end + 1 if end >= 0 else len(received)][:SHOWN]
            return f"{line!r}, not {text!r}"
    if not probe.received:
        return "nothing"
    return f"no line with it whole; its last bytes: {bytes(probe.received[-SHOWN:])!r}"


def _why(probe: Probe) -> str:
    return f" ({probe.error})" if probe.error else ""


def warm_up(crowd: Crowd, newcomers: list[Probe], timeout: float = 3.0) -> None:
    """Prove the room is whole: a line of the last newcomer's reaches every other probe.

    A thread-per-client server may add a client to the room a moment after it
    accepts it, and client 9's thread may run before client 8's: a line sent in that
    moment misses client 8 through no fault of the relay. So the last newcomer says a
    fresh line every RETRY seconds until one reaches all the others, which proves all
    of them are in the room (the newcomer is: its line was read).
    """
    if not newcomers or len(crowd.probes) < 2:
        return
    last = newcomers[-1]
    deadline = time.monotonic() + timeout
    while True:
        text = crowd.say(last)
        wait = min(RETRY, max(deadline - time.monotonic(), 0.0))
        if not relayed(crowd, last, text, wait):
            return
        cut_off = all(probe.eof for probe in others(crowd, last))  # no use waiting more
        if time.monotonic() >= deadline or cut_off:
            lost = missing(crowd, last, text)
            detail = not_relayed(crowd, last, text, lost, timeout)
            raise Failed(f"warming up, {detail}")


def received_tokens(probe: Probe, run: str) -> list[tuple[int, int, bytes]]:
    """(sender, seq, line) for every token of run `run` in `probe`'s whole lines, in order."""
    found = []
    for line in probe.complete_lines():
        for match in TOKEN.finditer(line):
            if match.group(1).decode() == run:
                found.append((int(match.group(2)), int(match.group(3)), line))
    return found
