"""Idempotence and transactions through the broker: confluent-kafka and kafka-python
transactional producers, read_committed consumers, a consume-transform-produce copier with
send_offsets_to_transaction, fencing, the produce path's transactional checks, the error codes
each protocol version gets, and DescribeProducers / DescribeTransactions / ListTransactions.

A producer instance of these clients runs transaction after transaction: EndTxn before v5
cannot hand it a new epoch, so the broker ends its transactions the classic way (the producer
keeps its epoch and its sequences; see docs/architecture.md, section 9).
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from kio.schema.add_offsets_to_txn.v1.request import AddOffsetsToTxnRequest as AddOffsetsV1
from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest as AddOffsetsV3
from kio.schema.add_partitions_to_txn.v0 import request as add_partitions_v0
from kio.schema.add_partitions_to_txn.v3 import request as add_partitions_v3
from kio.schema.end_txn.v1.request import EndTxnRequest as EndTxnV1
from kio.schema.end_txn.v3.request import EndTxnRequest as EndTxnV3
from kio.schema.init_producer_id.v3.request import InitProducerIdRequest as InitV3
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest as InitV4
from kio.schema.list_transactions.v0.request import ListTransactionsRequest
from kio.schema.produce.v8 import request as produce_v8
from kio.schema.txn_offset_commit.v3 import request as txn_offset_commit_v3

import logstore
from logstore import TopicPartition
from logstore.broker import Broker, BrokerConfig
from logstore.clock import ManualClock
from logstore.errors import DatabaseLockedError, StorageError
from logstore.protocol.apis import ApiKey
from logstore.protocol.codec import is_flexible
from logstore.records.builder import encode_batch
from logstore.records.control import ControlType, build_control_batch

INVALID_RECORD = 87
INVALID_TXN_STATE = 48
INVALID_PRODUCER_EPOCH = 47
INVALID_PRODUCER_ID_MAPPING = 49
UNKNOWN_PRODUCER_ID = 59
PRODUCER_FENCED = 90
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
UNKNOWN_TOPIC_OR_PARTITION = 3
COORDINATOR_LOAD_IN_PROGRESS = 14
CONCURRENT_TRANSACTIONS = 51


# --- helpers -----------------------------------------------------------------------------------


class Raw:
    """One connection speaking raw frames: ``call`` sends a request and decodes its answer."""

    def __init__(self, sock: socket.socket, wire: Any) -> None:
        self._sock = sock
        self._wire = wire
        self._correlation = 0

    def call(self, api_key: ApiKey, version: int, body: Any) -> Any:
        self._correlation += 1
        self._sock.sendall(self._wire.request_frame(int(api_key), version, self._correlation,
                                                    body))
        payload = self._wire.read_frame(self._sock)
        assert payload, "the broker closed the connection"
        return self._wire.decode_response(int(api_key), version, payload,
                                          flexible_header=is_flexible(int(api_key), version))

    def init(self, transactional_id: str | None, *, producer_id: int = -1,
             epoch: int = -1, version: int = 4) -> tuple[int, int]:
        cls = InitV4 if version == 4 else InitV3
        response = self.call(ApiKey.INIT_PRODUCER_ID, version, cls(
            transactional_id=transactional_id, transaction_timeout=_ms(60_000),
            producer_id=producer_id, producer_epoch=epoch))
        assert response.error_code == 0, response
        return response.producer_id, response.producer_epoch

    def add_partitions(self, tid: str, identity: tuple[int, int], topic: str,
                       partitions: tuple[int, ...], *, version: int = 3) -> list[int]:
        module = add_partitions_v3 if version == 3 else add_partitions_v0
        response = self.call(ApiKey.ADD_PARTITIONS_TO_TXN, version,
                             module.AddPartitionsToTxnRequest(
                                 v3_and_below_transactional_id=tid,
                                 v3_and_below_producer_id=identity[0],
                                 v3_and_below_producer_epoch=identity[1],
                                 v3_and_below_topics=(module.AddPartitionsToTxnTopic(
                                     name=topic, partitions=partitions),)))
        return [int(p.partition_error_code) for t in response.results_by_topic_v3_and_below
                for p in t.results_by_partition]

    def end(self, tid: str, identity: tuple[int, int], commit: bool, *,
            version: int = 3) -> int:
        cls = EndTxnV3 if version == 3 else EndTxnV1
        response = self.call(ApiKey.END_TXN, version, cls(
            transactional_id=tid, producer_id=identity[0], producer_epoch=identity[1],
            committed=commit))
        return int(response.error_code)

    def produce(self, topic: str, partition: int, batch: bytes, *,
                transactional_id: str | None = None) -> tuple[int, int]:
        """(error code, base offset) of one batch."""
        response = self.call(ApiKey.PRODUCE, 8, produce_v8.ProduceRequest(
            transactional_id=transactional_id, acks=-1, timeout=_ms(10_000),
            topic_data=(produce_v8.TopicProduceData(name=topic, partition_data=(
                produce_v8.PartitionProduceData(index=partition, records=batch),)),)))
        answer = response.responses[0].partition_responses[0]
        return int(answer.error_code), answer.base_offset


def _ms(value: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=value)


@pytest.fixture
def raw(connect: Any, wire: Any) -> Raw:
    return Raw(connect(), wire)


def batch(values: list[bytes], identity: tuple[int, int], sequence: int, *,
          transactional: bool = True) -> bytes:
    return encode_batch([(1_700_000_000_000, None, v, ()) for v in values],
                        producer_id=identity[0], producer_epoch=identity[1],
                        base_sequence=sequence, is_transactional=transactional)


def ck_read(bootstrap: str, topic: str, isolation: str, *, partition: int = 0) -> list[bytes]:
    """Every record a confluent-kafka consumer of ``isolation`` gets from the partition, up to
    its last stable offset (read_committed) or high watermark: the consumer's position reaches
    it once control batches and aborted records are skipped."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "fetch.wait.max.ms": 50})
    tp = CkTopicPartition(topic, partition, 0)
    consumer.assign([tp])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        _, end = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None:
                assert message.error() is None, message.error()
                got.append(message.value())
            position = consumer.position([tp])[0].offset
            if position >= end:
                break
        else:
            pytest.fail(f"{topic}: did not reach offset {end}")
    finally:
        consumer.close()
    return got


