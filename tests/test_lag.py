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


def test_a_reader_that_took_nothing_for_the_stall_must_go() -> None:
    assert RULES.why_cut(now=11.0, lagging_since=10.5, last_taken=10.0) == (
        "backlog over 1000 bytes, nothing read for 1s"
    )
    assert RULES.why_cut(now=11.0, lagging_since=10.5, last_taken=10.01) == ""


def test_a_reader_that_lags_for_max_lag_must_go_though_it_reads() -> None:
    assert RULES.why_cut(now=15.0, lagging_since=10.0, last_taken=14.9) == (
        "backlog over 1000 bytes for 5s"
    )
    assert RULES.why_cut(now=14.99, lagging_since=10.0, last_taken=14.9) == ""


def test_a_stopped_reader_is_told_so_even_when_it_has_lagged_long_too() -> None:
    assert "nothing read" in RULES.why_cut(now=20.0, lagging_since=10.0, last_taken=10.0)


def test_the_next_look_is_the_sooner_of_the_two_clocks() -> None:
    assert RULES.next_look(lagging_since=10.0, last_taken=12.0) == 13.0  # the stall first
    assert RULES.next_look(lagging_since=10.0, last_taken=14.5) == 15.0  # max lag first


def test_the_defaults_are_the_readmes() -> None:
    # README, "Server options": --sendq 1 MiB; "nothing read for 1 s", "lags for 5 s".
    assert LagRules() == LagRules(sendq=1024 * 1024, stall=1.0, max_lag=5.0)
