"""Latency statistics, the fixed-rate send schedule, and sampling.

Percentiles use the nearest-rank definition on the exact samples (no histogram buckets): the
p-th percentile of n sorted samples is the sample at rank ceil(p/100 * n).

Coordinated omission: a load generator that waits for a slow request before sending the next
one stops measuring exactly when the system is slow. In the fixed-rate run every record has an
*intended* send time on a fixed schedule (:class:`RateSchedule`) and its latencies are counted
from that time, not from when the generator got round to sending it; a stall therefore shows up
in the latency of every record that was due during it.

Sampling: at hundreds of thousands of records per second, timing every record would cost more
than producing it. The drivers time every ``stride``-th record (systematic sampling: every
position within a batch is sampled equally often, so the distribution is unbiased).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one latency distribution, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


def percentile(sorted_samples: list[int] | list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of non-empty, sorted samples."""
    if not sorted_samples:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    # Rounded first: 99.9 / 100 * 1000 is 999.0000000000001 in floating point, not 999.
    rank = math.ceil(round(p / 100 * len(sorted_samples), 9))
    return sorted_samples[max(rank, 1) - 1]


def summarize(samples_ns: Iterable[int]) -> LatencySummary | None:
    """Percentiles of latencies given in nanoseconds (None when there are none)."""
    ordered = sorted(samples_ns)
    if not ordered:
        return None
    return LatencySummary(
        count=len(ordered),
        p50_ms=percentile(ordered, 50) / NS_PER_MS,
        p99_ms=percentile(ordered, 99) / NS_PER_MS,
        p999_ms=percentile(ordered, 99.9) / NS_PER_MS,
        max_ms=ordered[-1] / NS_PER_MS,
    )


class RateSchedule:
    """Intended send times of ``total`` records at ``rate_per_s``, starting at ``start_ns``.

    Record i is due at ``start_ns + i / rate``. :meth:`due` says how many records are due by a
    given time, so a generator that fell behind sends the backlog at once (and its latencies,
    counted from :meth:`intended_ns`, include the delay) instead of silently sending less.
    """

    def __init__(self, start_ns: int, rate_per_s: float, total: int) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate must be positive, got {rate_per_s}")
        self.start_ns = start_ns
        self.rate_per_s = rate_per_s
        self.total = total

    def intended_ns(self, index: int) -> int:
        """When record ``index`` should be sent."""
        return self.start_ns + math.ceil(index * NS_PER_S / self.rate_per_s)

    def due(self, now_ns: int) -> int:
        """How many records (from the first) are due at ``now_ns``, at most ``total``."""
        if now_ns < self.start_ns:
            return 0
        elapsed_ns = now_ns - self.start_ns
        return min(self.total, math.floor(elapsed_ns * self.rate_per_s / NS_PER_S) + 1)


def sample_stride(rate_per_s: float, samples_per_s: float) -> int:
    """Time every n-th record so that about ``samples_per_s`` records per second are timed.

    A power of two, so strides chosen at slightly different rates agree.
    """
    if rate_per_s <= samples_per_s:
        return 1
    return 1 << int(math.log2(rate_per_s / samples_per_s))