def ck_transactional(bootstrap: str, transactional_id: str, **config: Any) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                         "linger.ms": 5, **config})
    producer.init_transactions(30)
    return producer


def committed(log: logstore.Log, group: str, tp: TopicPartition) -> int | None:
    found = log.committed_offsets(group).get(tp)
    return None if found is None else found.offset


# --- confluent-kafka ---------------------------------------------------------------------------


def test_a_consume_transform_produce_copier_commits_exactly_once(broker) -> None:
    """The copier reads the input at its group's committed offset, writes each record
    transformed and sends the offsets to the transaction; chunks 1 and 4 are aborted on purpose
    and redone. read_committed output: every input record once, in order; the aborted copies
    are in the log (read_uncommitted sees them) but never committed; the group's committed
    offset moves with each commit only."""
    broker.log.create_topic("in")
    broker.log.create_topic("out")
    source = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i in range(30):
        source.produce("in", value=b"value-%d" % i, partition=0)
    assert source.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "copier",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    tp_in = TopicPartition("in", 0)
    aborts = {1, 4}
    attempt = 0
    try:
        while (committed(broker.log, "copier", tp_in) or 0) < 30 and attempt < 8:
            start = committed(broker.log, "copier", tp_in) or 0
            consumer.assign([CkTopicPartition("in", 0, start)])
            chunk: list[Any] = []
            deadline = time.monotonic() + 30
            while len(chunk) < 5:
                assert time.monotonic() < deadline, f"input from {start} not read"
                message = consumer.poll(1.0)
                if message is not None:
                    assert message.error() is None, message.error()
                    chunk.append(message)
            producer = ck_transactional(broker.bootstrap, "copier-tx")
            producer.begin_transaction()
            for message in chunk:
                producer.produce("out", value=b"copy:" + message.value(), partition=0)
            next_offset = chunk[-1].offset() + 1
            producer.send_offsets_to_transaction(
                [CkTopicPartition("in", 0, next_offset)], consumer.consumer_group_metadata(),
                30)
            assert producer.flush(30) == 0  # so the aborted copies are written too
            if attempt in aborts:
                producer.abort_transaction(30)
                assert committed(broker.log, "copier", tp_in) == (start or None)
            else:
                producer.commit_transaction(30)
                assert committed(broker.log, "copier", tp_in) == next_offset
            attempt += 1
    finally:
        consumer.close()
    assert attempt == 8
    expected = [b"copy:value-%d" % i for i in range(30)]
    assert ck_read(broker.bootstrap, "out", "read_committed") == expected
    uncommitted = ck_read(broker.bootstrap, "out", "read_uncommitted")
    assert len(uncommitted) == 40 and sorted(set(uncommitted)) == sorted(expected)
    assert broker.log.describe_transaction("copier-tx").state == "CompleteCommit"


