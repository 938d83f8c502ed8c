"""logstore's producer and consumer behind the benchmark's client protocols.

Shared by the in-process system (``logstore_embedded``) and the worker processes
(``logstore_worker``). The producer sends keyless records (the sticky partitioner, KIP-480,
spreads batches over the partitions; the driver's partition hint is not used), as an
application would.

Producer tuning: throughput runs use ``linger_ms=5, batch_size=1 MiB`` (as
``bench/produce_consume.py``); the fixed-rate latency run uses ``linger_ms=0`` with the same
batch size: a record's batch is appended as soon as the sender thread gets to it, and records
sent while an append (and its fsync) runs gather into the next batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter
from typing import Any

import logstore
from bench.systems import LATENCY, THROUGHPUT, AckCallback

PRODUCER_OPTIONS: dict[str, dict[str, Any]] = {
    THROUGHPUT: {"linger_ms": 5, "batch_size": 1 << 20},
    LATENCY: {"linger_ms": 0, "batch_size": 1 << 20},
}
CONSUMER_OPTIONS: dict[str, Any] = {"auto_offset_reset": "earliest", "max_poll_records": 50_000}
_value = attrgetter("value")


def describe_options() -> str:
    """The producer tuning, in one line for the report."""
    def options(mode: str) -> str:
        return ", ".join(f"{k}={v}" for k, v in PRODUCER_OPTIONS[mode].items())

    return (f"{options(THROUGHPUT)} (max-rate, backlog), {options(LATENCY)} (fixed-rate), "
            "other options at their defaults; keyless sends (sticky partitioner)")


class LogstoreProducer:
    """:class:`bench.systems.ProducerClient` over ``Log.producer``."""

    burst = 1000

    def __init__(self, log: logstore.Log, topic: str, mode: str) -> None:
        self._producer = log.producer(**PRODUCER_OPTIONS[mode])
        self._topic = topic
        self._send = self._producer.send

    def send(self, value: bytes, partition: int, on_ack: AckCallback | None) -> None:
        future = self._send(self._topic, value)
        if on_ack is not None:
            future.add_done_callback(lambda f: on_ack(f.exception(0) is None))

    def end_burst(self) -> None:
        """Nothing to do: batches are appended when full or when ``linger_ms`` ran out."""

    def flush(self) -> None:
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


class _Values:
    """The values of a list of ConsumerRecords, without copying them into a new list."""

    __slots__ = ("_records",)

    def __init__(self, records: list[Any]) -> None:
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[bytes]:
        return map(_value, self._records)

    def __contains__(self, item: object) -> bool:
        return any(v == item for v in self)


class LogstoreConsumer:
    """:class:`bench.systems.ConsumerClient` over ``Log.consumer``, every partition."""

    def __init__(self, log: logstore.Log, topic: str, partitions: int) -> None:
        self._consumer = log.consumer(**CONSUMER_OPTIONS)
        self._consumer.assign([logstore.TopicPartition(topic, p) for p in range(partitions)])

    def poll(self, timeout_s: float) -> _Values:
        return _Values(self._consumer.poll(timeout_ms=timeout_s * 1000))

    def close(self) -> None:
        self._consumer.close()
