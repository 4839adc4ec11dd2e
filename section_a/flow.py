"""Flow control: slow the senders when the whole room lags; optionally, limit each one's rate.

Every member has an output backlog: bytes the room has for it that its socket has
not taken yet. Two different situations make backlogs grow, and they need
opposite answers:

- one reader lags alone (it stopped reading, its window is tiny, its terminal is
  stuck): nobody else should wait for it. Its backlog grows until it passes the
  hard limit (``--sendq``) and the room cuts it.
- the room lags as a whole (many senders, a burst, a machine short of CPU): the
  readers are healthy, only outnumbered. Cutting them would lose their lines.
  Instead the senders pause: their threads stop reading from their sockets, so
  TCP pushes back on the sending clients, until the readers have caught up.

The line between the two, precisely: a member *lags* once its backlog passes the
high mark, and stops lagging once it is back under the low mark (hysteresis, so a
backlog near a mark does not flap). The room becomes *congested* once at least
``max(MIN_LAGGING, LAGGING_SHARE * members)`` members lag, and stays congested until
at most one member lags (hysteresis again: senders resume only when the room has
caught up, not when it is barely under the threshold). Until nobody lags at all, a
second laggard is enough to congest it again: the one still lagging when senders
resumed must not be left to fall further behind, pause after pause. One stuck reader (or a few,
in a large room) never congests the room; a quarter of the room lagging together is
not one slow reader but a room that writes faster than it reads.

One more thing keeps a congested room paused: a member that *holds* it, one whose
backlog is past ``--sendq`` and that is still reading (it took at least the low mark
in the current window of the outbox's stuck check, or in the last whole one). In a
room that lags as a whole, its readers do not all read equally fast: the kernel may
give one connection a smaller receive window than the others (seen at full size, in
about one run in thirty: one reader's receive queue stayed under about 100 KiB while
the others' held 300-700 KiB, and it read more slowly than they did). Resuming
the senders as soon as the others had drained would leave that one further behind,
pause after pause, until it was cut: a healthy reader, losing lines. Holding never
congests a room by itself, so a reader that lags alone in a room that keeps up still
slows nobody; and a reader that has stopped holds nothing (it takes nothing), so it
is cut as before.

Why these values, with the default 1 MiB ``--sendq``: the high mark is a quarter
of it, so a healthy reader in a lagging room is paused long before it could be cut,
with room for the lines already on their way when the pause starts: each sender
finishes the read in hand (at most 4 KiB, session.RECV_SIZE), so with 50 senders a
reader may still get about 230 KiB past the mark. The low mark is a sixteenth, so
senders resume while readers still have data to read and the pipe never runs dry.
A pause is bounded: a sender waits at most `MAX_PAUSE` seconds per episode of
congestion. If the laggards have not drained by then they are not slow but stuck,
and the sender goes on: the stuck readers' backlogs then reach the hard limit and
are cut, which ends the episode. This state is pure (no sockets) and is tested so.

Separately, and only when asked for (``--rate``), a `TokenBucket` per client limits
how fast one client's lines are carried out: lines over the rate wait, not lost.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

HIGH_MARK_SHARE = 4  # a member lags once its backlog is over sendq / 4 ...
LOW_MARK_SHARE = 16  # ... and stops lagging once it is back under sendq / 16
LAGGING_SHARE = 0.25  # the room is congested when this share of members lags ...
MIN_LAGGING = 2  # ... and never because of a single member
MAX_PAUSE = 5.0  # seconds a sender waits, at most, in one episode of congestion


class FlowControl:
    """Counts lagging members and makes senders wait while the room is congested.

    Members report their own transitions (`started_lagging`, `stopped_lagging`) from
    whichever thread changed their backlog; senders call `wait_for_room` before they
    read more. `close` releases every waiting sender for good.
    """

    def __init__(
        self,
        sendq: int,
        *,
        lagging_share: float = LAGGING_SHARE,
        min_lagging: int = MIN_LAGGING,
        max_pause: float = MAX_PAUSE,
    ) -> None:
        self.high_mark = sendq // HIGH_MARK_SHARE
        self.low_mark = sendq // LOW_MARK_SHARE
        self.lagging_share = lagging_share
        self.min_lagging = min_lagging
        self.max_pause = max_pause
        self._cond = threading.Condition(threading.Lock())
        self._members = 0
        self._lagging = 0
        self._holding = 0  # members past --sendq that still read: a congested room waits
        self._episode = 0  # counts the episodes of congestion: a sender waits once in each
        self._congested = False
        self._calm = True  # nobody has lagged since the last episode of congestion
        self._closed = False

    @property
    def congested(self) -> bool:
        return self._congested

    @property
    def lagging(self) -> int:
        return self._lagging

    @property
    def holding(self) -> int:
        return self._holding

    def _threshold(self) -> int:
        return max(self.min_lagging, math.ceil(self.lagging_share * self._members))

    def _update(self) -> None:
        # Called with the lock held, after any count changed.
        # Hysteresis for the room too: it becomes congested when a share of it lags, and
        # stays so until at most one member lags (that one may lag alone).
        # Until the room is calm again (nobody lags), a member still lagging after a pause
        # is not left to fall further behind alone: one more laggard congests the room.
        # A congested room also stays so while a member past --sendq still reads (holds it).
        if self._lagging == 0:
            self._calm = True
        calm_room = self._threshold() if self._calm else self.min_lagging
        limit = self.min_lagging if self._congested else calm_room
        held = self._congested and self._holding > 0
        congested = not self._closed and (self._lagging >= limit or held)
        if congested and not self._congested:
            self._episode += 1
            self._calm = False
            logger.debug(
                "room congested: %d of %d members lag; senders pause",
                self._lagging,
                self._members,
            )
        elif self._congested and not congested:
            logger.debug(
                "room drained: %d of %d members lag, %d hold it; senders resume",
                self._lagging,
                self._members,
                self._holding,
            )
            self._cond.notify_all()
        self._congested = congested

    def member_joined(self) -> None:
        with self._cond:
            self._members += 1
            self._update()

    def member_left(self, lagging: bool) -> None:
        with self._cond:
            self._members -= 1
            if lagging:
                self._lagging -= 1
            self._update()

    def started_lagging(self) -> None:
        with self._cond:
            self._lagging += 1
            self._update()

    def stopped_lagging(self) -> None:
        with self._cond:
            self._lagging -= 1
            self._update()

    def started_holding(self) -> None:
        with self._cond:
            self._holding += 1
            logger.debug("a reader past the limit still reads: a congested room waits for it")
            self._update()

    def stopped_holding(self) -> None:
        with self._cond:
            self._holding -= 1
            self._update()

    def wait_for_room(self, waited_episode: int = 0) -> int:
        """Block while the room is congested, at most `max_pause` in one episode.

        Pass back what the previous call returned: a sender that already waited the
        whole pause in this episode does not wait again until a new episode starts.
        Returns at once when the room is not congested (the common case costs one
        attribute read) and when the flow control is closed.
        """
        if not self._congested:
            return waited_episode
        with self._cond:
            episode = self._episode
            if episode == waited_episode:
                return waited_episode
            deadline = time.monotonic() + self.max_pause
            while self._congested and self._episode == episode:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.debug(
                        "sender paused %.1fs; laggards look stuck, going on", self.max_pause
                    )
                    return episode
                self._cond.wait(remaining)
            return waited_episode

    def close(self) -> None:
        """Release every waiting sender, now and from now on."""
        with self._cond:
            self._closed = True
            self._update()
            self._cond.notify_all()


class TokenBucket:
    """Flood control for one client: on average `rate` lines a second, `burst` at once.

    The bucket holds up to `burst` tokens and refills at `rate` a second; a line
    takes a token. Pure state with an injectable clock, so it is tested without time.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
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
