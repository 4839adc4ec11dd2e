"""Smoke: a server starts on a free port and two clients talk."""

from __future__ import annotations

from collections.abc import Callable

from tests.servers import LineClient


def test_a_plain_line_reaches_the_other_client(connect: Callable[..., LineClient]) -> None:
    alice, bob = connect(), connect()
    alice.say("hello 9f2c")
    bob.expect(rf"^{alice.name}: hello 9f2c$")
