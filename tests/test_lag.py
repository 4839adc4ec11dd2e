"""The rules for a reader that lags (section_a/lag.py), as numbers: no sockets, no clock."""

from __future__ import annotations

from section_a.lag import LagRules

RULES = LagRules(sendq=1000, stall=1.0, max_lag=5.0)


def test_a_reader_lags_only_past_the_sendq() -> None:
    assert not RULES.lags(1000)
    assert RULES.lags(1001)


def test_a_reader_has_caught_up_once_back_under_half() -> None:
    assert not RULES.caught_up(501)
    assert RULES.caught_up(500)
    assert RULES.caught_up(0)


def test_a_reader_that_lags_and_took_nothing_for_the_stall_must_go() -> None:
    assert RULES.why_cut(11.0, backlog=2000, lagging_since=10.5, stalled_since=10.0) == (
        "backlog over 1000 bytes, nothing read for 1s"
    )
    assert RULES.why_cut(11.0, backlog=2000, lagging_since=10.5, stalled_since=10.01) == ""


def test_a_stalled_reader_that_does_not_lag_may_stay() -> None:
    assert RULES.why_cut(99.0, backlog=1000, lagging_since=0.0, stalled_since=10.0) == ""


def test_a_stalled_reader_must_go_at_once_past_the_hard_limit() -> None:
    assert RULES.why_cut(11.0, backlog=16001, lagging_since=10.9, stalled_since=10.9) == (
        "backlog over 16000 bytes and nothing read"
    )
    assert RULES.why_cut(11.0, backlog=16000, lagging_since=10.9, stalled_since=10.9) == ""
    assert RULES.why_cut(11.0, backlog=99999, lagging_since=10.9, stalled_since=0.0) == ""


def test_a_reader_that_lags_for_max_lag_must_go_though_it_reads() -> None:
    assert RULES.why_cut(15.0, backlog=2000, lagging_since=10.0, stalled_since=0.0) == (
        "backlog over 1000 bytes for 5s"
    )
    assert RULES.why_cut(14.99, backlog=2000, lagging_since=10.0, stalled_since=0.0) == ""


def test_a_stopped_reader_is_told_so_even_when_it_has_lagged_long_too() -> None:
    assert "nothing read" in RULES.why_cut(
        20.0, backlog=2000, lagging_since=10.0, stalled_since=10.0
    )


def test_the_defaults_are_the_readmes() -> None:
    # README, "Server options": --sendq 1 MiB; "nothing read for 1 s", "lags for 5 s".
    assert LagRules() == LagRules(sendq=1024 * 1024, patience=0.1, stall=1.0, max_lag=5.0, hard=16)
