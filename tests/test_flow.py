"""The room's flow control as pure state: marks, congestion, pause and resume, without sockets."""

from __future__ import annotations

import threading
import time

import pytest

from section_a.flow import MIN_LAGGING, FlowControl, TokenBucket
from tests.support import wait_for

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(10)]

SENDQ = 1024 * 1024


def room_of(members: int, **options: float) -> FlowControl:
    flow = FlowControl(SENDQ, **options)  # type: ignore[arg-type]
    for _ in range(members):
        flow.member_joined()
    return flow


class Sender(threading.Thread):
    """A thread that calls wait_for_room once, like a session before its next recv()."""

    def __init__(self, flow: FlowControl, episode: int = 0) -> None:
        super().__init__(daemon=True)
        self.flow = flow
        self.episode = episode
        self.returned: int | None = None
        self.started_waiting = threading.Event()

    def run(self) -> None:
        self.started_waiting.set()
        self.returned = self.flow.wait_for_room(self.episode)


def test_marks_are_a_quarter_and_a_sixteenth_of_sendq() -> None:
    flow = FlowControl(SENDQ)
    assert (flow.high_mark, flow.low_mark) == (SENDQ // 4, SENDQ // 16)


def test_one_lagging_reader_never_congests_the_room() -> None:
    for members in (2, 3, 10, 51):
        flow = room_of(members)
        flow.started_lagging()
        assert not flow.congested, f"one laggard of {members} congested the room"


def test_a_quarter_of_the_room_lagging_congests_it_until_at_most_one_lags() -> None:
    flow = room_of(40)  # threshold: 10
    for _ in range(9):
        flow.started_lagging()
    assert not flow.congested
    flow.started_lagging()
    assert flow.congested
    for _ in range(8):  # hysteresis: 9 down to 2 laggards, still congested
        flow.stopped_lagging()
        assert flow.congested
    flow.stopped_lagging()  # one left: it may lag alone
    assert not flow.congested


def test_small_rooms_need_at_least_two_laggards() -> None:
    flow = room_of(2)
    flow.started_lagging()
    assert not flow.congested
    flow.started_lagging()
    assert flow.congested
    assert MIN_LAGGING == 2


def test_a_laggard_that_leaves_is_no_longer_counted() -> None:
    flow = room_of(4)
    flow.started_lagging()
    flow.started_lagging()
    assert flow.congested
    flow.member_left(lagging=True)
    assert not flow.congested
    assert flow.lagging == 1


def test_the_room_growing_does_not_clear_congestion_while_two_still_lag() -> None:
    flow = room_of(8)  # threshold 2
    flow.started_lagging()
    flow.started_lagging()
    assert flow.congested
    for _ in range(4):  # 12 members: a newly congested room would need 3
        flow.member_joined()
    assert flow.congested


def test_wait_returns_at_once_when_the_room_is_clear() -> None:
    flow = room_of(10)
    started = time.monotonic()
    assert flow.wait_for_room(0) == 0
    assert time.monotonic() - started < 0.5


def test_a_paused_sender_resumes_when_the_room_drains() -> None:
    flow = room_of(4)
    flow.started_lagging()
    flow.started_lagging()
    sender = Sender(flow)
    sender.start()
    sender.started_waiting.wait(5)
    sender.join(0.2)
    assert sender.is_alive(), "the sender did not pause while the room was congested"
    flow.stopped_lagging()
    sender.join(5)
    assert not sender.is_alive(), "the sender did not resume when the room drained"
    assert sender.returned == 0  # drained, not timed out: it will pause again next time


def test_closing_releases_a_paused_sender_and_later_ones() -> None:
    flow = room_of(4)
    flow.started_lagging()
    flow.started_lagging()
    sender = Sender(flow)
    sender.start()
    sender.started_waiting.wait(5)
    sender.join(0.2)
    assert sender.is_alive()
    flow.close()
    sender.join(5)
    assert not sender.is_alive(), "close() did not release the paused sender"
    assert not flow.congested
    flow.started_lagging()  # later reports do not congest a closed room
    later = Sender(flow)
    later.start()
    later.join(5)
    assert not later.is_alive()


def test_a_pause_is_bounded_and_taken_once_per_episode() -> None:
    flow = room_of(4, max_pause=0.2)
    flow.started_lagging()
    flow.started_lagging()  # the laggards are stuck: they never drain
    started = time.monotonic()
    episode = flow.wait_for_room(0)
    assert 0.15 < time.monotonic() - started < 3.0
    assert episode != 0, "a timed-out pause must say which episode it waited out"
    started = time.monotonic()
    assert flow.wait_for_room(episode) == episode  # same episode: no second pause
    assert time.monotonic() - started < 0.15
    # The episode ends, a new one starts: the sender pauses again.
    flow.stopped_lagging()
    flow.started_lagging()
    sender = Sender(flow, episode)
    sender.start()
    sender.started_waiting.wait(5)
    sender.join(0.05)
    assert sender.is_alive(), "a new episode of congestion did not pause the sender"
    sender.join(5)


def test_many_paused_senders_all_resume() -> None:
    flow = room_of(8)
    flow.started_lagging()
    flow.started_lagging()
    senders = [Sender(flow) for _ in range(20)]
    for sender in senders:
        sender.start()
    wait_for(lambda: all(s.started_waiting.is_set() for s in senders), "senders to start")
    flow.stopped_lagging()
    for sender in senders:
        sender.join(5)
    assert not any(s.is_alive() for s in senders)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_bucket_grants_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert bucket.take(8) == 5
    assert bucket.take(1) == 0
    assert bucket.delay() == pytest.approx(0.1)
    clock.now += 0.25
    assert bucket.take(8) == 2
    clock.now += 60  # idle time refills up to the burst, never beyond
    assert bucket.take(100) == 5


def test_until_the_room_is_calm_one_more_laggard_congests_it_again() -> None:
    flow = room_of(40)  # a calm room needs 10 laggards
    for _ in range(10):
        flow.started_lagging()
    for _ in range(9):  # one is left lagging: the senders resume
        flow.stopped_lagging()
    assert not flow.congested
    flow.started_lagging()  # not calm yet: a second laggard is enough
    assert flow.congested
    flow.stopped_lagging()
    flow.stopped_lagging()  # nobody lags: calm again
    flow.started_lagging()
    flow.started_lagging()
    assert not flow.congested


def congested_room_of_forty() -> FlowControl:
    """40 members, 10 of them lagging: a quarter, so the room is congested."""
    flow = room_of(40)
    for _ in range(10):
        flow.started_lagging()
    assert flow.congested
    return flow


def test_a_reader_past_sendq_that_still_reads_keeps_a_congested_room_paused() -> None:
    flow = congested_room_of_forty()
    flow.started_holding()  # one laggard is past --sendq, and reading
    for _ in range(9):  # the other nine catch up: it is left lagging alone
        flow.stopped_lagging()
    assert flow.congested, "resumed, leaving a reader that still reads to be cut"
    sender = Sender(flow, episode=0)
    sender.start()
    sender.started_waiting.wait(5)
    flow.stopped_holding()  # back under --sendq: the senders resume
    assert not flow.congested
    sender.join(5)
    assert sender.returned == 0, "the paused sender did not resume"


def test_holding_never_congests_a_room_by_itself() -> None:
    """A reader past --sendq in a room that keeps up lags alone: it slows nobody."""
    flow = room_of(40)
    flow.started_lagging()
    flow.started_holding()
    assert not flow.congested
    flow.started_lagging()  # not a quarter of the room either
    assert not flow.congested


def test_closing_releases_a_room_that_is_held() -> None:
    flow = congested_room_of_forty()
    flow.started_holding()
    sender = Sender(flow, episode=0)
    sender.start()
    sender.started_waiting.wait(5)
    flow.close()
    sender.join(5)
    assert not sender.is_alive() and not flow.congested
