"""The flusher's timed jobs (section_a/outbox.py `Flusher.call_later`), with no sockets."""

from __future__ import annotations

import threading
import time

import pytest

from section_a.outbox import Flusher

pytestmark = [pytest.mark.stage_a, pytest.mark.timeout(10)]

WAIT = 5.0  # seconds: a deadline, never a pause


def test_jobs_run_in_the_flusher_thread_in_the_order_they_fall_due(flusher: Flusher) -> None:
    ran: list[tuple[str, str]] = []
    done = threading.Event()

    def job(name: str) -> None:
        ran.append((name, threading.current_thread().name))
        if name == "late":
            done.set()

    started = time.monotonic()
    flusher.call_later(0.2, lambda: job("late"))
    flusher.call_later(0.05, lambda: job("soon"))
    assert done.wait(WAIT)
    assert time.monotonic() - started >= 0.2
    assert ran == [("soon", "flusher"), ("late", "flusher")]


def test_a_failing_job_is_logged_and_the_next_still_runs(
    flusher: Flusher, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("a bug")

    flusher.call_later(0.0, broken)
    flusher.call_later(0.01, done.set)
    assert done.wait(WAIT)
    assert "a timed job failed" in caplog.text


def test_stop_drops_the_jobs_not_yet_due() -> None:
    flusher = Flusher()
    flusher.start()
    ran = threading.Event()
    flusher.call_later(60.0, ran.set)
    started = time.monotonic()
    flusher.stop(WAIT)
    assert time.monotonic() - started < WAIT  # it did not wait for the job
    flusher.call_later(0.0, ran.set)  # after stop: ignored
    assert not ran.is_set()


def test_stop_ends_the_thread_even_while_timers_are_being_added() -> None:
    """stop() wakes the thread through the same eventfd as call_later: a timer's wake and
    stop's, read together, must not leave the thread asleep in epoll. Before the fix, one
    run in two or three of this test left a thread running, and the server then logged a
    traceback at exit (its next wait was on the closed epoll)."""
    for _ in range(1000):
        flusher = Flusher()
        flusher.start()
        adding = threading.Event()

        def add_timers(flusher: Flusher = flusher, adding: threading.Event = adding) -> None:
            adding.set()
            for _ in range(200):
                flusher.call_later(60.0, lambda: None)  # never due: only the wakes matter

        adder = threading.Thread(target=add_timers)
        adder.start()
        adding.wait(WAIT)
        flusher.stop(WAIT)
        adder.join(WAIT)
        assert not flusher._thread.is_alive(), "stop() left the flusher thread running"
