"""The broker's Prometheus endpoint: scraped over HTTP and parsed with prometheus_client's text
parser after confluent-kafka produced and consumed, raw frames asked and failed, and the embedded
API committed a group's offset; its storage gauges' cache; one registry per broker; and
``logstore serve --metrics-listen`` as a real process."""

from __future__ import annotations

import datetime
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.metadata.v1.request import MetadataRequest as MetadataV1
from kio.schema.produce.v9 import request as produce_v9
from prometheus_client.parser import text_string_to_metric_families

import logstore
from logstore import TopicPartition
from logstore.broker import Broker, BrokerConfig
from logstore.broker.metrics_http import StorageGauges
from logstore.clock import ManualClock
from logstore.errors import InvalidArgumentError
from logstore.protocol.apis import ApiKey
from logstore.records.builder import encode_batch

LOGSTORE_BIN = Path(sys.executable).parent / "logstore"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: tuple[str, int]) -> Samples:
    """Every sample of the endpoint: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics",
                                timeout=30) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[tuple[Broker, logstore.Log]]:
    log = logstore.open(tmp_path / "data", maintenance_interval_ms=None, metadata_max_age_ms=0)
    broker = Broker(log, config=BrokerConfig(listen_port=0, metrics_listen=("127.0.0.1", 0)))
    broker.start()
    try:
        yield broker, log
    finally:
        broker.stop()
        log.close()


def raw_request(sock: socket.socket, wire: Any, api_key: int, version: int, body: Any,
                correlation_id: int) -> bytes:
    sock.sendall(wire.request_frame(api_key, version, correlation_id, body))
    return wire.read_frame(sock)


def produce_request(topic: str, partition: int) -> produce_v9.ProduceRequest:
    """A Produce v9 request of one record to one partition, acks=all."""
    data = produce_v9.PartitionProduceData(index=produce_v9.i32(partition),
                                           records=encode_batch([(0, None, b"lost", ())]))
    return produce_v9.ProduceRequest(
        transactional_id=None, acks=produce_v9.i16(-1),
        timeout=produce_v9.i32Timedelta.parse(datetime.timedelta(seconds=5)),
        topic_data=(produce_v9.TopicProduceData(name=produce_v9.TopicName(topic),
                                                partition_data=(data,)),))


def test_the_endpoint_counts_requests_bytes_messages_offsets_and_lag(metered, wire) -> None:
    broker, log = metered
    assert broker.address is not None and broker.metrics_address is not None
    bootstrap = f"127.0.0.1:{broker.address[1]}"
    log.create_topic("orders", 1)

    # confluent-kafka: five records, one produce request each; read back further down.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(5):
        producer.produce("orders", value=b"record-%d" % i)
        assert producer.flush(30) == 0

    # Raw frames, so the exact counts are known: 3 ApiVersions v0, 2 Metadata v1, produce
    # requests to a partition and to a topic that do not exist, and a frame that does not parse.
    sock = socket.create_connection(broker.address, timeout=30)
    for correlation in range(3):
        assert raw_request(sock, wire, int(ApiKey.API_VERSIONS), 0, ApiVersionsV0(),
                           correlation)
    for correlation in range(2):
        assert raw_request(sock, wire, int(ApiKey.METADATA), 1, MetadataV1(topics=()),
                           correlation)
    for topic, partition in (("orders", 7), ("made-up", 0)):
        assert raw_request(sock, wire, int(ApiKey.PRODUCE), 9, produce_request(topic, partition),
                           9)
    garbage = socket.create_connection(broker.address, timeout=30)
    garbage.sendall(b"\x00\x00\x00\x02\x00\x03")
    assert wire.read_frame(garbage) == b""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader",
                         "enable.auto.commit": False})
    consumer.assign([CkTopicPartition("orders", 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 5 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            got.append(message.value())
    consumer.close()
    assert len(got) == 5
    stored = sum(len(b) for b in log.partition_log("orders", 0).read(0, max_bytes=1 << 20)
                 .batches)
    log.alter_group_offsets("billing", {TopicPartition("orders", 0): 2})

    samples = scrape(broker.metrics_address)
    requests = "kafka_network_requestmetrics_requests_total"
    assert value(samples, requests, request="ApiVersions", version="0") == 3
    assert value(samples, requests, request="Metadata", version="1") == 2
    assert total(samples, requests, request="Produce") == 7  # five from the client, two raw
    assert total(samples, requests, request="FetchConsumer") >= 1
    for name in ("ApiVersions", "Metadata", "Produce", "FetchConsumer"):
        assert value(samples, "kafka_network_requestmetrics_totaltime_seconds_count",
                     request=name) == total(samples, requests, request=name)
        assert value(samples, "kafka_network_requestmetrics_totaltime_seconds_bucket",
                     request=name, le="+Inf") == total(samples, requests, request=name)
    errors = "kafka_network_requestmetrics_errors_total"
    assert value(samples, errors, request="Produce", error="NONE") == 5
    assert value(samples, errors, request="Produce", error="UNKNOWN_TOPIC_OR_PARTITION") == 2
    assert value(samples, errors, request="unknown", error="INVALID_REQUEST") == 1
    assert value(samples, errors, request="Fetch", error="NONE") >= 1

    topic = "kafka_server_brokertopicmetrics_"
    assert value(samples, topic + "messagesin_total", topic="orders") == 5
    assert value(samples, topic + "bytesin_total", topic="orders") == stored
    assert value(samples, topic + "bytesout_total", topic="orders") == stored
    assert value(samples, topic + "totalproducerequests_total", topic="orders") == 6
    assert value(samples, topic + "failedproducerequests_total", topic="orders") == 1
    assert value(samples, topic + "failedfetchrequests_total", topic="orders") == 0
    # A topic that does not exist gets no series (made-up names must not grow the table).
    assert not any(("topic", "made-up") in labels for _, labels in samples)

    assert value(samples, "kafka_log_log_logendoffset", topic="orders", partition="0") == 5
    assert value(samples, "kafka_log_log_logstartoffset", topic="orders", partition="0") == 0
    assert value(samples, "kafka_log_log_size", topic="orders", partition="0") > 0
    group = {"consumergroup": "billing", "topic": "orders", "partition": "0"}
    assert value(samples, "kafka_consumergroup_current_offset", **group) == 2
    assert value(samples, "kafka_consumergroup_lag", **group) == 3

    assert value(samples, "logstore_broker_connections_closed_protocol_error_total") == 1
    assert value(samples, "kafka_server_socket_server_metrics_connection_creation_total") >= 4
    assert value(samples, "kafka_server_socket_server_metrics_connection_count") >= 1  # sock
    assert value(samples, "kafka_server_socket_server_metrics_incoming_byte_total") > stored
    sock.close()
    garbage.close()


def test_storage_gauges_are_cached_for_max_age(tmp_path: Path) -> None:
    clock = ManualClock()
    with logstore.open(tmp_path / "d", maintenance_interval_ms=None) as log:
        log.create_topic("t", 1)
        gauges = StorageGauges(log, max_age_ms=5_000, clock=clock)

        def end_offset() -> int:
            return next(d.log_end_offset for topic, d in gauges.snapshot().partitions
                        if topic == "t")

        assert end_offset() == 0
        log.append("t", 0, encode_batch([(0, None, b"v", ())]))
        clock.advance(4_999)
        assert end_offset() == 0  # the previous walk, still fresh enough
        clock.advance(1)
        assert end_offset() == 1


def test_each_broker_has_its_own_registry_and_its_endpoint_stops_with_it(tmp_path: Path,
                                                                         wire) -> None:
    brokers = []
    with logstore.open(tmp_path / "a", maintenance_interval_ms=None) as log_a, \
            logstore.open(tmp_path / "b", maintenance_interval_ms=None) as log_b:
        for log in (log_a, log_b):
            broker = Broker(log, config=BrokerConfig(listen_port=0,
                                                     metrics_listen=("127.0.0.1", 0)))
            broker.start()
            brokers.append(broker)
        try:
            first = brokers[0]
            assert first.address is not None and first.metrics_address is not None
            with socket.create_connection(first.address, timeout=30) as sock:
                assert raw_request(sock, wire, int(ApiKey.API_VERSIONS), 0, ApiVersionsV0(), 1)
            requests = "kafka_network_requestmetrics_requests_total"
            assert value(scrape(first.metrics_address), requests, request="ApiVersions",
                         version="0") == 1
            second = brokers[1].metrics_address
            assert second is not None
            assert value(scrape(second), requests, request="ApiVersions", version="0") == 0
        finally:
            for broker in brokers:
                broker.stop()
        with pytest.raises(urllib.error.URLError):
            scrape(first.metrics_address)


def test_a_bad_metrics_address_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        BrokerConfig(metrics_listen=("127.0.0.1", 70_000))


@pytest.mark.slow
def test_serve_metrics_listen_serves_prometheus_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([str(LOGSTORE_BIN), "--data-dir", str(tmp_path / "data"), "serve",
                             "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    ports: dict[str, int] = {}
    try:
        while "kafka" not in ports:
            line = proc.stderr.readline()
            assert line, proc.communicate()
            if found := re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line):
                ports["metrics"] = int(found.group(1))
            if found := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                ports["kafka"] = int(found.group(1))
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{ports['kafka']}"})
        producer.produce("served", value=b"v")
        assert producer.flush(30) == 0
        samples = scrape(("127.0.0.1", ports["metrics"]))
        assert value(samples, "kafka_server_brokertopicmetrics_messagesin_total",
                     topic="served") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_serve_rejects_a_bad_metrics_listen_address(tmp_path: Path) -> None:
    done = subprocess.run([str(LOGSTORE_BIN), "--data-dir", str(tmp_path / "d"), "serve",
                           "--metrics-listen", "nonsense"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "HOST:PORT" in done.stderr
