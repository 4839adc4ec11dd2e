"""Group delivery (section_a/fanout.py), without sockets: recipients that record what they get."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from section_a.fanout import LATER, Fanout
from tests.support import wait_for

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(30)]

WAIT = 5.0  # seconds: a deadline for what a test waits on, never a pause


class Reader:
    """A recipient that records each send; `gate`, when set up, holds its sends back."""

    def __init__(self, since: int = 0) -> None:
        self.since = since
        self.got: list[bytes] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def send(self, data: bytes) -> bool:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        self.got.append(data)
        return True


class Room:
    """The part of a chat room that Fanout needs: a lock, the members, a timer.

    The timer only records its jobs: a test runs them when it wants (`run_later`).
    """

    def __init__(self, *members: Reader) -> None:
        self.lock = threading.Lock()
        self.members: tuple[Reader, ...] = members
        self.jobs: list[tuple[float, Callable[[], None]]] = []
        self.fanout = Fanout(
            self.lock, lambda: self.members, 1024, lambda delay, job: self.jobs.append((delay, job))
        )

    def run_later(self) -> None:
        jobs, self.jobs = self.jobs, []
        for _, job in jobs:
            job()

    def post(self, data: bytes, exclude: object = None) -> int:
        with self.lock:
            return self.fanout.post(data, exclude)

    def say(self, data: bytes, exclude: object = None) -> None:
        self.fanout.deliver(self.post(data, exclude))


def hold_a_pass(room: Room, stuck: Reader) -> tuple[threading.Thread, threading.Event]:
    """Start a pass of "a", held open in `stuck`'s send until the returned gate is set."""
    gate = stuck.gate = threading.Event()
    first = threading.Thread(target=room.say, args=(b"a\n",))
    first.start()
    assert stuck.entered.wait(WAIT)  # pass 1 is under way
    return first, gate


def test_a_line_reaches_everyone_but_whom_it_excludes() -> None:
    alice, bob, carol = Reader(), Reader(), Reader()
    room = Room(alice, bob, carol)
    room.say(b"hi\n", exclude=alice)
    assert (alice.got, bob.got, carol.got) == ([], [b"hi\n"], [b"hi\n"])


def test_a_newcomer_gets_only_what_was_posted_after_it_joined() -> None:
    alice = Reader()
    room = Room(alice)
    before = room.post(b"before\n")
    bob = Reader()
    with room.lock:
        bob.since = room.fanout.post(b"bob joined\n", exclude=bob)
        room.members += (bob,)
    after = room.post(b"after\n")
    room.fanout.deliver(after)  # one pass carries all three entries
    assert before < bob.since < after
    assert room.fanout.passes == 1
    assert alice.got == [b"before\nbob joined\nafter\n"]
    assert bob.got == [b"after\n"]


def test_a_notice_posted_for_later_goes_out_with_the_next_line() -> None:
    alice, bob = Reader(), Reader()
    room = Room(alice, bob)
    with room.lock:
        room.fanout.post_later(b"carol joined\n")
        room.fanout.post_later(b"dave joined\n")
    assert alice.got == [] and [delay for delay, _ in room.jobs] == [LATER]  # one job for both
    room.say(b"alice: hi\n", exclude=alice)
    assert bob.got == [b"carol joined\ndave joined\nalice: hi\n"]
    assert alice.got == [b"carol joined\ndave joined\n"]
    room.run_later()  # the job finds nothing left to do
    assert room.fanout.passes == 1


def test_a_notice_nobody_follows_is_delivered_by_the_timed_job() -> None:
    alice = Reader()
    room = Room(alice)
    with room.lock:
        room.fanout.post_later(b"bob left\n")
    room.run_later()
    assert alice.got == [b"bob left\n"]
    with room.lock:
        room.fanout.post_later(b"carol left\n")
    assert len(room.jobs) == 1  # a new job once the last one ran


def test_settle_delivers_everything_posted_before_it() -> None:
    alice = Reader()
    room = Room(alice)
    with room.lock:
        room.fanout.post_later(b"bob joined\n")
    room.fanout.settle()
    assert alice.got == [b"bob joined\n"]


def test_the_timed_job_comes_back_while_a_pass_is_under_way() -> None:
    stuck = Reader()
    room = Room(stuck)
    first, gate = hold_a_pass(room, stuck)
    with room.lock:
        room.fanout.post_later(b"bob left\n")
    room.run_later()  # a pass is under way: it schedules itself again, it does not wait
    assert [delay for delay, _ in room.jobs] == [LATER]
    gate.set()
    first.join(WAIT)
    room.run_later()
    assert stuck.got == [b"a\n", b"bob left\n"]


