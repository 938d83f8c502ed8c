"""The workloads, after the OpenMessaging Benchmark, and what one run of them yields.

Every system is measured on one topic with 1 and 16 partitions, values of 100 B, 1 KiB and
10 KiB, one producer and one consumer, in three runs per (partitions, value size) cell:

* ``max-rate``: the producer sends as fast as it can for ``duration_s`` while the consumer
  tails the topic; the produce rate is records acknowledged per second (until the last
  acknowledgement), the consume rate records received per second (until the last one).
* ``fixed-rate``: the producer sends at 50% of the rate the max-rate run reached, on a fixed
  schedule, for ``duration_s``; latencies count from each record's intended send time
  (coordinated omission corrected, see ``latency``).
* ``backlog``: the producer sends ``records`` (as many as the max-rate run produced in
  ``duration_s``, at most a byte budget) with nobody consuming; then the consumer reads them
  all from the start. The two phases are measured separately (rates, CPU, disk writes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.latency import LatencySummary

MAX_RATE = "max-rate"
FIXED_RATE = "fixed-rate"
BACKLOG = "backlog"
KINDS = (MAX_RATE, FIXED_RATE, BACKLOG)

VALUE_SIZES = (100, 1024, 10240)
PARTITION_COUNTS = (1, 16)
FIXED_RATE_FRACTION = 0.5


def size_label(value_bytes: int) -> str:
    """``100 B``, ``1 KiB``, ``10 KiB``."""
    if value_bytes >= 1024 and value_bytes % 1024 == 0:
        return f"{value_bytes // 1024} KiB"
    return f"{value_bytes} B"


@dataclass(frozen=True)
class RunSpec:
    """One run: its kind and shape."""

    kind: str
    partitions: int
    value_bytes: int
    duration_s: float
    rate_per_s: float | None = None  # fixed-rate only
    records: int | None = None  # backlog only
    samples_per_s: float = 5_000.0  # how many records per second are timed (see latency)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown run kind {self.kind!r}")
        if self.kind == FIXED_RATE and not self.rate_per_s:
            raise ValueError("a fixed-rate run needs rate_per_s")
        if self.kind == BACKLOG and not self.records:
            raise ValueError("a backlog run needs records")


@dataclass(frozen=True)
class Phase:
    """Resources used by one phase of a run (backlog: produce, consume; others: run)."""

    name: str
    payload_bytes: int
    cpu_s: float
    disk_write_bytes: int | None
    other_cpu_s: float | None = None  # CPU used by everything else on the machine meanwhile
    wall_s: float = 0.0  # how long the phase took
    server_cpu_s: float | None = None  # the server processes' share of cpu_s (None: none)


@dataclass
class RunResult:
    """What one run measured. Rates and ratios are derived in ``report``."""

    spec: RunSpec
    produced: int = 0
    produce_s: float = 0.0
    consumed: int = 0
    consume_s: float = 0.0
    ack: LatencySummary | None = None
    e2e: LatencySummary | None = None
    phases: list[Phase] = field(default_factory=list)
    behind_schedule: bool = False  # fixed-rate: the producer could not keep the schedule
    failed_acks: int = 0  # among the timed (sampled) records
    error: str | None = None


@dataclass(frozen=True)
class Cell:
    """One (partitions, value size) combination, with its run lengths."""

    partitions: int
    value_bytes: int
    duration_s: float
    fixed_duration_s: float
    backlog_max_bytes: int


def cells(
    partitions: tuple[int, ...],
    value_sizes: tuple[int, ...],
    *,
    duration_s: float,
    fixed_duration_s: float,
    backlog_max_bytes: int,
) -> list[Cell]:
    """The cells of a plan, smaller values first."""
    return [
        Cell(p, v, duration_s, fixed_duration_s, backlog_max_bytes)
        for v in value_sizes
        for p in partitions
    ]


def fixed_rate_for(max_rate: RunResult) -> float | None:
    """The fixed-rate run's rate: half of what the max-rate run produced (None if it failed)."""
    if max_rate.error or not max_rate.produced or max_rate.produce_s <= 0:
        return None
    return FIXED_RATE_FRACTION * max_rate.produced / max_rate.produce_s


def backlog_records_for(max_rate: RunResult, cell: Cell) -> int | None:
    """The backlog run's size: what the max-rate run produced in its duration, within the
    byte budget (None if the max-rate run failed)."""
    if max_rate.error or not max_rate.produced:
        return None
    per_second = max_rate.produced / max_rate.produce_s
    within_budget = cell.backlog_max_bytes // cell.value_bytes
    return max(1, min(int(per_second * cell.duration_s), within_budget))
