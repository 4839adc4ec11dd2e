"""What a run of the load generator found: a `Delivery` (fan-out, steady) or a `Churn`."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from harness.clients import Client


@dataclass(frozen=True)
class Delivery:
    """What one run delivered, per receiver (keyed by `Client.index`)."""

    expected: dict[int, int]  # load lines each receiver should get
    received: dict[int, int]  # load lines each receiver got
    disordered: frozenset[int]  # receivers that got a sender's lines out of order, or altered
    cut: frozenset[int]  # receivers that got EOF (or a reset) from the server
    elapsed: float  # seconds from the first line sent to the last one received
    checked: bool  # whether order (and content) were checked, or lines only counted
    latencies_ns: tuple[int, ...] = ()  # send-to-receive time of every line (steady only)

    @classmethod
    def of(
        cls, receivers: Sequence[Client], expected: dict[int, int], elapsed: float, checked: bool
    ) -> Delivery:
        """What `receivers` got of what they `expected`, once a run is over."""
        return cls(
            expected=expected,
            received={r.index: r.load_lines for r in receivers},
            disordered=frozenset(r.index for r in receivers if r.disordered),
            cut=frozenset(r.index for r in receivers if r.cut),
            elapsed=elapsed,
            checked=checked,
            latencies_ns=tuple(itertools.chain.from_iterable(r.latencies for r in receivers)),
        )

    @property
    def lost(self) -> dict[int, int]:
        """Lines missing at receivers that were not cut (a cut sender's unread lines too)."""
        return {
            i: self.expected[i] - self.received[i]
            for i in self.expected
            if i not in self.cut and self.received[i] < self.expected[i]
        }

    @property
    def extra(self) -> dict[int, int]:
        """Lines past the expected count, by receiver: duplicated (or from elsewhere).

        The one check of content a count-only run makes. It cannot see a duplicate that
        makes up for a lost line (the count is right); only a checked run (`fan_out` with
        `verify`, `steady`) sees those, as disorder.
        """
        return {i: self.received[i] - n for i, n in self.expected.items() if self.received[i] > n}

    @property
    def delivered(self) -> int:
        return sum(self.received.values())

    @property
    def rate(self) -> float:
        """Delivered lines per second, over all receivers."""
        return self.delivered / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self, quantile: float) -> float:
        """The `quantile` (0.5, 0.99; 1.0 for the maximum) of delivery latency, in ms."""
        if not self.latencies_ns:
            raise ValueError("no latencies: only steady() stamps its lines")
        if quantile >= 1.0 or len(self.latencies_ns) < 2:
            return max(self.latencies_ns) / 1e6
        cuts = statistics.quantiles(self.latencies_ns, n=1000, method="inclusive")
        return cuts[round(quantile * 1000) - 1] / 1e6

    def summary(self) -> str:
        text = (
            f"{self.delivered:,} lines delivered in {self.elapsed:.2f}s "
            f"({self.rate:,.0f} lines/s); lost {sum(self.lost.values()):,}"
            f"{' (counting lines cut senders never sent)' if self.lost and self.cut else ''}, "
            f"extra {sum(self.extra.values()):,}, cut {len(self.cut)}, "
            f"out of order {len(self.disordered) if self.checked else 'unchecked'}"
        )
        if self.latencies_ns:
            text += (
                f"; latency p50 {self.latency_ms(0.5):.1f} ms, p99 {self.latency_ms(0.99):.1f} ms,"
                f" max {self.latency_ms(1.0):.1f} ms"
            )
        return text


@dataclass(frozen=True)
class Churn:
    """What `Swarm.churn` did: cycles completed and failed, and how fast."""

    completed: int
    failures: tuple[str, ...]  # why each failed cycle failed
    elapsed: float

    @property
    def rate(self) -> float:
        """Completed connect-send-disconnect cycles per second."""
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0
