"""When a reader falls behind: the room's rules as pure code, numbers in and verdicts out.

A reader *lags* once its backlog (bytes the room has for it that its socket has not
taken) passes --sendq, and stops lagging once it is back under half of it. While
anyone lags, a member's next line waits (room.py): a room that writes faster than
it is read slows its senders instead of losing lines. Two things end a lag other
than catching up, so that no reader can hold the room for long:

>>> rules = LagRules(sendq=1000, stall=1.0, max_lag=5.0)
>>> rules.lags(1001), rules.caught_up(600), rules.caught_up(500)
(True, False, True)
>>> rules.why_cut(now=10.0, lagging_since=9.5, last_taken=8.5)  # took nothing for 1.5 s
'backlog over 1000 bytes, nothing read for 1s'
>>> rules.why_cut(now=10.0, lagging_since=4.0, last_taken=9.9)  # reads, but lags 6 s
'backlog over 1000 bytes for 5s'
>>> rules.why_cut(now=10.0, lagging_since=9.5, last_taken=9.9)  # reads: it may stay
''

A reader that stops reading in a quiet room took its last bytes long before its
backlog passed the limit, so it is cut at once, and holds up nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

SENDQ = 1024 * 1024  # bytes of backlog past which a reader lags (--sendq)
STALL = 1.0  # seconds a lagging reader may take nothing: then it has stopped reading
MAX_LAG = 5.0  # seconds a reader may lag: then it reads too slowly for the room


@dataclass(frozen=True)
class LagRules:
    """The limit and the two clocks of a reader that lags."""

    sendq: int = SENDQ
    stall: float = STALL
    max_lag: float = MAX_LAG

    def lags(self, backlog: int) -> bool:
        """Whether a backlog this big makes its reader lag."""
        return backlog > self.sendq

    def caught_up(self, backlog: int) -> bool:
        """Whether a reader that lags has caught up, with its backlog this big."""
        return backlog <= self.sendq // 2

    def why_cut(self, now: float, lagging_since: float, last_taken: float) -> str:
        """Why a reader that lags must go, or "" while it may stay."""
        if now - last_taken >= self.stall:
            return f"backlog over {self.sendq} bytes, nothing read for {self.stall:g}s"
        if now - lagging_since >= self.max_lag:
            return f"backlog over {self.sendq} bytes for {self.max_lag:g}s"
        return ""

    def next_look(self, lagging_since: float, last_taken: float) -> float:
        """When `why_cut` may next have something to say about that reader."""
        return min(last_taken + self.stall, lagging_since + self.max_lag)
