"""When a reader falls behind: the room's whole lag policy, as pure code.

What a reader's socket cannot take yet waits in that reader's *backlog*, which a
thread of its own writes with blocking sends (outbox.py). Each of those sends waits
at most PATIENCE; so every PATIENCE at the latest, the writer knows whether its
reader took anything, and judges it by these rules:

- A reader *lags* once its backlog passes --sendq, and stops lagging once it is
  back under half of it (the half is hysteresis: a room waits once a burst, not
  once a line).
- While a reader lags and reads, a member who said a line waits for it: a room
  written faster than it is read slows its senders, and nobody loses a line.
- A reader whose socket took nothing for PATIENCE is *stalled*: nobody waits for
  it, so a reader that stopped reading costs the others at most PATIENCE, once.
- A stalled reader that lags and has taken nothing for STALL is cut: it stopped
  reading. So is one whose backlog passes HARD x --sendq meanwhile: nobody waits
  for it, so without this its backlog would grow as fast as the room talks. One
  that does not lag holds at most --sendq: it may stay, as a client that only
  talks, or is paused for a while in a quiet room, does.
- A reader that lags for MAX_LAG is cut: it reads, but too slowly for the room.

>>> rules = LagRules(sendq=1000, stall=1.0, max_lag=5.0)
>>> rules.lags(1001), rules.caught_up(600), rules.caught_up(500)
(True, False, True)
>>> rules.why_cut(10.0, backlog=2000, lagging_since=9.0, stalled_since=8.5)  # 1.5 s, nothing
'backlog over 1000 bytes, nothing read for 1s'
>>> rules.why_cut(10.0, backlog=10, lagging_since=0.0, stalled_since=8.5)  # it does not lag
''
>>> rules.why_cut(10.0, backlog=16001, lagging_since=9.9, stalled_since=9.9)  # and a big one
'backlog over 16000 bytes and nothing read'
>>> rules.why_cut(10.0, backlog=2000, lagging_since=4.0, stalled_since=0.0)  # reads, lags 6 s
'backlog over 1000 bytes for 5s'
>>> rules.why_cut(10.0, backlog=16001, lagging_since=9.5, stalled_since=0.0)  # it reads: stays
''
"""

from __future__ import annotations

from dataclasses import dataclass

SENDQ = 1024 * 1024  # bytes of backlog past which a reader lags (--sendq)
PATIENCE = 0.1  # seconds one send may take nothing: then its reader is stalled
STALL = 1.0  # seconds a reader that lags may take nothing: then it is cut
MAX_LAG = 5.0  # seconds a reader may lag: then it reads too slowly for the room
HARD = 16  # times --sendq: the most a stalled reader's backlog may hold


@dataclass(frozen=True)
class LagRules:
    """The limit and the clocks of a reader that falls behind."""

    sendq: int = SENDQ
    patience: float = PATIENCE
    stall: float = STALL
    max_lag: float = MAX_LAG
    hard: int = HARD

    def lags(self, backlog: int) -> bool:
        """Whether a backlog this big makes a reader that did not lag lag."""
        return backlog > self.sendq

    def caught_up(self, backlog: int) -> bool:
        """Whether a reader that lags has caught up, with its backlog this big."""
        return backlog <= self.sendq // 2

    def why_cut(self, now: float, backlog: int, lagging_since: float, stalled_since: float) -> str:
        """Why a reader must go, or "" while it may stay (a time 0.0: it does not lag, or takes)."""
        if lagging_since and stalled_since and now - stalled_since >= self.stall:
            return f"backlog over {self.sendq} bytes, nothing read for {self.stall:g}s"
        if stalled_since and backlog > self.hard * self.sendq:
            return f"backlog over {self.hard * self.sendq} bytes and nothing read"
        if lagging_since and now - lagging_since >= self.max_lag:
            return f"backlog over {self.sendq} bytes for {self.max_lag:g}s"
        return ""