def test_lines_posted_during_a_pass_all_go_in_the_next_one() -> None:
    """The group commit: one send per reader for every line that gathered meanwhile."""
    stuck, reader = Reader(), Reader()
    room = Room(stuck, reader)
    first, gate = hold_a_pass(room, stuck)
    waiting = [threading.Thread(target=room.say, args=(line,)) for line in (b"b\n", b"c\n")]
    for thread in waiting:
        thread.start()
    # say() posts before it waits: both are queued while pass 1 is still held open.
    wait_for(lambda: room.fanout.posted == 3, "b and c to be posted", WAIT)
    gate.set()
    for thread in (first, *waiting):
        thread.join(WAIT)
        assert not thread.is_alive()
    assert room.fanout.passes == 2
    assert reader.got == [b"a\n", b"b\nc\n"]
    assert stuck.got == reader.got


def test_the_poster_that_waited_longest_delivers_the_next_pass() -> None:
    """A pass wakes the posters it served and hands the next pass to the oldest one left,
    not to whichever of them all wakes first."""

    class Witness(Reader):
        def __init__(self) -> None:
            super().__init__()
            self.senders: list[str] = []  # the thread that made each send

        def send(self, data: bytes) -> bool:
            self.senders.append(threading.current_thread().name)
            return super().send(data)

    stuck, witness = Reader(), Witness()
    room = Room(stuck, witness)
    first, gate = hold_a_pass(room, stuck)
    posters: list[threading.Thread] = []

    def all_posters_wait() -> bool:
        return room.fanout.waiting == len(posters)

    for line in (b"b\n", b"c\n", b"d\n"):
        poster = threading.Thread(target=room.say, args=(line,), name=f"poster-{line[:1].decode()}")
        poster.start()
        posters.append(poster)
        wait_for(all_posters_wait, f"{poster.name} to wait", WAIT)  # so they wait in this order
    gate.set()
    for thread in (first, *posters):
        thread.join(WAIT)
        assert not thread.is_alive()
    assert witness.got == [b"a\n", b"b\nc\nd\n"]
    assert witness.senders == [first.name, "poster-b"]
    assert room.fanout.waiting == 0


def test_a_pass_carries_at_most_max_bytes_and_always_one_entry() -> None:
    reader = Reader()
    room = Room(reader)  # max_bytes=1024
    for data in (b"a" * 600, b"b" * 600, b"c" * 300, b"d" * 2000):
        room.post(data)
    room.fanout.deliver(room.fanout.posted)  # delivers pass after pass until the last
    assert reader.got == [b"a" * 600, b"b" * 600 + b"c" * 300, b"d" * 2000]
    assert room.fanout.passes == 3


def test_deliver_returns_only_once_its_line_is_handed_over() -> None:
    stuck, reader = Reader(), Reader()
    room = Room(stuck, reader)
    first, gate = hold_a_pass(room, stuck)
    returned = threading.Event()

    def second() -> None:
        room.say(b"b\n")
        returned.set()

    other = threading.Thread(target=second)
    other.start()
    assert not returned.wait(0.2)  # pass 1 is held, so b cannot have gone out yet
    gate.set()
    assert returned.wait(WAIT)
    assert reader.got[-1].endswith(b"b\n")
    first.join(WAIT)
    other.join(WAIT)


def test_a_failing_pass_does_not_leave_the_room_stuck() -> None:
    class Broken(Reader):
        def send(self, data: bytes) -> bool:
            raise RuntimeError("a bug in a recipient")

    reader = Reader()
    room = Room(Broken(), reader)
    with pytest.raises(RuntimeError):
        room.say(b"lost\n")
    room.members = (reader,)
    done = threading.Thread(target=room.say, args=(b"next\n",))
    done.start()
    done.join(WAIT)
    assert not done.is_alive()
    assert reader.got == [b"next\n"]


def test_everyone_receives_the_room_in_the_same_order() -> None:
    """Eight threads post 200 lines each at once. A listener that never speaks hears
    the room's order; every talker hears that order without its own lines."""
    talkers = [Reader() for _ in range(8)]
    listener = Reader()
    room = Room(*talkers, listener)
    start = threading.Barrier(len(talkers))

    def talk(me: Reader, who: int) -> None:
        start.wait(WAIT)
        for n in range(200):
            room.say(b"%d:%d\n" % (who, n), exclude=me)

    threads = [threading.Thread(target=talk, args=(r, i)) for i, r in enumerate(talkers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 4)
        assert not thread.is_alive()
    order = b"".join(listener.got).splitlines()
    assert len(order) == 8 * 200
    for who in range(8):
        said = [line for line in order if line.startswith(b"%d:" % who)]
        assert said == [b"%d:%d" % (who, n) for n in range(200)]
    for who, talker in enumerate(talkers):
        heard = b"".join(talker.got).splitlines()
        assert heard == [line for line in order if not line.startswith(b"%d:" % who)]
