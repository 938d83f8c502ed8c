"""Admin requests from real clients: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
DescribeConfigs, AlterConfigs, IncrementalAlterConfigs and DescribeCluster, through
confluent-kafka's AdminClient and kafka-python's KafkaAdminClient, with every outcome checked
through the embedded API on the same directory too; errors come back per topic (per resource,
per partition) as Kafka's. A few requests no client sends are spoken raw (``wire``)."""

from __future__ import annotations

import datetime
import struct
import types
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import KafkaAdminClient
from kafka.admin import NewPartitions as KpNewPartitions
from kafka.structs import TopicPartition as KpTopicPartition
from kio.schema.create_topics.v5.request import CreatableTopic, CreateTopicsRequest
from kio.schema.describe_cluster.v1.request import DescribeClusterRequest
from kio.schema.errors import ErrorCode
from kio.schema.incremental_alter_configs.v1.request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from kio.static.primitive import i8, i16, i32, i32Timedelta

import logstore
from logstore.broker import Broker, BrokerConfig
from logstore.broker.handlers.admin_configs import ConfigSource as BrokerConfigSource
from logstore.broker.handlers.admin_configs import broker_config_entries
from logstore.config import TOPIC_CONFIG_KEYS
from logstore.protocol.apis import ApiKey

TIMEOUT_S = 30


@contextmanager
def running_broker(data: Path, **config: Any) -> Iterator[tuple[logstore.Log, str]]:
    """A broker with the given settings over ``data``, and the embedded Log it serves."""
    log = logstore.open(data, maintenance_interval_ms=None, metadata_max_age_ms=0)
    broker = Broker(log, config=BrokerConfig(listen_port=0, **config))
    broker.start()
    assert broker.address is not None
    try:
        yield log, f"127.0.0.1:{broker.address[1]}"
    finally:
        broker.stop()
        log.close()


def ck_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


@pytest.fixture
def kp_admin(broker: Any) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20_000)
    try:
        yield admin
    finally:
        admin.close()


def outcome(future: Future[Any]) -> KafkaError | None:
    """The KafkaError a confluent-kafka admin future failed with, or None."""
    try:
        future.result(timeout=TIMEOUT_S)
    except KafkaException as exc:
        return exc.args[0]
    return None


def outcomes(futures: dict[Any, Future[Any]]) -> dict[Any, KafkaError | None]:
    return {key: outcome(future) for key, future in futures.items()}


def code(error: KafkaError | None) -> int:
    return 0 if error is None else error.code()


def produce(log: logstore.Log, topic: str, partition: int, count: int) -> None:
    with log.producer(linger_ms=0) as producer:
        for i in range(count):
            producer.send(topic, key=b"k", value=b"v%d" % i, partition=partition).result(10)


# --- CreateTopics -----------------------------------------------------------------------------


def test_confluent_kafka_creates_topics_with_counts_configs_and_the_broker_default(
        tmp_path: Path) -> None:
    with running_broker(tmp_path / "data", num_partitions=3) as (log, bootstrap):
        admin = ck_admin(bootstrap)
        results = outcomes(admin.create_topics([
            NewTopic("orders", 5, 1, config={"retention.ms": "60000",
                                             "cleanup.policy": "compact"}),
            NewTopic("defaults", -1, -1),
        ], request_timeout=TIMEOUT_S))
        assert results == {"orders": None, "defaults": None}
        orders = log.describe_topic("orders")
        assert orders.partition_count == 5
        assert orders.overrides == {"retention.ms": "60000", "cleanup.policy": "compact"}
        # -1 partitions: the broker's num.partitions.
        assert log.describe_topic("defaults").partition_count == 3


