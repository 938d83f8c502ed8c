"""Real Kafka clients against an in-process broker: produce and consume with confluent-kafka
(librdkafka; every codec, idempotence), kafka-python and aiokafka, and the same records seen
through the embedded API."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CkTopicPartition

import logstore
from logstore import TopicPartition

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def ck_produce(bootstrap: str, topic: str, count: int, **config: object) -> list[int]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    offsets: list[int] = []
    errors: list[object] = []

    def delivered(error: object, message: object) -> None:
        if error is not None:
            errors.append(error)
        else:
            offsets.append(message.offset())  # type: ignore[attr-defined]

    for i in range(count):
        producer.produce(topic, value=b"value-%d" % i, key=b"key-%d" % (i % 5),
                         headers=[("h", b"%d" % i)], on_delivery=delivered)
    assert producer.flush(30) == 0
    assert errors == []
    return offsets


def ck_consume(bootstrap: str, topic: str, count: int, **config: object) -> list[object]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                         "enable.auto.commit": False, **config})
    consumer.assign([CkTopicPartition(topic, 0, 0)])
    got: list[object] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            got.append(message)
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_produces_and_consumes_with_every_codec(broker, codec: str) -> None:
    offsets = ck_produce(broker.bootstrap, f"ck-{codec}", 300, **{
        "compression.type": codec, "enable.idempotence": True, "acks": "all"})
    assert sorted(offsets) == list(range(300))
    messages = ck_consume(broker.bootstrap, f"ck-{codec}", 300)
    assert [m.value() for m in messages] == [b"value-%d" % i for i in range(300)]
    assert messages[7].key() == b"key-2" and messages[7].headers() == [("h", b"7")]
    # The same records through the embedded API: the broker stored the client's batches.
    with broker.log.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(f"ck-{codec}", 0)])
        records = []
        while len(records) < 300:
            records.extend(consumer.poll(timeout_ms=2000))
    assert [r.value for r in records] == [b"value-%d" % i for i in range(300)]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_round_trip(broker, codec: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KpTopicPartition

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                             compression_type=None if codec == "none" else codec,
                             max_block_ms=20_000)
    topic = f"kp-{codec}"
    futures = [producer.send(topic, key=b"k%d" % (i % 3), value=b"v%d" % i) for i in range(200)]
    producer.flush(30)
    assert sorted(f.get(10).offset for f in futures) == list(range(200))
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, enable_auto_commit=False)
    consumer.assign([KpTopicPartition(topic, 0)])
    values = [m.value for m in consumer]
    consumer.close()
    assert values == [b"v%d" % i for i in range(200)]


@pytest.mark.parametrize("codec", CODECS)
def test_aiokafka_round_trip(broker, codec: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as AkTopicPartition

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                                    enable_idempotence=True,
                                    compression_type=None if codec == "none" else codec)
        await producer.start()
        try:
            for i in range(100):
                await producer.send(f"ak-{codec}", value=b"a%d" % i, partition=0)
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([AkTopicPartition(f"ak-{codec}", 0)])
            await consumer.seek_to_beginning()
            got: list[bytes] = []
            while len(got) < 100:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                for messages in batch.values():
                    got.extend(m.value for m in messages)
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [b"a%d" % i for i in range(100)]


def test_a_consumer_waiting_on_an_empty_topic_is_woken_by_an_embedded_append(broker) -> None:
    """Long polling: with a long fetch.wait.max.ms the fetch sleeps on the broker until an
    append (by the embedded API in the same process) wakes it."""
    broker.log.create_topic("wake")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                         "fetch.wait.max.ms": 60_000, "enable.auto.commit": False})
    consumer.assign([CkTopicPartition("wake", 0, 0)])
    try:
        assert consumer.poll(1.0) is None  # nothing yet; the fetch is now parked
        with broker.log.producer() as producer:
            producer.send("wake", value=b"hello", partition=0).result(10)
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
        assert message is not None and message.value() == b"hello"
    finally:
        consumer.close()


def test_an_idle_consumer_does_not_spin(broker) -> None:
    """An empty fetch waits for max_wait: a second of polling an idle partition costs a few
    fetch requests, not thousands."""
    from logstore.protocol.apis import ApiKey

    broker.log.create_topic("idle")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                         "fetch.wait.max.ms": 500, "enable.auto.commit": False})
    consumer.assign([CkTopicPartition("idle", 0, 0)])
    try:
        for _ in range(4):
            assert consumer.poll(0.5) is None
        fetches = broker.broker.metrics.requests[int(ApiKey.FETCH)]
        assert 0 < fetches <= 10, fetches
    finally:
        consumer.close()


def test_an_append_by_another_process_wakes_a_parked_fetch(broker, tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    broker.log.create_topic("xproc")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                         "fetch.wait.max.ms": 60_000, "enable.auto.commit": False})
    consumer.assign([CkTopicPartition("xproc", 0, 0)])
    try:
        assert consumer.poll(1.0) is None
        worker = Path(__file__).parent.parent / "workers" / "append_one.py"
        proc = subprocess.Popen([sys.executable, str(worker), str(broker.log.path), "xproc",
                                 "from-elsewhere"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
        assert message is not None and message.value() == b"from-elsewhere"
    finally:
        consumer.close()


def test_metadata_auto_creates_topics_and_lists_the_broker(broker) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    ck_produce(broker.bootstrap, "auto-made", 1)
    metadata = admin.list_topics(timeout=10)
    assert "auto-made" in metadata.topics
    assert list(metadata.brokers) == [0]
    assert metadata.brokers[0].port == broker.port
    assert metadata.cluster_id and len(metadata.cluster_id) == 22
    assert broker.log.describe_topic("auto-made").partition_count == 1


def test_list_offsets_earliest_latest_and_by_time(broker) -> None:
    broker.log.create_topic("times")
    with broker.log.producer(linger_ms=0) as producer:
        for i in range(10):
            producer.send("times", value=b"%d" % i, partition=0,
                          timestamp_ms=1_700_000_000_000 + i * 1000).result(10)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    try:
        low, high = consumer.get_watermark_offsets(CkTopicPartition("times", 0), timeout=10)
        assert (low, high) == (0, 10)
        found = consumer.offsets_for_times(
            [CkTopicPartition("times", 0, 1_700_000_004_500)], timeout=10)
        assert found[0].offset == 5
        beyond = consumer.offsets_for_times(
            [CkTopicPartition("times", 0, 1_800_000_000_000)], timeout=10)
        assert beyond[0].offset == -1  # no record that late: the end (librdkafka's -1)
    finally:
        consumer.close()


def test_the_embedded_log_and_the_broker_share_a_directory(broker) -> None:
    broker.log.create_topic("shared")
    with broker.log.producer(linger_ms=0) as producer:
        for i in range(50):
            producer.send("shared", value=b"e%d" % i, partition=0)
    ck_produce(broker.bootstrap, "shared", 50)
    messages = ck_consume(broker.bootstrap, "shared", 100)
    values = [m.value() for m in messages]
    assert values[:50] == [b"e%d" % i for i in range(50)]
    assert values[50:] == [b"value-%d" % i for i in range(50)]
    assert isinstance(broker.log, logstore.Log)


def test_kcat_produces_with_keys_and_headers_consumes_and_lists(broker) -> None:
    import shutil
    import subprocess

    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is missing (.ci/run installs it: apt-get install kcat)"
    produced = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-P", "-t", "kc", "-K:", "-H", "source=kcat"],
        input="k1:hello\nk2:world\n", capture_output=True, text=True, timeout=60, check=False)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-C", "-t", "kc", "-e", "-f", "%k=%s %h @%o\n"],
        capture_output=True, text=True, timeout=60, check=False)
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == ["k1=hello source=kcat @0", "k2=world source=kcat @1"]
    listed = subprocess.run([kcat, "-b", broker.bootstrap, "-L"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert f"broker 0 at 127.0.0.1:{broker.port}" in listed.stdout
    assert 'topic "kc" with 1 partitions' in listed.stdout
    records = broker.log.fetch("kc", 0, 0)
    assert records.high_watermark == 2
