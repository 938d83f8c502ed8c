"""The loops that drive one producer and one consumer through a run, for any system.

:func:`produce` and :func:`consume` run on the thread (or in the process) that calls them;
:func:`run_in_process` runs them on two threads of this process for one run of a system whose
clients live here. ``bench.systems.logstore_worker`` runs the same loops in separate processes.

Timing: all timestamps are ``time.monotonic_ns()`` (one clock for every process on the host).
Produce-acknowledgement latency is measured for the sampled records only (every ``stride``-th
record, see ``latency``); end-to-end latency for the sampled records the consumer receives.
"""

from __future__ import annotations

import threading
import time
from array import array
from dataclasses import dataclass, field

from bench.latency import NS_PER_S, RateSchedule, sample_stride, summarize
from bench.payload import HEADER_BYTES, Payload
from bench.resources import Meter, Usage
from bench.systems import (
    LATENCY,
    THROUGHPUT,
    AckCallback,
    ConsumerClient,
    InProcess,
    ProducerClient,
)
from bench.workloads import BACKLOG, FIXED_RATE, MAX_RATE, Phase, RunResult, RunSpec

_now = time.monotonic_ns
POLL_TIMEOUT_S = 0.1
MAX_FIXED_RATE_BURST = 1000  # records sent per wake-up at most, when the schedule fell behind
FIXED_RATE_GRACE = 2.0  # a fixed-rate producer gives up at this multiple of the duration
MODES = {MAX_RATE: THROUGHPUT, BACKLOG: THROUGHPUT, FIXED_RATE: LATENCY}
"""Which producer tuning each kind of run uses."""


@dataclass
class ProduceOutcome:
    records: int
    started_ns: int
    finished_ns: int  # when the last acknowledgement arrived
    ack_ns: array = field(default_factory=lambda: array("q"))
    failed_acks: int = 0
    behind_schedule: bool = False


@dataclass
class ConsumeOutcome:
    records: int
    started_ns: int
    last_ns: int  # when the last record arrived (started_ns if none did)
    e2e_ns: array = field(default_factory=lambda: array("q"))
    timed_out: bool = False


class Expect:
    """How many records the consumer waits for; set once the producer knows."""

    def __init__(self, total: int | None = None) -> None:
        self.total = total

    def set(self, total: int) -> None:
        self.total = total


class _Acks:
    """Collects acknowledgement latencies of sampled records (called on any thread)."""

    def __init__(self) -> None:
        self.latencies = array("q")
        self.failed = 0

    def callback(self, since_ns: int) -> AckCallback:
        """An acknowledgement callback of a record timed from ``since_ns``."""
        latencies = self.latencies

        def on_ack(ok: bool) -> None:
            if ok:
                latencies.append(_now() - since_ns)
            else:
                self.failed += 1

        return on_ack


def produce(client: ProducerClient, payload: Payload, spec: RunSpec) -> ProduceOutcome:
    """Send records as the run says (max rate for ``duration_s``, a fixed rate for
    ``duration_s``, or the backlog's ``records`` as fast as possible), then flush."""
    acks = _Acks()
    if spec.kind == FIXED_RATE:
        assert spec.rate_per_s is not None
        started, sent, behind = _fixed_rate(client, payload, spec, acks)
    else:
        limit = spec.records if spec.kind == BACKLOG else None
        started, sent = _max_rate(client, payload, spec, acks, limit)
        behind = False
    client.flush()
    return ProduceOutcome(sent, started, _now(), acks.latencies, acks.failed, behind)


def _max_rate(client: ProducerClient, payload: Payload, spec: RunSpec, acks: _Acks,
              limit: int | None) -> tuple[int, int]:
    send, end_burst, plain, stamped = client.send, client.end_burst, payload.plain, payload.stamped
    burst = max(1, client.burst)
    partitions = spec.partitions
    started = _now()
    deadline = started + int(spec.duration_s * NS_PER_S) if limit is None else None
    stride = burst  # until the rate is known: time the first record of the first burst only
    sent = 0
    partition = 0
    while True:
        now = _now()
        if deadline is not None and now >= deadline:
            break
        if sent:
            stride = sample_stride(sent * NS_PER_S / max(now - started, 1), spec.samples_per_s)
        n = burst if limit is None else min(burst, limit - sent)
        if n <= 0:
            break
        for i in range(sent, sent + n):
            if i % stride:
                send(plain, partition, None)
            else:
                t = _now()
                send(stamped(t), partition, acks.callback(t))
        end_burst()
        sent += n
        partition = (partition + 1) % partitions
    return started, sent


def _fixed_rate(client: ProducerClient, payload: Payload, spec: RunSpec,
                acks: _Acks) -> tuple[int, int, bool]:
    send, end_burst, plain, stamped = client.send, client.end_burst, payload.plain, payload.stamped
    assert spec.rate_per_s is not None
    total = max(1, int(spec.rate_per_s * spec.duration_s))
    stride = sample_stride(spec.rate_per_s, spec.samples_per_s)
    started = _now()
    schedule = RateSchedule(started, spec.rate_per_s, total)
    give_up = started + int(FIXED_RATE_GRACE * spec.duration_s * NS_PER_S)
    partitions = spec.partitions
    sent = 0
    partition = 0
    while sent < total:
        now = _now()
        due = schedule.due(now)
        if due <= sent:
            time.sleep((schedule.intended_ns(sent) - now) / NS_PER_S)
            continue
        if now > give_up:
            return started, sent, True
        for i in range(sent, min(due, sent + MAX_FIXED_RATE_BURST)):
            if i % stride:
                send(plain, partition, None)
            else:
                intended = schedule.intended_ns(i)
                send(stamped(intended), partition, acks.callback(intended))
            sent = i + 1
        end_burst()
        partition = (partition + 1) % partitions
    behind = _now() - schedule.intended_ns(total - 1) > spec.duration_s * NS_PER_S / 10
    return started, sent, behind


