"""What a check is, and how one runs: a name, a rationale, a deadline, a verdict with evidence.

A check is a function that returns `Verdict(passed, evidence)`: the evidence is one
line a student can act on, what was measured next to what was expected. A check
may also raise: `CannotRun` (the server did not start) gives passed = None, "could
not run"; anything else a program under test can make happen (a reset, a dead
server, an overrun deadline) gives a failed check with the reason, never a
traceback. Each check has its own deadline, enforced by SIGALRM around it, so a
server that hangs a check in a way the check did not foresee still costs only that;
and one program's card has CARD_BUDGET seconds in all, each check at most what is left.

`Failed` (from subject.py, beside `CannotRun`) ends a check early with its evidence.
Server checks are registered in `checks_server.py` and `checks_load.py`, client
checks in `checks_client.py`; `CHECKS` keeps them in the order of the card.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from grader.subject import CannotRun, Failed


@dataclass
class Verdict:
    passed: bool | None
    evidence: str


@dataclass
class Check:
    name: str
    kind: str  # "server" or "client"
    rationale: str
    deadline: float  # seconds
    run: Callable[[Any], Verdict]


@dataclass
class Result:
    name: str
    passed: bool | None
    required: bool
    points: float
    evidence: str
    seconds: float


CHECKS: dict[str, Check] = {}
CARD_BUDGET = 60.0  # seconds for one program's whole card; checks past it cannot run


def check(
    name: str, kind: str, rationale: str, deadline: float = 15.0
) -> Callable[[Callable[[Any], Verdict]], Callable[[Any], Verdict]]:
    """Register the decorated function as the check `name`."""

    def register(function: Callable[[Any], Verdict]) -> Callable[[Any], Verdict]:
        CHECKS[name] = Check(name, kind, rationale, deadline, function)
        return function

    return register


class Overran(Exception):  # a verdict on the program: it made a check overrun
    """A check ran past its deadline."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise `Overran` in the main thread if the block takes more than `seconds`."""

    def expire(signum: int, frame: object) -> None:
        raise Overran(f"the check ran past its deadline of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def threads_(count: int) -> str:
    """'1 thread', '3 threads'.

    >>> threads_(1), threads_(22)
    ('1 thread', '22 threads')
    """
    return f"{count} thread" + ("" if count == 1 else "s")


def run_check(chosen: Check, subject: Any, budget: float = CARD_BUDGET) -> Verdict:
    """Run one check against `subject`, for at most its deadline and at most `budget`
    seconds (what is left of the card's); whatever happens becomes a verdict."""
    if budget <= 0:
        return Verdict(None, f"could not run: the card's {CARD_BUDGET:g} s were used up")
    try:
        with deadline(min(chosen.deadline, budget)):
            return chosen.run(subject)
    except CannotRun as exc:
        return Verdict(None, f"could not run: {exc}")
    except Overran as exc:
        if budget < chosen.deadline:  # the card's time ran out, not the check's own
            return Verdict(None, f"could not run: the card's {CARD_BUDGET:g} s ran out during it")
        return Verdict(False, _or_death(subject, str(exc)))
    except Failed as exc:
        return Verdict(False, _or_death(subject, str(exc)))
    except (OSError, ValueError, LookupError) as exc:
        # /proc gone (the program died), a reset, a refused connection: the program's doing.
        return Verdict(False, _or_death(subject, f"{type(exc).__name__}: {exc}"))
    except Exception as exc:  # the grader's own bug: a verdict of "could not run", not a crash
        return Verdict(None, f"could not run: the grader failed ({type(exc).__name__}: {exc})")


def _or_death(subject: Any, evidence: str) -> str:
    """A dead server is the likelier cause of a failure than what the check saw of it."""
    running = getattr(subject, "current", None)
    death = running.died() if running is not None else ""
    return f"{death}; {evidence}" if death and death not in evidence else evidence


def timed(chosen: Check, subject: Any, budget: float) -> tuple[Verdict, float]:
    began = time.monotonic()
    verdict = run_check(chosen, subject, budget)
    return verdict, time.monotonic() - began
