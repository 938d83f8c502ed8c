"""logstore behind its Kafka-protocol broker (``logstore serve``), driven by Kafka clients.

The broker is its own process (``logstore serve`` on a free loopback port, one data
directory); this process creates and deletes the topics through an embedded ``Log`` on the
same directory, and the producer and the consumer are two more processes
(``logstore_worker``, as Kafka applications are deployed: in one Python process a consumer
thread decoding 10,000 records a poll holds the GIL the producer thread needs to serve its
acknowledgements, which measured the client, not the broker: ack p99 43 ms against 9 ms with
the consumer in a process of its own, 200,000 records/s of 100 B), through one of three client
libraries:

* ``confluent`` (the measured client): confluent-kafka (librdkafka) with its defaults plus
  ``linger.ms=5`` and ``acks=all``; the consumer assigns every partition from the beginning
  and reads with ``consume()`` (defaults otherwise).
* ``kafka-python`` and ``aiokafka``: for reference (pure-Python clients, mostly bound by
  their own record decoding), with the same ``linger_ms=5, acks=all``.

CPU: the broker process counts as a server (its utime + stime), so the run's CPU per GB is
clients plus broker; ``server_cpu_s`` of each phase is the broker's share alone.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import logstore
from bench.systems import AckCallback, SystemUnavailable
from bench.systems.logstore_procs import run_workers
from bench.workloads import RunResult, RunSpec

START_TIMEOUT_S = 30.0
CLIENTS = ("confluent", "kafka-python", "aiokafka")
LINGER_MS = 5
_topics = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LogstoreBroker:
    """:class:`bench.systems.System` and :class:`bench.systems.InProcess`: a ``logstore
    serve`` process and Kafka clients of library ``client`` (one of :data:`CLIENTS`)."""

    def __init__(self, client: str, base_dir: Path | None) -> None:
        if client not in CLIENTS:
            raise ValueError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}")
        self.client = client
        self.durability = "fsync"
        self.name = f"logstore-broker ({client})"
        self.config = ""
        self._base_dir = base_dir
        self._dir: Path | None = None
        self._log: logstore.Log | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.bootstrap = ""

    def start(self) -> None:
        _import_client(self.client)
        self._dir = Path(tempfile.mkdtemp(prefix="bench-logstore-broker-", dir=self._base_dir))
        data = self._dir / "data"
        self._log = logstore.open(data, maintenance_interval_ms=None)
        port = _free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        # The broker runs the installed logstore (the repository root is not on its path).
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from logstore.cli.main import main; main()",
             "--data-dir", str(data), "serve", "--listen", self.bootstrap,
             "--no-auto-create-topics"],
            stdout=subprocess.DEVNULL, stderr=open(self._dir / "broker.log", "wb"),  # noqa: SIM115
            cwd=self._dir,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = (self._dir / "broker.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise SystemUnavailable(f"logstore serve did not start: {log}") from None
                time.sleep(0.05)
        self.config = (
            f"`logstore serve` in its own process, topic durability=fsync; producer and "
            f"consumer in two more processes (`python -m bench.systems.logstore_worker`); "
            f"{_describe(self.client)}"
        )

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def run(self, spec: RunSpec) -> RunResult:
        if self._dir is None:
            raise SystemUnavailable("not started")
        topic = f"bench-{next(_topics)}"
        self.create_topic(topic, spec.partitions)
        try:
            return run_workers(spec, topic, {"client": self.client,
                                             "bootstrap": self.bootstrap},
                               self._dir, self.server_pids())
        finally:
            self.delete_topic(topic)

    def _require_log(self) -> logstore.Log:
        if self._log is None:
            raise SystemUnavailable("not started")
        return self._log

    def create_topic(self, topic: str, partitions: int) -> None:
        self._require_log().create_topic(topic, partitions, config={"durability": "fsync"})

    def delete_topic(self, topic: str) -> None:
        self._require_log().delete_topic(topic)

    def producer(self, topic: str, partitions: int, mode: str) -> Any:
        return kafka_producer(self.client, self.bootstrap, topic)

    def consumer(self, topic: str, partitions: int) -> Any:
        return kafka_consumer(self.client, self.bootstrap, topic, partitions)

    def server_pids(self) -> list[int]:
        return [self._process.pid] if self._process is not None else []


def _import_client(client: str) -> Any:
    module = {"confluent": "confluent_kafka", "kafka-python": "kafka",
              "aiokafka": "aiokafka"}[client]
    try:
        return __import__(module)
    except ImportError:
        raise SystemUnavailable(f"the client library {module} is not installed") from None


def _describe(client: str) -> str:
    if client == "confluent":
        import confluent_kafka

        return (f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka "
                f"{confluent_kafka.libversion()[0]}), defaults plus linger.ms={LINGER_MS}, "
                "acks=all; keyless produce; consumer assigns every partition, consume(10000)")
    module = _import_client(client)
    return (f"{client} {module.__version__}, linger_ms={LINGER_MS}, acks=all; keyless send; "
            "consumer assigns every partition from the beginning")


class ConfluentProducer:
    """:class:`bench.systems.ProducerClient` over ``confluent_kafka.Producer``."""

    burst = 1000

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": LINGER_MS,
                                   "acks": "all"})
        self._topic = topic

    def send(self, value: bytes, partition: int, on_ack: AckCallback | None) -> None:
        callback = None if on_ack is None else (lambda err, _msg: on_ack(err is None))
        while True:
            try:
                self._producer.produce(self._topic, value, on_delivery=callback)
                return
            except BufferError:  # the client's queue is full: serve acknowledgements
                self._producer.poll(0.005)

    def end_burst(self) -> None:
        self._producer.poll(0)

    def flush(self) -> None:
        if self._producer.flush(120) != 0:
            raise RuntimeError("confluent-kafka could not deliver every record within 120 s")

    def close(self) -> None:
        self._producer.flush(10)


class ConfluentConsumer:
    """:class:`bench.systems.ConsumerClient` over ``confluent_kafka.Consumer``."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench",
                                   "enable.auto.commit": False})
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                               for p in range(partitions)])

    def poll(self, timeout_s: float) -> list[bytes]:
        values = []
        for message in self._consumer.consume(10_000, timeout_s):
            if message.error() is None:
                values.append(message.value())
        return values

    def close(self) -> None:
        self._consumer.close()