def test_create_topics_errors_come_back_per_topic(broker: Any) -> None:
    broker.log.create_topic("taken")
    admin = ck_admin(broker.bootstrap)
    results = outcomes(admin.create_topics([
        NewTopic("taken", 1),
        NewTopic("bad name!", 1),
        NewTopic("replicated", 1, 3),
        NewTopic("bad-value", 1, config={"retention.ms": "soon"}),
        NewTopic("unknown-key", 1, config={"min.insync.replicas": "2"}),
        NewTopic("fine", 2),
    ], request_timeout=TIMEOUT_S))
    assert {topic: code(error) for topic, error in results.items()} == {
        "taken": KafkaError.TOPIC_ALREADY_EXISTS,
        "bad name!": KafkaError.TOPIC_EXCEPTION,
        "replicated": KafkaError.INVALID_REPLICATION_FACTOR,
        "bad-value": KafkaError.INVALID_CONFIG,
        "unknown-key": KafkaError.INVALID_CONFIG,
        "fine": 0,
    }
    assert "retention.ms" in results["bad-value"].str()
    assert "min.insync.replicas" in results["unknown-key"].str()
    assert "3 time(s)" in results["replicated"].str()
    # The good topic of the same request was created; the others were not.
    assert sorted(broker.log.list_topics()) == ["fine", "taken"]
    assert broker.log.describe_topic("fine").partition_count == 2


def test_validate_only_checks_everything_and_creates_nothing(broker: Any) -> None:
    broker.log.create_topic("taken")
    admin = ck_admin(broker.bootstrap)
    results = outcomes(admin.create_topics([
        NewTopic("would-be", 4, config={"segment.bytes": "100000"}),
        NewTopic("taken", 1),
        NewTopic("bad-value", 1, config={"segment.bytes": "-5"}),
    ], validate_only=True, request_timeout=TIMEOUT_S))
    assert {topic: code(error) for topic, error in results.items()} == {
        "would-be": 0, "taken": KafkaError.TOPIC_ALREADY_EXISTS,
        "bad-value": KafkaError.INVALID_CONFIG}
    assert broker.log.list_topics() == ["taken"]


def test_kafka_python_reads_the_created_topic_from_the_v5_response(broker: Any,
                                                                  kp_admin: Any) -> None:
    response = kp_admin.create_topics({
        "events": {"num_partitions": 2, "configs": {"retention.bytes": "1000000"}},
        "assigned": {"assignments": {0: [0], 1: [0], 2: [0]}},
        "elsewhere": {"assignments": {0: [1]}},
        "no-partitions": {"num_partitions": 0},
        "no-replicas": {"replication_factor": 0},
    }, raise_errors=False)
    by_name = {t["name"]: t for t in response["topics"]}
    events = by_name["events"]
    assert (events["error_code"], events["num_partitions"], events["replication_factor"]) == (
        0, 2, 1)
    assert set(events["configs"]) == set(TOPIC_CONFIG_KEYS)
    assert events["configs"]["retention.bytes"]["value"] == "1000000"
    assert events["configs"]["retention.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert events["configs"]["segment.bytes"] == {
        "value": TOPIC_CONFIG_KEYS["segment.bytes"].default, "read_only": False,
        "config_source": "DEFAULT_CONFIG", "is_sensitive": False}
    assert by_name["assigned"]["error_code"] == 0
    assert {name: by_name[name]["error_code"] for name in
            ("elsewhere", "no-partitions", "no-replicas")} == {
        "elsewhere": 39, "no-partitions": 37, "no-replicas": 38}  # INVALID_REPLICA_ASSIGNMENT...
    assert by_name["elsewhere"]["num_partitions"] == -1
    assert broker.log.describe_topic("events").overrides == {"retention.bytes": "1000000"}
    assert broker.log.describe_topic("assigned").partition_count == 3
    assert sorted(broker.log.list_topics()) == ["assigned", "events"]


