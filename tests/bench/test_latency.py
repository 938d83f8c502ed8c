"""Percentiles, the fixed-rate schedule and sampling strides."""

from __future__ import annotations

import pytest

from bench.latency import RateSchedule, percentile, sample_stride, summarize


def test_percentile_is_nearest_rank() -> None:
    samples = list(range(1, 101))  # 1..100
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 99.9) == 100
    assert percentile(samples, 100) == 100
    assert percentile([7], 50) == 7
    assert percentile([1, 2], 50) == 1


@pytest.mark.parametrize("p", [0, -1, 100.1])
def test_percentile_rejects_out_of_range(p: float) -> None:
    with pytest.raises(ValueError):
        percentile([1, 2, 3], p)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarize_converts_nanoseconds_to_milliseconds_and_ignores_order() -> None:
    samples = [5_000_000, 1_000_000] + [2_000_000] * 998  # 1000 samples
    summary = summarize(iter(samples))
    assert summary is not None
    assert summary.count == 1000
    assert summary.p50_ms == 2.0
    assert summary.p99_ms == 2.0
    assert summary.p999_ms == 2.0  # rank 999 of 1000
    assert summary.max_ms == 5.0
    assert summarize([]) is None


def test_schedule_due_counts_agree_with_intended_times() -> None:
    schedule = RateSchedule(start_ns=1_000, rate_per_s=1000.0, total=50)  # one per ms
    assert schedule.due(999) == 0
    assert schedule.due(1_000) == 1
    for index in range(50):
        intended = schedule.intended_ns(index)
        assert intended == 1_000 + index * 1_000_000
        assert schedule.due(intended) == index + 1
        assert schedule.due(intended - 1) == index
    assert schedule.due(10**15) == 50


def test_schedule_at_a_fractional_interval_never_makes_a_record_due_before_its_time() -> None:
    schedule = RateSchedule(start_ns=0, rate_per_s=3.0, total=10**6)  # 333,333,333.3 ns apart
    for index in range(1, 200):
        intended = schedule.intended_ns(index)
        assert schedule.due(intended) == index + 1
        assert schedule.due(intended - 1) == index


def test_coordinated_omission_a_stall_delays_every_record_due_during_it() -> None:
    """A generator stalled for 100 ms at a 1 ms schedule sends the 100 records due meanwhile
    at once; counted from their intended times their latencies grow to 100 ms, where latency
    from the actual send time would show nothing."""
    schedule = RateSchedule(start_ns=0, rate_per_s=1000.0, total=1000)
    stall_end = 100_000_000
    sent = schedule.due(stall_end)
    assert sent == 101
    latencies = sorted(stall_end - schedule.intended_ns(i) for i in range(sent))
    assert latencies[0] == 0 and latencies[-1] == stall_end
    summary = summarize(latencies)
    assert summary is not None and summary.p50_ms == 50.0


def test_schedule_rejects_a_rate_of_zero() -> None:
    with pytest.raises(ValueError):
        RateSchedule(0, 0.0, 10)


@pytest.mark.parametrize(("rate", "samples", "stride"), [
    (1_000, 5_000, 1), (5_000, 5_000, 1), (10_000, 5_000, 2), (19_999, 5_000, 2),
    (20_000, 5_000, 4), (700_000, 5_000, 128),
])
def test_sample_stride_is_a_power_of_two_keeping_the_sample_rate_near_the_goal(
        rate: float, samples: float, stride: int) -> None:
    assert sample_stride(rate, samples) == stride
    assert samples / 2 < rate / stride <= samples * 2 or rate <= samples