class KafkaPythonProducer:
    """:class:`bench.systems.ProducerClient` over ``kafka.KafkaProducer``."""

    burst = 1000

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=LINGER_MS,
                                       acks="all")
        self._topic = topic

    def send(self, value: bytes, partition: int, on_ack: AckCallback | None) -> None:
        future = self._producer.send(self._topic, value)
        if on_ack is not None:
            future.add_callback(lambda _metadata: on_ack(True))
            future.add_errback(lambda _exc: on_ack(False))

    def end_burst(self) -> None:
        """Nothing to do: the client's sender thread sends batches."""

    def flush(self) -> None:
        self._producer.flush(timeout=120)

    def close(self) -> None:
        self._producer.close(timeout=10)


class KafkaPythonConsumer:
    """:class:`bench.systems.ConsumerClient` over ``kafka.KafkaConsumer``."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       auto_offset_reset="earliest", max_poll_records=10_000)
        self._consumer.assign([TopicPartition(topic, p) for p in range(partitions)])

    def poll(self, timeout_s: float) -> list[bytes]:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        return [record.value for records in batches.values() for record in records]

    def close(self) -> None:
        self._consumer.close()


class _Loop:
    """An asyncio event loop on its own thread, for a synchronous facade over aiokafka."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-aiokafka",
                                        daemon=True)
        self._thread.start()

    def call(self, coroutine: Any, timeout_s: float | None = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class AiokafkaProducer:
    """:class:`bench.systems.ProducerClient` over ``aiokafka.AIOKafkaProducer``: each burst
    is handed to the loop thread in one call (``send`` only queues)."""

    burst = 1000

    def __init__(self, bootstrap: str, topic: str) -> None:
        from aiokafka import AIOKafkaProducer

        self._loop = _Loop()
        self._topic = topic
        self._queued: list[tuple[bytes, AckCallback | None]] = []

        async def make() -> Any:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=LINGER_MS,
                                        acks="all")
            await producer.start()
            return producer

        self._producer = self._loop.call(make())

    def send(self, value: bytes, partition: int, on_ack: AckCallback | None) -> None:
        self._queued.append((value, on_ack))

    def end_burst(self) -> None:
        """Hand the burst to the loop; returns once aiokafka accepted every record (its
        accumulator blocks ``send`` while full, which bounds the records in flight)."""
        queued, self._queued = self._queued, []
        self._loop.call(self._send_all(queued))

    async def _send_all(self, queued: list[tuple[bytes, AckCallback | None]]) -> None:
        for value, on_ack in queued:
            future = await self._producer.send(self._topic, value)
            if on_ack is not None:
                future.add_done_callback(_ack_done(on_ack))

    def flush(self) -> None:
        if self._queued:
            self.end_burst()
        self._loop.call(self._producer.flush())

    def close(self) -> None:
        self._loop.call(self._producer.stop(), timeout_s=30)
        self._loop.close()


def _ack_done(on_ack: AckCallback) -> Callable[[Any], None]:
    def done(future: Any) -> None:
        on_ack(not future.cancelled() and future.exception() is None)

    return done


class AiokafkaConsumer:
    """:class:`bench.systems.ConsumerClient` over ``aiokafka.AIOKafkaConsumer``."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._loop = _Loop()

        async def make() -> Any:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                        auto_offset_reset="earliest")
            await consumer.start()
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            return consumer

        self._consumer = self._loop.call(make())

    def poll(self, timeout_s: float) -> list[bytes]:
        batches = self._loop.call(self._consumer.getmany(timeout_ms=int(timeout_s * 1000),
                                                         max_records=10_000))
        return [record.value for records in batches.values() for record in records]

    def close(self) -> None:
        self._loop.call(self._consumer.stop(), timeout_s=30)
        self._loop.close()


_PRODUCERS: dict[str, Callable[[str, str], Any]] = {
    "confluent": ConfluentProducer, "kafka-python": KafkaPythonProducer,
    "aiokafka": AiokafkaProducer}
_CONSUMERS: dict[str, Callable[[str, str, int], Any]] = {
    "confluent": ConfluentConsumer, "kafka-python": KafkaPythonConsumer,
    "aiokafka": AiokafkaConsumer}


def kafka_producer(client: str, bootstrap: str, topic: str) -> Any:
    """A :class:`bench.systems.ProducerClient` of library ``client`` (one of :data:`CLIENTS`)."""
    return _PRODUCERS[client](bootstrap, topic)


def kafka_consumer(client: str, bootstrap: str, topic: str, partitions: int) -> Any:
    """A :class:`bench.systems.ConsumerClient` of library ``client``, assigned every
    partition from the beginning."""
    return _CONSUMERS[client](bootstrap, topic, partitions)
