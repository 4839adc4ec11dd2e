"""Waiting with a deadline, as every test does (harness/proc.py reads a process from /proc).

Tests never sleep in place of waiting for a condition: they poll the condition
with `wait_for`, which fails with a message naming what did not happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 5.0  # seconds; generous on a loaded 2-core machine, short enough to fail fast


def wait_for(
    predicate: Callable[[], T], what: str, timeout: float = DEADLINE, interval: float = 0.01
) -> T:
    """Return the first truthy value of `predicate()`, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)