def test_one_producer_runs_many_transactions(broker) -> None:
    broker.log.create_topic("many")
    producer = ck_transactional(broker.bootstrap, "many-tx")
    for n in range(3):
        producer.begin_transaction()
        producer.produce("many", value=b"txn-%d" % n, partition=0)
        producer.commit_transaction(30)
    assert ck_read(broker.bootstrap, "many", "read_committed") == [b"txn-0", b"txn-1",
                                                                    b"txn-2"]


def test_a_zombie_with_the_same_transactional_id_is_fenced(broker) -> None:
    broker.log.create_topic("zt")
    zombie = ck_transactional(broker.bootstrap, "zombie-tx")
    zombie.begin_transaction()
    zombie.produce("zt", value=b"from the zombie", partition=0)
    assert zombie.flush(30) == 0
    successor = ck_transactional(broker.bootstrap, "zombie-tx")  # aborts the zombie's
    successor.begin_transaction()
    successor.produce("zt", value=b"from the successor", partition=0)
    successor.commit_transaction(30)
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(30)
    error = raised.value.args[0]
    assert error.fatal() and "fenced" in error.str().lower()
    assert ck_read(broker.bootstrap, "zt", "read_committed") == [b"from the successor"]
    assert ck_read(broker.bootstrap, "zt", "read_uncommitted") == [b"from the zombie",
                                                                    b"from the successor"]


@pytest.fixture
def clocked_broker(tmp_path: Path) -> Iterator[tuple[Broker, logstore.Log, ManualClock]]:
    clock = ManualClock()
    log = logstore.open(tmp_path / "data", clock=clock, maintenance_interval_ms=None,
                        metadata_max_age_ms=0)
    running = Broker(log, config=BrokerConfig(listen_port=0))
    running.start()
    try:
        yield running, log, clock
    finally:
        running.stop()
        log.close()


def test_a_producer_whose_transaction_timed_out_aborts_and_goes_on(clocked_broker) -> None:
    """The coordinator aborts a transaction open past its timeout; librdkafka's commit then
    fails as abortable (INVALID_PRODUCER_ID_MAPPING), abort_transaction() bumps the epoch
    through InitProducerId (KIP-360) and the same producer commits its next transaction."""
    running, log, clock = clocked_broker
    assert running.address is not None
    bootstrap = f"127.0.0.1:{running.address[1]}"
    log.create_topic("slow")
    producer = ck_transactional(bootstrap, "slow-tx", **{"transaction.timeout.ms": 10_000})
    producer.begin_transaction()
    producer.produce("slow", value=b"too late", partition=0)
    assert producer.flush(30) == 0
    clock.advance(10_001)
    assert log.run_transaction_maintenance() == ["slow-tx"]
    with pytest.raises(KafkaException) as raised:
        producer.commit_transaction(30)
    assert raised.value.args[0].txn_requires_abort()
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce("slow", value=b"on time", partition=0)
    producer.commit_transaction(30)
    assert ck_read(bootstrap, "slow", "read_committed") == [b"on time"]


