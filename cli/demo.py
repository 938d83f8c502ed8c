"""``logstore demo``: produce keyed events and read them back, to see logstore work end to end."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click
from logstore.cli.output import CliError, example, format_seconds, progress

from logstore.errors import TopicAlreadyExistsError
from logstore.types import RecordMetadata, TopicPartition

if TYPE_CHECKING:
    from logstore.cli.main import CliState

    from logstore import Log

DEMO_TOPIC = "demo-events"
DEMO_PARTITIONS = 3
DEMO_RECORDS = 1000
DEMO_KEYS = 10
_EVENTS = ("page_view", "add_to_cart", "checkout", "search", "login")
# Give up reading back when no record of this run arrives for this long (it should be instant).
_STALL_S = 10.0


@dataclass
class DemoReport:
    """What one demo run did."""

    topic: str
    partitions: int
    produced: int
    produce_s: float
    consumed: int = 0
    consume_s: float = 0.0
    per_partition: dict[int, int] = field(default_factory=dict)
    keys: int = 0
    order_errors: list[str] = field(default_factory=list)


def _event(run: str, index: int, keys: int) -> tuple[bytes, bytes]:
    """The key and JSON value of event ``index``: per key, ``seq`` counts 0, 1, 2, ..."""
    user = f"user-{index % keys}"
    value = {"run": run, "user": user, "seq": index // keys,
             "event": _EVENTS[index % len(_EVENTS)], "amount_cents": (index * 37) % 10_000}
    return user.encode(), json.dumps(value).encode()


def run_demo(log: Log, *, records: int = DEMO_RECORDS, keys: int = DEMO_KEYS) -> DemoReport:
    """Create the demo topic if missing, produce ``records`` keyed events, then consume exactly
    this run's records (located by their acknowledged offsets) and check per-key order."""
    try:
        log.create_topic(DEMO_TOPIC, DEMO_PARTITIONS)
    except TopicAlreadyExistsError:
        pass  # a re-run appends to the existing topic
    run = uuid.uuid4().hex
    started = time.perf_counter()
    with log.producer() as producer:
        with progress(range(records), length=records, label="producing") as indexes:
            futures = [
                producer.send(DEMO_TOPIC, value=value, key=key)
                for key, value in (_event(run, i, keys) for i in indexes)
            ]
        producer.flush()
    acked: list[RecordMetadata] = [f.result() for f in futures]
    report = DemoReport(DEMO_TOPIC, log.topic_info(DEMO_TOPIC)[0], len(acked),
                        time.perf_counter() - started)
    last: dict[int, int] = {}
    first: dict[int, int] = {}
    for meta in acked:
        last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)
        first[meta.partition] = min(first.get(meta.partition, meta.offset), meta.offset)
    _consume(log, report, run, first, last)
    return report


def _consume(log: Log, report: DemoReport, run: str, first: dict[int, int],
             last: dict[int, int]) -> None:
    """Read [first, last] of each partition, counting this run's events and checking that
    every key's ``seq`` numbers arrive as 0, 1, 2, ..."""
    next_seq: dict[str, int] = {}
    started = time.perf_counter()
    with log.consumer(auto_offset_reset="earliest") as consumer:
        tps = [TopicPartition(DEMO_TOPIC, p) for p in sorted(first)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, first[tp.partition])
        pending = set(tps)
        stalled_since = time.monotonic()
        while pending:
            got = consumer.poll(timeout_ms=200)
            for record in got:
                if record.offset > last[record.partition]:
                    continue
                event = json.loads(record.value or b"{}")
                if event.get("run") != run:
                    continue  # another process's record interleaved with ours
                report.consumed += 1
                report.per_partition[record.partition] = (
                    report.per_partition.get(record.partition, 0) + 1)
                user, seq = event["user"], event["seq"]
                expected = next_seq.get(user, 0)
                if seq != expected and len(report.order_errors) < 3:
                    report.order_errors.append(f"{user}: got seq {seq}, expected {expected}")
                next_seq[user] = seq + 1
            pending = {tp for tp in pending if consumer.position(tp) <= last[tp.partition]}
            if got:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > _STALL_S:
                raise CliError(f"reading back stalled: {report.consumed} of {report.produced} "
                               "records arrived")
    report.consume_s = time.perf_counter() - started
    report.keys = len(next_seq)


def _rate(count: int, seconds: float) -> str:
    per_second = count / max(seconds, 1e-9)
    return f"{count} records in {format_seconds(seconds)} ({per_second:,.0f} records/s)"


@click.command(epilog=example("logstore --data-dir /tmp/logstore-demo demo"))
@click.pass_obj
def demo(state: CliState) -> None:
    """Produce 1,000 keyed JSON events to topic demo-events and read them back.

    Creates the topic (3 partitions) if missing; each run appends another 1,000 events and
    reads back exactly the ones it wrote, checking that each key's events kept their order.
    """
    report = run_demo(state.log())
    per_partition = ", ".join(f"{p}: {n}" for p, n in sorted(report.per_partition.items()))
    click.echo(f"data dir:       {state.data_dir.absolute()}")
    click.echo(f"topic:          {report.topic} ({report.partitions} partitions)")
    click.echo(f"produced:       {_rate(report.produced, report.produce_s)}")
    click.echo(f"consumed:       {_rate(report.consumed, report.consume_s)}")
    click.echo(f"per partition:  {per_partition}")
    if report.order_errors or report.consumed != report.produced:
        raise CliError(f"check failed: consumed {report.consumed} of {report.produced} records; "
                       f"order errors: {'; '.join(report.order_errors) or 'none'}")
    click.echo(f"per-key order:  preserved for all {report.keys} keys")
