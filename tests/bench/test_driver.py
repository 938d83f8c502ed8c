"""The producer and consumer loops, on a simulated clock and fake clients (no real time)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import driver
from bench.latency import sample_stride
from bench.payload import Payload, stamp_of
from bench.workloads import BACKLOG, FIXED_RATE, RunSpec


class Clock:
    """Simulated time: ``now`` reads it, ``sleep`` advances it."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def now(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        self.ns += max(0, int(seconds * 1e9))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(driver, "_now", fake.now)
    monkeypatch.setattr(driver.time, "sleep", fake.sleep)
    return fake


class FakeProducer:
    """Acknowledges a burst when it ends, ``ack_ns`` later; may stall once."""

    def __init__(self, clock: Clock, *, burst: int = 100, ack_ns: int = 0,
                 stall_at_burst: int | None = None, stall_ns: int = 0) -> None:
        self.clock = clock
        self.burst = burst
        self.ack_ns = ack_ns
        self.stall_at_burst = stall_at_burst
        self.stall_ns = stall_ns
        self.sent: list[tuple[bytes, int]] = []
        self.pending: list[Any] = []
        self.bursts = 0
        self.flushed = False

    def send(self, value: bytes, partition: int, on_ack: Any) -> None:
        self.sent.append((value, partition))
        if on_ack is not None:
            self.pending.append(on_ack)

    def end_burst(self) -> None:
        if self.bursts == self.stall_at_burst:
            self.clock.ns += self.stall_ns
        self.bursts += 1
        self.clock.ns += self.ack_ns
        for on_ack in self.pending:
            on_ack(True)
        self.pending = []

    def flush(self) -> None:
        self.flushed = True

    def close(self) -> None:
        pass


def test_backlog_produce_sends_exactly_the_records_and_times_every_stride_th(clock: Clock) -> None:
    producer = FakeProducer(clock, burst=64, ack_ns=2_000_000)
    spec = RunSpec(BACKLOG, partitions=4, value_bytes=100, duration_s=1.0, records=1000)
    outcome = driver.produce(producer, Payload(100), spec)
    assert outcome.records == len(producer.sent) == 1000
    assert producer.flushed
    stamped = [i for i, (value, _) in enumerate(producer.sent) if stamp_of(value) is not None]
    assert stamped[0] == 0 and len(outcome.ack_ns) == len(stamped)
    assert set(outcome.ack_ns) == {2_000_000}  # each timed record: sent, then its burst's ack
    assert {p for _, p in producer.sent} == {0, 1, 2, 3}  # bursts go to partitions in turn


def test_fixed_rate_stamps_intended_times_on_the_schedule(clock: Clock) -> None:
    rate = 20_000.0
    producer = FakeProducer(clock)
    spec = RunSpec(FIXED_RATE, partitions=1, value_bytes=100, duration_s=0.05, rate_per_s=rate)
    outcome = driver.produce(producer, Payload(100), spec)
    assert outcome.records == len(producer.sent) == 1000
    assert not outcome.behind_schedule
    stride = sample_stride(rate, spec.samples_per_s)
    stamps = [stamp_of(value) for value, _ in producer.sent]
    first = stamps[0]
    assert first is not None
    for index, stamp in enumerate(stamps):
        if index % stride:
            assert stamp is None
        else:
            assert stamp == first + index * 50_000  # 1 / 20,000 s apart, whenever it was sent


def test_fixed_rate_latency_includes_a_stall_for_every_record_due_during_it(clock: Clock) -> None:
    """Coordinated omission: after a 30 ms stall the records due meanwhile go out at once,
    and their latencies count from when they should have been sent."""
    producer = FakeProducer(clock, stall_at_burst=3, stall_ns=30_000_000)
    spec = RunSpec(FIXED_RATE, partitions=1, value_bytes=100, duration_s=0.1, rate_per_s=1000.0,
                   samples_per_s=1000.0)
    outcome = driver.produce(producer, Payload(100), spec)
    assert outcome.records == 100
    latencies = sorted(outcome.ack_ns)
    assert len(latencies) == 100
    assert latencies[-1] == 30_000_000  # the record whose send stalled
    late = [latency for latency in latencies if latency > 0]
    assert late == sorted(30_000_000 - k * 1_000_000 for k in range(30))


def test_fixed_rate_gives_up_when_it_cannot_keep_the_schedule(clock: Clock) -> None:
    producer = FakeProducer(clock, ack_ns=10_000_000)  # every burst takes 10 ms
    spec = RunSpec(FIXED_RATE, partitions=1, value_bytes=100, duration_s=0.1,
                   rate_per_s=1_000_000.0)
    outcome = driver.produce(producer, Payload(100), spec)
    assert outcome.behind_schedule
    assert outcome.records < 100_000


class FakeConsumer:
    def __init__(self, clock: Clock, batches: list[list[bytes]], delay_ns: int) -> None:
        self.clock = clock
        self.batches = batches
        self.delay_ns = delay_ns

    def poll(self, timeout_s: float) -> list[bytes]:
        if not self.batches:
            self.clock.sleep(timeout_s)
            return []
        self.clock.ns += self.delay_ns
        return self.batches.pop(0)

    def close(self) -> None:
        pass


def test_consume_stops_at_the_expected_count_and_times_stamped_records(clock: Clock) -> None:
    payload = Payload(100)
    sent_at = clock.ns
    batches = [[payload.stamped(sent_at), payload.plain], [payload.plain], [payload.plain]]
    consumer = FakeConsumer(clock, batches, delay_ns=3_000_000)
    outcome = driver.consume(consumer, driver.Expect(3), measure_e2e=True, timeout_s=1.0)
    assert outcome.records == 3 and not outcome.timed_out
    assert list(outcome.e2e_ns) == [3_000_000]
    assert consumer.batches == [[payload.plain]]  # nothing polled beyond what was expected


def test_consume_times_out_when_records_stop_arriving(clock: Clock) -> None:
    consumer = FakeConsumer(clock, [[Payload(100).plain]], delay_ns=0)
    outcome = driver.consume(consumer, driver.Expect(5), measure_e2e=False, timeout_s=1.0)
    assert outcome.records == 1 and outcome.timed_out


def test_collect_reports_a_consumer_that_received_too_few_records(clock: Clock) -> None:
    spec = RunSpec(BACKLOG, partitions=1, value_bytes=100, duration_s=1.0, records=5)
    produced = driver.ProduceOutcome(5, 0, 1_000_000_000)
    consumed = driver.ConsumeOutcome(4, 0, 500_000_000, timed_out=True)
    result = driver.collect(spec, produced, consumed, [])
    assert result.produce_s == 1.0 and result.consume_s == 0.5
    assert result.error is not None and "4 of 5" in result.error