# --- kafka-python ------------------------------------------------------------------------------


def test_kafka_python_transactional_producer(broker) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KpTopicPartition
    from kafka.structs import OffsetAndMetadata

    broker.log.create_topic("kpt")
    broker.log.create_topic("in")  # offsets of a partition that does not exist are refused

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="kp-tx",
                             max_block_ms=20_000)
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(3):
        producer.send("kpt", value=b"kept-%d" % i, partition=0)
    producer.send_offsets_to_transaction(
        {KpTopicPartition("in", 0): OffsetAndMetadata(42, "", -1)}, "kp-group")
    producer.commit_transaction()
    producer.begin_transaction()  # the same instance goes on (classic EndTxn)
    producer.send("kpt", value=b"dropped", partition=0)
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send("kpt", value=b"kept-3", partition=0)
    producer.commit_transaction()
    producer.close()
    assert committed(broker.log, "kp-group", TopicPartition("in", 0)) == 42
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             isolation_level="read_committed", consumer_timeout_ms=3000,
                             enable_auto_commit=False)
    consumer.assign([KpTopicPartition("kpt", 0)])
    values = [m.value for m in consumer]
    consumer.close()
    assert values == [b"kept-0", b"kept-1", b"kept-2", b"kept-3"]


# --- aiokafka ----------------------------------------------------------------------------------


def test_aiokafka_transactional_producer_runs_many_transactions(broker) -> None:
    """aiokafka speaks EndTxn v0: its one producer commits, aborts and commits again."""
    from aiokafka import AIOKafkaProducer

    class Rollback(Exception):
        pass

    broker.log.create_topic("akt")

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap,
                                    transactional_id="ak-tx")
        await producer.start()
        try:
            for n in range(4):
                try:
                    async with producer.transaction():  # aborts when the body raises
                        await producer.send_and_wait("akt", value=b"txn-%d" % n, partition=0)
                        if n == 2:
                            raise Rollback
                except Rollback:
                    pass
        finally:
            await producer.stop()

    asyncio.run(run())
    assert ck_read(broker.bootstrap, "akt", "read_committed") == [b"txn-0", b"txn-1",
                                                                   b"txn-3"]
    assert ck_read(broker.bootstrap, "akt", "read_uncommitted") == [
        b"txn-0", b"txn-1", b"txn-2", b"txn-3"]


# --- raw frames: idempotence, the produce path, error codes ---------------------------------------


def test_a_retried_idempotent_produce_is_answered_with_its_first_offsets(broker, raw) -> None:
    broker.log.create_topic("idem")
    identity = raw.init(None)
    first = batch([b"a", b"b", b"c"], identity, 0, transactional=False)
    assert raw.produce("idem", 0, first) == (0, 0)
    assert raw.produce("idem", 0, first) == (0, 0)  # the retry: the same offsets again
    assert raw.produce("idem", 0, batch([b"d"], identity, 3, transactional=False)) == (0, 3)
    log = broker.log.partition_log("idem", 0)
    assert log.log_end_offset() == 4
    state = log.producer_states()[identity[0]]
    assert (state.epoch, state.last_sequence) == (identity[1], 3)
    # KIP-360: the producer bumps its own epoch; its old epoch is then stale at the partition,
    # which Produce answers INVALID_PRODUCER_EPOCH (not PRODUCER_FENCED, unknown to Produce).
    bumped = raw.init(None, producer_id=identity[0], epoch=identity[1])
    assert bumped == (identity[0], identity[1] + 1)
    assert raw.produce("idem", 0, batch([b"e"], bumped, 0, transactional=False)) == (0, 4)
    stale = raw.produce("idem", 0, batch([b"f"], identity, 4, transactional=False))
    assert stale[0] == INVALID_PRODUCER_EPOCH
    assert log.log_end_offset() == 5