def test_a_partition_directory_of_a_lost_metadata_store_is_that_topic_s_error(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    with logstore.open(data, maintenance_interval_ms=None) as log:
        log.create_topic("kept")
        produce(log, "kept", 0, 5)
    for name in ("metadata.db", "metadata.db-wal", "metadata.db-shm"):
        (data / name).unlink(missing_ok=True)
    with running_broker(data) as (log, bootstrap):
        admin = ck_admin(bootstrap)
        results = outcomes(admin.create_topics([NewTopic("kept", 1), NewTopic("new", 1)],
                                               request_timeout=TIMEOUT_S))
        # An error for that topic, with the reason, not a dropped connection (_TRANSPORT).
        assert code(results["kept"]) == KafkaError.INCONSISTENT_TOPIC_ID
        assert "repair" in results["kept"].str()
        assert results["new"] is None
        assert log.list_topics() == ["new"]
    assert list((data / "topics" / "kept" / "0").glob("0*.sqlite"))  # the records stay


def test_a_topic_named_twice_in_one_request_is_an_invalid_request(connect: Any,
                                                                 wire: Any) -> None:
    sock = connect()
    topic = CreatableTopic(name="twice", num_partitions=i32(1), replication_factor=i16(1),
                           assignments=(), configs=())
    once = CreatableTopic(name="once", num_partitions=i32(1), replication_factor=i16(1),
                          assignments=(), configs=())
    request = CreateTopicsRequest(topics=(topic, once, topic),
                                  timeout=i32Timedelta.parse(datetime.timedelta(seconds=10)),
                                  validate_only=False)
    sock.sendall(wire.request_frame(int(ApiKey.CREATE_TOPICS), 5, 1, request))
    response = wire.decode_response(int(ApiKey.CREATE_TOPICS), 5, wire.read_frame(sock),
                                    flexible_header=True)
    assert [(t.name, t.error_code) for t in response.topics] == [
        ("twice", ErrorCode.invalid_request), ("once", ErrorCode.none),
        ("twice", ErrorCode.invalid_request)]


# --- DeleteTopics -----------------------------------------------------------------------------


def test_both_clients_delete_topics_and_unknown_ones_are_reported(broker: Any,
                                                                 kp_admin: Any) -> None:
    for name in ("a", "b", "c"):
        broker.log.create_topic(name)
    produce(broker.log, "a", 0, 3)
    admin = ck_admin(broker.bootstrap)
    results = outcomes(admin.delete_topics(["a", "missing"], request_timeout=TIMEOUT_S))
    assert code(results["a"]) == 0
    assert code(results["missing"]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    response = kp_admin.delete_topics(["b", "gone"], raise_errors=False)
    assert {t["name"]: t["error_code"] for t in response["topics"]} == {"b": 0, "gone": 3}
    assert broker.log.list_topics() == ["c"]
    # A re-created topic starts empty.
    broker.log.create_topic("a")
    assert broker.log.describe_topic("a").partitions[0].log_end_offset == 0


# --- CreatePartitions -------------------------------------------------------------------------


def test_confluent_kafka_grows_topics_and_partition_errors_are_per_topic(broker: Any) -> None:
    broker.log.create_topic("grow")
    broker.log.create_topic("shrink", partitions=3)
    admin = ck_admin(broker.bootstrap)
    results = outcomes(admin.create_partitions([
        NewPartitions("grow", 4), NewPartitions("shrink", 2), NewPartitions("missing", 2),
    ], request_timeout=TIMEOUT_S))
    assert {topic: code(error) for topic, error in results.items()} == {
        "grow": 0, "shrink": KafkaError.INVALID_PARTITIONS,
        "missing": KafkaError.UNKNOWN_TOPIC_OR_PART}
    assert "only grow" in results["shrink"].str()
    assert broker.log.describe_topic("grow").partition_count == 4
    assert broker.log.describe_topic("shrink").partition_count == 3
    # validate_only: checked, not done.
    assert outcomes(admin.create_partitions([NewPartitions("grow", 6)], validate_only=True,
                                            request_timeout=TIMEOUT_S)) == {"grow": None}
    assert broker.log.describe_topic("grow").partition_count == 4
    produce(broker.log, "grow", 3, 2)  # the new partitions take records
    assert broker.log.describe_topic("grow").partitions[3].log_end_offset == 2


def test_kafka_python_grows_a_topic_with_and_without_assignments(broker: Any,
                                                                 kp_admin: Any) -> None:
    broker.log.create_topic("t")
    kp_admin.create_partitions({"t": KpNewPartitions(3)})
    assert broker.log.describe_topic("t").partition_count == 3
    kp_admin.create_partitions({"t": KpNewPartitions(4, [[0]])})
    assert broker.log.describe_topic("t").partition_count == 4
    response = kp_admin.create_partitions({"t": KpNewPartitions(5, [[2]])}, raise_errors=False)
    assert [(r.name, r.error_code) for r in response.results] == [("t", 39)]
    response = kp_admin.create_partitions({"t": KpNewPartitions(7, [[0]])}, raise_errors=False)
    assert [(r.name, r.error_code) for r in response.results] == [("t", 39)]
    assert broker.log.describe_topic("t").partition_count == 4


# --- DeleteRecords ----------------------------------------------------------------------------


def test_both_clients_delete_records_up_to_an_offset_or_the_high_watermark(
        broker: Any, kp_admin: Any) -> None:
    broker.log.create_topic("t", partitions=3)
    for partition in range(3):
        produce(broker.log, "t", partition, 10)
    admin = ck_admin(broker.bootstrap)
    futures = admin.delete_records([
        CkTopicPartition("t", 0, 4), CkTopicPartition("t", 1, -1),
        CkTopicPartition("t", 2, 11)], request_timeout=TIMEOUT_S)
    errors = {tp.partition: code(outcome(f)) for tp, f in futures.items()}
    assert errors == {0: 0, 1: 0, 2: KafkaError.OFFSET_OUT_OF_RANGE}
    low = {tp.partition: f.result().low_watermark for tp, f in futures.items()
           if tp.partition in (0, 1)}
    assert low == {0: 4, 1: 10}
    result = kp_admin.delete_records({KpTopicPartition("t", 0): 6})
    assert result[KpTopicPartition("t", 0)]["low_watermark"] == 6
    described = broker.log.describe_topic("t").partitions
    assert [p.log_start_offset for p in described] == [6, 10, 0]
    # Embedded consumers start there too.
    with broker.log.consumer(auto_offset_reset="earliest") as consumer:
        tp = logstore.TopicPartition("t", 0)
        consumer.assign([tp])
        assert consumer.beginning_offsets([tp])[tp] == 6


# --- DescribeConfigs --------------------------------------------------------------------------


def test_confluent_kafka_describes_every_topic_config_with_its_source(broker: Any) -> None:
    broker.log.create_topic("t", config={"retention.ms": "3600000"})
    admin = ck_admin(broker.bootstrap)
    futures = admin.describe_configs([ConfigResource("topic", "t")],
                                     request_timeout=TIMEOUT_S)
    configs = next(iter(futures.values())).result(timeout=TIMEOUT_S)
    assert set(configs) == set(TOPIC_CONFIG_KEYS)
    retention = configs["retention.ms"]
    assert (retention.value, retention.source, retention.is_default) == (
        "3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value, False)
    segment = configs["segment.bytes"]
    assert (segment.value, segment.source, segment.is_default) == (
        TOPIC_CONFIG_KEYS["segment.bytes"].default, ConfigSource.DEFAULT_CONFIG.value, True)
    assert not any(c.is_read_only or c.is_sensitive for c in configs.values())
    # The same values as the embedded API's.
    assert {n: c.value for n, c in configs.items()} == dict(broker.log.describe_topic("t").config)
    # librdkafka always asks for synonyms.
    assert [(s.name, s.value, s.source) for s in retention.synonyms.values()] == [
        ("retention.ms", "3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)]
    missing = admin.describe_configs([ConfigResource("topic", "missing")],
                                     request_timeout=TIMEOUT_S)
    assert code(outcome(next(iter(missing.values())))) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_kafka_python_describes_topic_configs_and_only_the_keys_asked_for(
        broker: Any, kp_admin: Any) -> None:
    broker.log.create_topic("t", config={"cleanup.policy": "compact"})
    described = kp_admin.describe_configs([KpConfigResource("TOPIC", "t")])  # modified only
    assert described["topic"]["t"] == {"cleanup.policy": {
        "value": "compact", "read_only": False, "config_source": "DYNAMIC_TOPIC_CONFIG",
        "is_sensitive": False, "synonyms": []}}  # synonyms not asked for
    described = kp_admin.describe_configs(
        [KpConfigResource("TOPIC", "t", ["segment.ms", "cleanup.policy"])],
        config_filter="all", include_synonyms=True)
    configs = described["topic"]["t"]
    assert set(configs) == {"segment.ms", "cleanup.policy"}
    assert configs["segment.ms"]["synonyms"] == [
        {"name": "segment.ms", "value": "604800000", "source": "DEFAULT_CONFIG"}]


def test_the_broker_resource_lists_its_settings_read_only(tmp_path: Path) -> None:
    with running_broker(tmp_path / "data", num_partitions=4, broker_id=3) as (_, bootstrap):
        admin = ck_admin(bootstrap)
        futures = admin.describe_configs([ConfigResource("broker", "3")],
                                         request_timeout=TIMEOUT_S)
        configs = next(iter(futures.values())).result(timeout=TIMEOUT_S)
        port = bootstrap.rsplit(":", 1)[1]
        assert {n: c.value for n, c in configs.items()} == {
            "node.id": "3", "broker.id": "3", "broker.rack": None,
            "listeners": "PLAINTEXT://127.0.0.1:0",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "socket.request.max.bytes": str(100 * 1024 * 1024), "max.connections": "10000",
            "connections.max.idle.ms": "600000", "auto.create.topics.enable": "true",
            "num.partitions": "4", "num.io.threads": "16",
            "security.inter.broker.protocol": "PLAINTEXT", "ssl.keystore.type": "PEM",
            "ssl.keystore.location": None, "ssl.key.password": None,
            "ssl.truststore.location": None, "ssl.client.auth": "none",
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
            "sasl.server.max.receive.size": "524288", "super.users": None,
            "allow.everyone.if.no.acl.found": "false"}
        assert all(c.is_read_only for c in configs.values())
        assert configs["num.partitions"].source == ConfigSource.STATIC_BROKER_CONFIG.value
        assert configs["auto.create.topics.enable"].source == ConfigSource.DEFAULT_CONFIG.value
        # Broker configs cannot be changed while it runs.
        futures = admin.incremental_alter_configs([ConfigResource(
            "broker", "3", incremental_configs=[ConfigEntry(
                "num.partitions", "8", incremental_operation=AlterConfigOpType.SET)])])
        error = outcome(next(iter(futures.values())))
        assert code(error) == KafkaError.INVALID_REQUEST and "read-only" in error.str()


# --- AlterConfigs and IncrementalAlterConfigs -------------------------------------------------


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_alter_configs_replaces_the_topic_s_overrides(broker: Any) -> None:
    broker.log.create_topic("t", config={"retention.ms": "1000", "segment.ms": "2000"})
    admin = ck_admin(broker.bootstrap)

    def alter(configs: dict[str, str], **options: Any) -> KafkaError | None:
        futures = admin.alter_configs([ConfigResource("topic", "t", set_config=configs)],
                                      request_timeout=TIMEOUT_S, **options)
        return outcome(next(iter(futures.values())))

    assert alter({"retention.bytes": "5000"}) is None
    # Kafka's non-incremental semantics: keys left out go back to their defaults.
    described = broker.log.describe_topic("t")
    assert described.overrides == {"retention.bytes": "5000"}
    assert described.config["retention.ms"] == TOPIC_CONFIG_KEYS["retention.ms"].default
    assert alter({"segment.bytes": "4096"}, validate_only=True) is None
    error = alter({"segment.bytes": "huge"})
    assert code(error) == KafkaError.INVALID_CONFIG and "segment.bytes" in error.str()
    assert broker.log.describe_topic("t").overrides == {"retention.bytes": "5000"}


def test_incremental_alter_configs_sets_deletes_appends_and_subtracts(broker: Any) -> None:
    broker.log.create_topic("t", config={"segment.ms": "2000"})
    admin = ck_admin(broker.bootstrap)

    def alter(*entries: tuple[str, str | None, AlterConfigOpType],
              **options: Any) -> KafkaError | None:
        futures = admin.incremental_alter_configs([ConfigResource(
            "topic", "t", incremental_configs=[
                ConfigEntry(name, value, incremental_operation=op)
                for name, value, op in entries])], request_timeout=TIMEOUT_S, **options)
        return outcome(next(iter(futures.values())))

    def policy() -> set[str]:
        return set(broker.log.describe_topic("t").config["cleanup.policy"].split(","))

    assert alter(("retention.ms", "9000", AlterConfigOpType.SET),
                 ("segment.ms", None, AlterConfigOpType.DELETE),
                 ("cleanup.policy", "compact", AlterConfigOpType.APPEND)) is None
    assert broker.log.describe_topic("t").overrides.keys() == {"retention.ms", "cleanup.policy"}
    assert policy() == {"compact", "delete"}  # appended to the default, "delete"
    assert alter(("cleanup.policy", "delete", AlterConfigOpType.SUBTRACT)) is None
    assert policy() == {"compact"}
    # validate_only: nothing changes.
    assert alter(("cleanup.policy", "delete", AlterConfigOpType.SET),
                 validate_only=True) is None
    assert policy() == {"compact"}
    # Only list configs append; unknown keys and bad values are INVALID_CONFIG.
    for entry in (("retention.ms", "1", AlterConfigOpType.APPEND),
                  ("no.such.key", None, AlterConfigOpType.DELETE),
                  ("cleanup.policy", "compact", AlterConfigOpType.SUBTRACT),
                  ("retention.ms", "-7", AlterConfigOpType.SET)):
        assert code(alter(entry)) == KafkaError.INVALID_CONFIG, entry
    assert broker.log.describe_topic("t").overrides == {
        "retention.ms": "9000", "cleanup.policy": "compact"}


def test_kafka_python_alters_configs_incrementally_and_not(broker: Any, kp_admin: Any) -> None:
    broker.log.create_topic("t", config={"retention.ms": "1000"})
    result = kp_admin.alter_configs([KpConfigResource("TOPIC", "t", {
        "cleanup.policy": ("APPEND", "compact"), "retention.ms": ("DELETE", None)})])
    assert result == {"topic": {"t": "OK"}}
    assert broker.log.describe_topic("t").overrides.keys() == {"cleanup.policy"}
    # Non-incremental: kafka-python carries the other modified keys along itself.
    result = kp_admin.alter_configs([KpConfigResource("TOPIC", "t", {"segment.ms": "5000"})],
                                    incremental=False)
    assert result == {"topic": {"t": "OK"}}
    assert broker.log.describe_topic("t").overrides.keys() == {"cleanup.policy", "segment.ms"}
    result = kp_admin.alter_configs([KpConfigResource("TOPIC", "t", {"segment.ms": "never"})])
    assert "InvalidConfigurationError" in result["topic"]["t"]
    missing = kp_admin.alter_configs([KpConfigResource("TOPIC", "nope", {"segment.ms": "5"})],
                                     raise_on_unknown=False)
    assert "UnknownTopicOrPartitionError" in missing["topic"]["nope"]


def test_malformed_alterations_are_invalid_requests(connect: Any, wire: Any,
                                                    broker: Any) -> None:
    broker.log.create_topic("t")

    def config(name: str, op: int, value: str | None) -> AlterableConfig:
        return AlterableConfig(name=name, config_operation=i8(op), value=value)

    def resource(name: str, *configs: AlterableConfig, kind: int = 2) -> AlterConfigsResource:
        return AlterConfigsResource(resource_type=i8(kind), resource_name=name,
                                    configs=configs)

    request = IncrementalAlterConfigsRequest(resources=(
        resource("t", config("retention.ms", 0, None)),             # null value for SET
        resource("t", config("retention.ms", 9, "1")),              # unknown operation
        resource("t", config("retention.ms", 0, "1"), config("retention.ms", 1, None)),
        resource("0", config("num.partitions", 0, "2"), kind=4),    # read-only broker
        resource("0", config("num.partitions", 0, "2"), kind=4),    # ... and named twice
        resource("g", config("x", 0, "1"), kind=32),                # groups: not served
    ), validate_only=False)
    sock = connect()
    sock.sendall(wire.request_frame(int(ApiKey.INCREMENTAL_ALTER_CONFIGS), 1, 1, request))
    response = wire.decode_response(int(ApiKey.INCREMENTAL_ALTER_CONFIGS), 1,
                                    wire.read_frame(sock), flexible_header=True)
    assert [r.error_code for r in response.responses] == [ErrorCode.invalid_request] * 6
    assert all(r.error_message for r in response.responses)
    assert broker.log.describe_topic("t").overrides == {}


# --- DescribeCluster --------------------------------------------------------------------------


def test_both_clients_describe_the_cluster(broker: Any, kp_admin: Any) -> None:
    services = broker.broker.services
    described = kp_admin.describe_cluster()  # DescribeCluster v1
    assert described["cluster_id"] == services.cluster_id
    assert described["controller_id"] == 0
    assert described["brokers"] == [
        {"broker_id": 0, "host": "127.0.0.1", "port": broker.port, "rack": None}]
    # kafka-python always asks for the authorized operations: without ACLs, all of them.
    assert set(described["authorized_operations"]) == {
        "CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
        "IDEMPOTENT_WRITE"}
    # librdkafka answers describe_cluster from Metadata.
    admin = ck_admin(broker.bootstrap)
    result = admin.describe_cluster(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    assert result.cluster_id == services.cluster_id
    assert [(n.id, n.host, n.port) for n in result.nodes] == [(0, "127.0.0.1", broker.port)]
    assert result.controller.id == 0


def test_describe_cluster_leaves_operations_out_unless_asked_and_serves_brokers_only(
        connect: Any, wire: Any, broker: Any) -> None:
    sock = connect()
    answers = []
    for correlation, (include, endpoint) in enumerate(
            [(False, 1), (True, 1), (False, 2), (False, 7)]):
        request = DescribeClusterRequest(include_cluster_authorized_operations=include,
                                         endpoint_type=i8(endpoint))
        sock.sendall(wire.request_frame(int(ApiKey.DESCRIBE_CLUSTER), 1, correlation, request))
        payload = wire.read_frame(sock)
        assert struct.unpack(">i", payload[:4])[0] == correlation
        answers.append(wire.decode_response(int(ApiKey.DESCRIBE_CLUSTER), 1, payload,
                                            flexible_header=True))
    plain, asked, controllers, unknown = answers
    assert plain.error_code == ErrorCode.none
    assert plain.cluster_authorized_operations == -2147483648  # Kafka's "not requested"
    assert asked.cluster_authorized_operations == sum(
        1 << op for op in (5, 7, 8, 9, 10, 11, 12))
    assert plain.cluster_id == broker.broker.services.cluster_id
    assert controllers.error_code == ErrorCode.mismatched_endpoint_type
    assert unknown.error_code == ErrorCode.unsupported_endpoint_type


def test_the_broker_s_security_settings_are_listed_and_its_key_password_never_sent() -> None:
    config = BrokerConfig(security_protocol="SASL_SSL", tls_cert_path="/etc/b.pem",
                          tls_key_path="/etc/b.key", tls_key_password="s3cret",
                          super_users=("User:admin", "User:ops"), listen_port=9093)
    services = types.SimpleNamespace(config=config, advertised=("kafka1", 9093))
    entries = {e.name: e for e in broker_config_entries(services)}
    assert entries["listeners"].value == "SASL_SSL://127.0.0.1:9093"
    assert entries["advertised.listeners"].value == "SASL_SSL://kafka1:9093"
    assert entries["ssl.keystore.location"].value == "/etc/b.pem"
    assert entries["super.users"].value == "User:admin;User:ops"
    password = entries["ssl.key.password"]
    assert password.sensitive and password.value is None
    assert password.source is BrokerConfigSource.STATIC_BROKER_CONFIG
    assert all("s3cret" not in str(e) for e in entries.values())