def consume(client: ConsumerClient, expect: Expect, *, measure_e2e: bool,
            timeout_s: float) -> ConsumeOutcome:
    """Poll until ``expect.total`` records arrived, or ``timeout_s`` passed without one."""
    e2e = array("q")
    started = last = _now()
    count = 0
    poll = client.poll
    while True:
        total = expect.total
        if total is not None and count >= total:
            return ConsumeOutcome(count, started, last, e2e)
        values = poll(POLL_TIMEOUT_S)
        now = _now()
        if not values:
            if now - last > timeout_s * NS_PER_S:
                return ConsumeOutcome(count, started, last, e2e, timed_out=True)
            continue
        count += len(values)
        last = now
        if measure_e2e:
            for value in values:
                if value[0]:
                    e2e.append(now - int.from_bytes(value[1:HEADER_BYTES], "big"))


def run_in_process(system: InProcess, spec: RunSpec, topic: str) -> RunResult:
    """One run of a system whose producer and consumer are threads of this process."""
    system.create_topic(topic, spec.partitions)
    try:
        if spec.kind == BACKLOG:
            return _backlog(system, spec, topic)
        return _concurrent(system, spec, topic)
    finally:
        system.delete_topic(topic)


def _concurrent(system: InProcess, spec: RunSpec, topic: str) -> RunResult:
    payload = Payload(spec.value_bytes)
    meter = Meter(system.server_pids())
    consumer = system.consumer(topic, spec.partitions)
    producer = system.producer(topic, spec.partitions, MODES[spec.kind])
    expect = Expect()
    outcome: list[ConsumeOutcome] = []
    thread = threading.Thread(
        target=lambda: outcome.append(consume(
            consumer, expect, measure_e2e=True, timeout_s=max(10.0, 2 * spec.duration_s))),
        name="bench-consumer", daemon=True,
    )
    try:
        meter.start()
        thread.start()
        produced = produce(producer, payload, spec)
        expect.set(produced.records)
        thread.join()
        usage = meter.stop()
    finally:
        producer.close()
        consumer.close()
    consumed = outcome[0]
    return collect(spec, produced, consumed, [
        _phase("run", produced.records * spec.value_bytes, usage)])


def _backlog(system: InProcess, spec: RunSpec, topic: str) -> RunResult:
    assert spec.records is not None
    payload = Payload(spec.value_bytes)
    meter = Meter(system.server_pids())
    payload_bytes = spec.records * spec.value_bytes
    producer = system.producer(topic, spec.partitions, MODES[BACKLOG])
    try:
        meter.start()
        produced = produce(producer, payload, spec)
        produce_usage = meter.stop()
    finally:
        producer.close()
    consumer = system.consumer(topic, spec.partitions)
    try:
        meter.start()
        consumed = consume(consumer, Expect(produced.records), measure_e2e=False,
                           timeout_s=max(10.0, 2 * spec.duration_s))
        consume_usage = meter.stop()
    finally:
        consumer.close()
    return collect(spec, produced, consumed, [
        _phase("produce", payload_bytes, produce_usage),
        _phase("consume", payload_bytes, consume_usage),
    ])


def _phase(name: str, payload_bytes: int, usage: Usage) -> Phase:
    return Phase(name, payload_bytes, usage.cpu_s, usage.disk_write_bytes, usage.other_cpu_s,
                 usage.wall_s, usage.server_cpu_s)


def collect(spec: RunSpec, produced: ProduceOutcome, consumed: ConsumeOutcome,
            phases: list[Phase]) -> RunResult:
    """A :class:`RunResult` from the two loops' outcomes.

    Produce time runs from the first send to the last acknowledgement. Consume time runs from
    the first send (max-rate, fixed-rate: the consumer tails the producer) or from the start
    of consumption (backlog) to the last record received.
    """
    consume_from = consumed.started_ns if spec.kind == BACKLOG else produced.started_ns
    error = None
    if consumed.timed_out or consumed.records < produced.records:
        error = (f"the consumer received {consumed.records} of {produced.records} records"
                 + (" (timed out waiting for more)" if consumed.timed_out else ""))
    return RunResult(
        spec=spec,
        produced=produced.records,
        produce_s=(produced.finished_ns - produced.started_ns) / NS_PER_S,
        consumed=consumed.records,
        consume_s=max(consumed.last_ns - consume_from, 1) / NS_PER_S,
        ack=summarize(produced.ack_ns),
        e2e=summarize(consumed.e2e_ns) if spec.kind != BACKLOG else None,
        phases=phases,
        behind_schedule=produced.behind_schedule,
        failed_acks=produced.failed_acks,
        error=error,
    )