def test_a_transactional_batch_needs_its_partition_in_the_transaction(broker, raw) -> None:
    """KIP-890 part 1: refused (INVALID_TXN_STATE) until AddPartitionsToTxn; nothing written."""
    broker.log.create_topic("verified", partitions=2)
    identity = raw.init("verify-tx")
    refused = raw.produce("verified", 0, batch([b"x"], identity, 0),
                          transactional_id="verify-tx")
    assert refused[0] == INVALID_TXN_STATE
    assert broker.log.partition_log("verified", 0).log_end_offset() == 0
    assert raw.add_partitions("verify-tx", identity, "verified", (0,)) == [0]
    assert raw.produce("verified", 0, batch([b"x"], identity, 0),
                       transactional_id="verify-tx") == (0, 0)
    # Partition 1 was never added; a batch without the request's transactional id is refused.
    assert raw.produce("verified", 1, batch([b"y"], identity, 0),
                       transactional_id="verify-tx")[0] == INVALID_TXN_STATE
    assert raw.produce("verified", 0, batch([b"y"], identity, 1))[0] == INVALID_TXN_STATE
    assert raw.produce("verified", 0, batch([b"z"], identity, 1),
                       transactional_id="unknown-tx")[0] == UNKNOWN_PRODUCER_ID
    # A newer instance fences the old epoch at the produce path too.
    raw.init("verify-tx")
    assert raw.produce("verified", 0, batch([b"old"], identity, 1),
                       transactional_id="verify-tx")[0] == INVALID_PRODUCER_EPOCH
    assert broker.log.partition_log("verified", 1).log_end_offset() == 0


def test_clients_may_not_write_transaction_markers(broker, raw) -> None:
    broker.log.create_topic("markers")
    identity = raw.init("marker-tx")
    assert raw.add_partitions("marker-tx", identity, "markers", (0,)) == [0]
    assert raw.produce("markers", 0, batch([b"open"], identity, 0),
                       transactional_id="marker-tx") == (0, 0)
    forged = build_control_batch(ControlType.COMMIT, producer_id=identity[0],
                                 producer_epoch=identity[1] + 1, coordinator_epoch=0,
                                 timestamp_ms=1_700_000_000_000)
    assert raw.produce("markers", 0, forged, transactional_id="marker-tx")[0] == INVALID_RECORD
    log = broker.log.partition_log("markers", 0)
    assert log.last_stable_offset == 0  # the transaction is still open
    assert raw.end("marker-tx", identity, True) == 0
    assert log.last_stable_offset == log.log_end_offset() == 2


def test_a_fenced_producer_gets_the_code_its_version_knows(broker, raw) -> None:
    """PRODUCER_FENCED from v2 (InitProducerId v4), INVALID_PRODUCER_EPOCH before; a fenced
    instance cannot take the id back with a KIP-360 bump either."""
    broker.log.create_topic("fenced")
    old = raw.init("fence-tx")
    new = raw.init("fence-tx")
    assert raw.add_partitions("fence-tx", old, "fenced", (0,), version=0) == [
        INVALID_PRODUCER_EPOCH]
    assert raw.add_partitions("fence-tx", old, "fenced", (0,), version=3) == [PRODUCER_FENCED]
    assert raw.end("fence-tx", old, True, version=1) == INVALID_PRODUCER_EPOCH
    assert raw.end("fence-tx", old, True, version=3) == PRODUCER_FENCED
    for version, cls, code in ((1, AddOffsetsV1, INVALID_PRODUCER_EPOCH),
                               (3, AddOffsetsV3, PRODUCER_FENCED)):
        response = raw.call(ApiKey.ADD_OFFSETS_TO_TXN, version, cls(
            transactional_id="fence-tx", producer_id=old[0], producer_epoch=old[1],
            group_id="g"))
        assert response.error_code == code
    for version, code in ((3, INVALID_PRODUCER_EPOCH), (4, PRODUCER_FENCED)):
        cls = InitV4 if version == 4 else InitV3
        response = raw.call(ApiKey.INIT_PRODUCER_ID, version, cls(
            transactional_id="fence-tx", transaction_timeout=_ms(60_000),
            producer_id=old[0], producer_epoch=old[1]))
        assert response.error_code == code
    described = broker.log.describe_transaction("fence-tx")
    assert (described.producer_id, described.producer_epoch) == new
    # The current instance may bump its own epoch (KIP-360).
    assert raw.init("fence-tx", producer_id=new[0], epoch=new[1]) == (new[0], new[1] + 1)


