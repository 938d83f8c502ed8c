"""Run shapes: validation, and how the fixed-rate and backlog runs follow the max-rate run."""

from __future__ import annotations

import pytest

from bench.workloads import (
    BACKLOG,
    FIXED_RATE,
    MAX_RATE,
    Cell,
    RunResult,
    RunSpec,
    backlog_records_for,
    cells,
    fixed_rate_for,
    size_label,
)


def _max_rate(produced: int, seconds: float, error: str | None = None) -> RunResult:
    spec = RunSpec(MAX_RATE, partitions=1, value_bytes=1000, duration_s=5.0)
    return RunResult(spec=spec, produced=produced, produce_s=seconds, error=error)


def test_fixed_rate_is_half_the_max_rate() -> None:
    assert fixed_rate_for(_max_rate(10_000, 2.0)) == 2_500.0
    assert fixed_rate_for(_max_rate(10_000, 2.0, error="boom")) is None
    assert fixed_rate_for(_max_rate(0, 2.0)) is None


def test_backlog_is_the_max_rate_over_the_duration_within_the_byte_budget() -> None:
    cell = Cell(1, 1000, duration_s=5.0, fixed_duration_s=10.0, backlog_max_bytes=10**9)
    assert backlog_records_for(_max_rate(10_000, 2.0), cell) == 25_000
    small = Cell(1, 1000, duration_s=5.0, fixed_duration_s=10.0, backlog_max_bytes=10**6)
    assert backlog_records_for(_max_rate(10_000, 2.0), small) == 1000
    assert backlog_records_for(_max_rate(10_000, 2.0, error="boom"), cell) is None


def test_specs_need_their_kind_s_parameters() -> None:
    with pytest.raises(ValueError):
        RunSpec(FIXED_RATE, partitions=1, value_bytes=100, duration_s=1.0)
    with pytest.raises(ValueError):
        RunSpec(BACKLOG, partitions=1, value_bytes=100, duration_s=1.0)
    with pytest.raises(ValueError):
        RunSpec("burst", partitions=1, value_bytes=100, duration_s=1.0)


def test_cells_cover_every_combination_smaller_values_first() -> None:
    plan = cells((1, 16), (100, 1024), duration_s=1.0, fixed_duration_s=2.0,
                 backlog_max_bytes=100)
    assert [(c.value_bytes, c.partitions) for c in plan] == [
        (100, 1), (100, 16), (1024, 1), (1024, 16)]


@pytest.mark.parametrize(("size", "label"), [(100, "100 B"), (1024, "1 KiB"),
                                             (10240, "10 KiB"), (1500, "1500 B")])
def test_size_labels(size: int, label: str) -> None:
    assert size_label(size) == label