def test_end_txn_is_idempotent_and_retried_after_a_failed_marker_write(broker, raw,
                                                                         monkeypatch) -> None:
    broker.log.create_topic("ended")
    identity = raw.init("end-tx")
    assert raw.add_partitions("end-tx", identity, "ended", (0,)) == [0]
    assert raw.produce("ended", 0, batch([b"r"], identity, 0), transactional_id="end-tx")[0] == 0
    coordinator = broker.log.transaction_coordinator
    write_markers = coordinator._write_markers
    failures = [StorageError("disk full"), DatabaseLockedError("database is locked")]

    def flaky(*args: Any) -> None:
        if failures:
            raise failures.pop()
        write_markers(*args)

    monkeypatch.setattr(coordinator, "_write_markers", flaky)
    for _ in range(2):  # a busy store (retriable), then any storage error: retry EndTxn
        assert raw.end("end-tx", identity, True) == COORDINATOR_LOAD_IN_PROGRESS
        assert broker.log.describe_transaction("end-tx").state == "PrepareCommit"
    assert raw.end("end-tx", identity, True) == 0  # the retry completes the decided commit
    assert raw.end("end-tx", identity, True) == 0  # and a lost answer's retry still succeeds
    assert raw.end("end-tx", identity, False) == INVALID_TXN_STATE
    assert ck_read(broker.bootstrap, "ended", "read_committed") == [b"r"]


def test_concurrent_transactions_is_answered_retriable(broker, raw, monkeypatch) -> None:
    from logstore.errors import ConcurrentTransactionsError

    identity = raw.init("busy-tx")
    broker.log.create_topic("busy")

    def busy(*args: Any, **kwargs: Any) -> None:
        raise ConcurrentTransactionsError("the previous transaction is still completing")

    monkeypatch.setattr(broker.log.transaction_coordinator, "add_partitions", busy)
    assert raw.add_partitions("busy-tx", identity, "busy", (0,)) == [CONCURRENT_TRANSACTIONS]


def test_txn_offset_commit_fences_stale_group_members(broker, raw) -> None:
    """KIP-447 (v3): offsets are accepted only from a member of the group's current generation;
    they become the group's committed offsets when the transaction commits."""
    broker.log.create_topic("members")
    member = broker.log.consumer(group_id="g447", session_timeout_ms=6000,
                                 heartbeat_interval_ms=100)
    try:
        member.subscribe(["members"])
        deadline = time.monotonic() + 20
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(timeout_ms=100)
        group = broker.log.describe_group("g447")
        member_id, generation = group.members[0].member_id, group.generation
        identity = raw.init("g447-tx")

        def commit_all(member: str, generation: int,
                       wanted: tuple[tuple[str, int], ...]) -> list[tuple[str, int, int]]:
            request = txn_offset_commit_v3.TxnOffsetCommitRequest(
                transactional_id="g447-tx", group_id="g447", producer_id=identity[0],
                producer_epoch=identity[1], generation_id=generation, member_id=member,
                group_instance_id=None, topics=tuple(
                    txn_offset_commit_v3.TxnOffsetCommitRequestTopic(name=name, partitions=(
                        txn_offset_commit_v3.TxnOffsetCommitRequestPartition(
                            partition_index=partition, committed_offset=7,
                            committed_leader_epoch=-1, committed_metadata="m"),))
                    for name, partition in wanted))
            response = raw.call(ApiKey.TXN_OFFSET_COMMIT, 3, request)
            return [(t.name, p.partition_index, int(p.error_code))
                    for t in response.topics for p in t.partitions]

        def commit(member: str, generation: int) -> int:
            return commit_all(member, generation, (("members", 0),))[0][2]

        assert commit(member_id, generation + 1) == ILLEGAL_GENERATION
        assert commit("someone-else", generation) == UNKNOWN_MEMBER_ID
        # Partitions that do not exist are answered so; the others are sent to the transaction.
        assert commit_all(member_id, generation, (("members", 0), ("members", 3),
                                                  ("nosuch", 0))) == [
            ("members", 0, 0), ("members", 3, UNKNOWN_TOPIC_OR_PARTITION),
            ("nosuch", 0, UNKNOWN_TOPIC_OR_PARTITION)]
        tp = TopicPartition("members", 0)
        assert committed(broker.log, "g447", tp) is None  # not before the commit
        assert raw.end("g447-tx", identity, True) == 0
        stored = broker.log.committed_offsets("g447")[tp]
        assert (stored.offset, stored.metadata) == (7, "m")
    finally:
        member.close()


# --- administration ------------------------------------------------------------------------------


def test_describe_and_list_transactions_and_producers(broker, raw) -> None:
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KpTopicPartition
    from kafka.errors import TransactionalIdNotFoundError

    broker.log.create_topic("admin-t")
    open_txn = ck_transactional(broker.bootstrap, "open-tx",
                                **{"transaction.timeout.ms": 45_000})
    open_txn.begin_transaction()
    open_txn.produce("admin-t", value=b"pending", partition=0)
    assert open_txn.flush(30) == 0
    done = ck_transactional(broker.bootstrap, "done-tx")
    done.begin_transaction()
    done.produce("admin-t", value=b"done", partition=0)
    done.commit_transaction(30)
    open_id = broker.log.describe_transaction("open-tx")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        listed = {t.transactional_id: (t.producer_id, t.state.value)
                  for t in admin.list_transactions()[0]}
        assert listed["open-tx"] == (open_id.producer_id, "Ongoing")
        assert listed["done-tx"][1] == "CompleteCommit"
        only_open = admin.list_transactions(state_filters=["Ongoing"])[0]
        assert [t.transactional_id for t in only_open] == ["open-tx"]
        by_producer = admin.list_transactions(producer_id_filters=[listed["done-tx"][0]])[0]
        assert [t.transactional_id for t in by_producer] == ["done-tx"]
        described = admin.describe_transactions(["open-tx", "done-tx"])
        assert described["open-tx"].state.value == "Ongoing"
        assert described["open-tx"].topic_partitions == {KpTopicPartition("admin-t", 0)}
        assert described["open-tx"].transaction_timeout_ms == 45_000
        assert described["open-tx"].transaction_start_time_ms == open_id.start_ms
        assert described["done-tx"].transaction_start_time_ms == -1
        with pytest.raises(TransactionalIdNotFoundError):
            admin.describe_transactions(["no-such-tx"])
        producers = admin.describe_producers([KpTopicPartition("admin-t", 0)])
        states = {p.producer_id: p for p in
                  producers[KpTopicPartition("admin-t", 0)].active_producers}
        pending = states[open_id.producer_id]
        assert (pending.producer_epoch, pending.last_sequence) == (open_id.producer_epoch, 0)
        assert pending.current_transaction_start_offset == 0
        finished = states[listed["done-tx"][0]]
        assert finished.current_transaction_start_offset == -1
    finally:
        admin.close()
    unknown = raw.call(ApiKey.LIST_TRANSACTIONS, 0, ListTransactionsRequest(
        state_filters=("Ongoing", "Bogus"), producer_id_filters=()))
    assert unknown.unknown_state_filters == ("Bogus",)
    assert [t.transactional_id for t in unknown.transaction_states] == ["open-tx"]
    # The open transaction holds read_committed readers back; they see the committed record
    # once the open one is aborted.
    open_txn.abort_transaction(30)
    assert ck_read(broker.bootstrap, "admin-t", "read_committed") == [b"done"]
