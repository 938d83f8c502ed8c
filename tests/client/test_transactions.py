"""Idempotent and transactional producers through the embedded API (both metadata backends)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from logstore.backends.txn_records import ProducerIdAndEpoch

import logstore
from logstore.clock import ManualClock
from logstore.errors import (
    CommitFailedError,
    DatabaseLockedError,
    IllegalStateError,
    InvalidArgumentError,
    ProducerFencedError,
    RecordTooLargeError,
    TransactionAbortedError,
    TransactionalIdNotFoundError,
)
from logstore.log.partition_log import PartitionLog
from logstore.records.builder import encode_batch
from logstore.records.header import iter_headers
from logstore.types import OffsetAndMetadata, TopicPartition

TP0 = TopicPartition("t", 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def txn_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[logstore.Log]:
    url = request.getfixturevalue("postgresql_url") if request.param == "postgresql" else None
    opened = logstore.open(tmp_path / "d", metadata_url=url, maintenance_interval_ms=None)
    opened.create_topic("t", partitions=2)
    yield opened
    opened.close()


@pytest.fixture
def manual(tmp_path: Path) -> Iterator[tuple[logstore.Log, ManualClock]]:
    clock = ManualClock()
    opened = logstore.open(tmp_path / "m", clock=clock, maintenance_interval_ms=None)
    opened.create_topic("t", partitions=2)
    yield opened, clock
    opened.close()


def committed_values(log: logstore.Log, partition: int = 0) -> list[bytes]:
    consumer = log.consumer(auto_offset_reset="earliest", isolation_level="read_committed")
    tp = TopicPartition("t", partition)
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    values = []
    while consumer.position(tp) < end:
        values.extend(r.value for r in consumer.poll(timeout_ms=1000))
    consumer.close()
    return values


def stable_and_high(log: logstore.Log, partition: int = 0) -> tuple[int, int]:
    description = log.describe_topic("t").partitions[partition]
    return description.last_stable_offset, description.high_watermark


def test_the_context_manager_commits_or_aborts(txn_log):
    producer = txn_log.producer(transactional_id="tx", linger_ms=0)
    producer.init_transactions()
    with producer.transaction():
        producer.send("t", value=b"kept", partition=0)
    with pytest.raises(RuntimeError), producer.transaction():
        producer.send("t", value=b"dropped", partition=0).result(10)
        raise RuntimeError("the application failed")
    with producer.transaction():
        producer.send("t", value=b"kept too", partition=0)
    assert committed_values(txn_log) == [b"kept", b"kept too"]
    stable, high = stable_and_high(txn_log)
    assert stable == high == 6  # 3 records, 3 markers
    producer.close()


def test_misuse_is_reported(txn_log):
    producer = txn_log.producer(transactional_id="tx")
    with pytest.raises(IllegalStateError, match="init_transactions"):
        producer.begin_transaction()
    producer.init_transactions()
    with pytest.raises(IllegalStateError, match="begin_transaction"):
        producer.send("t", value=b"x")
    producer.begin_transaction()
    with pytest.raises(IllegalStateError):
        producer.begin_transaction()
    producer.commit_transaction()  # nothing was sent: an empty transaction commits as a no-op
    plain = txn_log.producer()
    with pytest.raises(IllegalStateError, match="transactional_id"):
        plain.begin_transaction()
    with pytest.raises(InvalidArgumentError):
        txn_log.producer(transactional_id="x", enable_idempotence=False)
    producer.close()
    plain.close()


def test_an_open_transaction_holds_the_lso_until_commit_or_abort(txn_log):
    producer = txn_log.producer(transactional_id="tx", linger_ms=0)
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("t", value=b"open", partition=0).result(10)
    with txn_log.producer(linger_ms=0) as plain:
        plain.send("t", value=b"plain", partition=0).result(10)
    assert stable_and_high(txn_log) == (0, 2)
    assert committed_values(txn_log) == []
    producer.commit_transaction()
    assert stable_and_high(txn_log) == (3, 3)
    assert committed_values(txn_log) == [b"open", b"plain"]
    producer.begin_transaction()
    producer.send("t", value=b"aborted", partition=0).result(10)
    assert stable_and_high(txn_log) == (3, 4)
    producer.abort_transaction()
    assert stable_and_high(txn_log) == (5, 5)
    assert committed_values(txn_log) == [b"open", b"plain"]
    producer.close()


def test_offsets_sent_to_a_transaction_are_committed_only_with_it(txn_log):
    consumer = txn_log.consumer(group_id="g", enable_auto_commit=False)
    consumer.subscribe(["t"])
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    producer = txn_log.producer(transactional_id="tx", linger_ms=0)
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("t", value=b"x", partition=1)
    producer.send_offsets_to_transaction({TP0: OffsetAndMetadata(7)}, consumer.group_metadata())
    producer.abort_transaction()
    assert txn_log.committed_offsets("g") == {}
    with producer.transaction():
        producer.send_offsets_to_transaction({TP0: OffsetAndMetadata(9, "m")},
                                             consumer.group_metadata())
    assert txn_log.committed_offsets("g") == {TP0: OffsetAndMetadata(9, "m")}
    stale = consumer.group_metadata()
    consumer.close()  # leaves: that member identity is fenced now
    producer.begin_transaction()
    with pytest.raises(CommitFailedError):
        producer.send_offsets_to_transaction({TP0: OffsetAndMetadata(11)}, stale)
    producer.abort_transaction()
    assert txn_log.committed_offsets("g")[TP0].offset == 9
    producer.close()


def test_a_new_instance_fences_the_old_one(txn_log):
    old = txn_log.producer(transactional_id="tx", linger_ms=0)
    old.init_transactions()
    old.begin_transaction()
    old.send("t", value=b"zombie", partition=0).result(10)
    new = txn_log.producer(transactional_id="tx", linger_ms=0)
    new.init_transactions()  # aborts the open transaction
    assert stable_and_high(txn_log)[0] == stable_and_high(txn_log)[1]
    with pytest.raises(ProducerFencedError):
        old.commit_transaction()
    with pytest.raises(ProducerFencedError):
        old.begin_transaction()  # fenced for good
    with new.transaction():
        new.send("t", value=b"successor", partition=0)
    assert committed_values(txn_log) == [b"successor"]
    old.close()
    new.close()


def test_a_timed_out_transaction_is_aborted_and_the_producer_recovers(manual):
    log, clock = manual
    producer = log.producer(transactional_id="tx", linger_ms=0, transaction_timeout_ms=5000)
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("t", value=b"slow", partition=0).result(10)
    assert log.run_transaction_maintenance() == []
    assert stable_and_high(log)[0] == 0
    clock.advance(5001)
    assert log.run_transaction_maintenance() == ["tx"]
    assert stable_and_high(log) == (2, 2)
    with pytest.raises(TransactionAbortedError):
        producer.commit_transaction()
    producer.abort_transaction()  # adopts the epoch the coordinator bumped
    with producer.transaction():
        producer.send("t", value=b"next", partition=0)
    assert committed_values(log) == [b"next"]
    producer.close()


def test_a_producer_whose_id_expired_recovers_through_its_offsets_too(manual):
    """The first coordinator call of a transaction may be TxnOffsetCommit: the gone id makes
    the transaction abortable there as well, and an abort with no send at all renews it."""
    log, clock = manual
    producer = log.producer(transactional_id="tx", linger_ms=0)
    producer.init_transactions()
    clock.advance(log.transaction_coordinator.transactional_id_expiration_ms)
    log.run_transaction_maintenance()
    assert log.list_transactions() == []
    producer.begin_transaction()
    with pytest.raises(TransactionalIdNotFoundError, match=r"abort_transaction\(\)"):
        producer.send_offsets_to_transaction({TP0: OffsetAndMetadata(3)}, "g")
    with pytest.raises(IllegalStateError, match=r"abort_transaction\(\)"):
        producer.begin_transaction()
    producer.abort_transaction()
    with producer.transaction():
        producer.send("t", value=b"next", partition=0)
        producer.send_offsets_to_transaction({TP0: OffsetAndMetadata(4)}, "g")
    assert committed_values(log) == [b"next"]
    assert log.committed_offsets("g") == {TP0: OffsetAndMetadata(4)}
    idle = log.producer(transactional_id="idle", linger_ms=0)
    idle.init_transactions()
    clock.advance(log.transaction_coordinator.transactional_id_expiration_ms)
    log.run_transaction_maintenance()
    idle.begin_transaction()
    idle.abort_transaction()  # nothing sent: the abort finds the id gone and renews it
    assert [d.transactional_id for d in log.list_transactions()] == ["idle"]
    producer.close()
    idle.close()


def test_a_fenced_producer_stays_fenced_after_its_abort(txn_log):
    old = txn_log.producer(transactional_id="tx", linger_ms=0)
    old.init_transactions()
    old.begin_transaction()
    new = txn_log.producer(transactional_id="tx", linger_ms=0)
    new.init_transactions()
    with pytest.raises(ProducerFencedError):
        old.abort_transaction()
    with pytest.raises(ProducerFencedError):
        old.begin_transaction()
    old.close()
    new.close()


def test_a_failed_record_makes_the_transaction_abortable(txn_log):
    txn_log.alter_topic_config("t", {"max.message.bytes": "2000"})
    producer = txn_log.producer(transactional_id="tx", linger_ms=60_000)
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("t", value=b"ok", partition=0)
    txn_log.alter_topic_config("t", {"max.message.bytes": "100"})  # the batch is now too big
    producer.send("t", value=b"x" * 60, partition=0)
    with pytest.raises(TransactionAbortedError, match="failed"):
        producer.commit_transaction()
    producer.abort_transaction()
    txn_log.alter_topic_config("t", {"max.message.bytes": None})
    with producer.transaction():
        producer.send("t", value=b"later", partition=0)
    assert committed_values(txn_log) == [b"later"]
    producer.close()


def test_a_retry_after_a_lost_acknowledgement_is_not_written_twice(txn_log, monkeypatch):
    original = PartitionLog.append_each
    lost = []

    def append_then_lose_the_answer(self, batches, **options):  # type: ignore[no-untyped-def]
        results = original(self, batches, **options)
        if not lost:
            lost.append(results)
            raise DatabaseLockedError("the answer was lost")  # retriable: the sender retries
        return results

    monkeypatch.setattr(PartitionLog, "append_each", append_then_lose_the_answer)
    with txn_log.producer(linger_ms=0, retry_backoff_ms=1) as producer:
        meta = producer.send("t", value=b"once", partition=0).result(10)
    assert lost and meta.offset == lost[0][0].base_offset == 0
    data = txn_log.fetch("t", 0, 0).records
    assert [h.record_count for _, h in iter_headers(data)] == [1], "written exactly once"


def test_producers_are_idempotent_unless_told_otherwise(txn_log):
    with txn_log.producer(linger_ms=0) as idempotent, txn_log.producer(
            linger_ms=0, enable_idempotence=False) as plain:
        idempotent.send("t", value=b"a", partition=0).result(10)
        plain.send("t", value=b"b", partition=0).result(10)
    headers = [h for _, h in iter_headers(txn_log.fetch("t", 0, 0).records)]
    assert headers[0].producer_id >= 1000 and headers[0].base_sequence == 0
    assert headers[1].producer_id == -1 and headers[1].base_sequence == -1


def test_oversized_records_still_fail_at_send(txn_log):
    producer = txn_log.producer(transactional_id="tx")
    producer.init_transactions()
    producer.begin_transaction()
    with pytest.raises(RecordTooLargeError):
        producer.send("t", value=b"x" * 2_000_000)
    producer.abort_transaction()
    producer.close()


# --- classic ends (Kafka clients before EndTxn v5) and marker claims ----------------------------


def _txn_batch(value: bytes, identity: ProducerIdAndEpoch, sequence: int) -> bytes:
    return encode_batch([(1000, None, value, ())], producer_id=identity.producer_id,
                        producer_epoch=identity.epoch, base_sequence=sequence,
                        is_transactional=True)


def test_a_stalled_claimant_does_not_end_the_next_transaction(txn_log, monkeypatch) -> None:
    """Classic transactions keep the producer's epoch, so only the claim a marker carries
    tells a late marker of transaction N from the end of N+1: the first EndTxn stalls before
    writing its marker, the maintenance pass claims N again and completes it, N+1 begins on
    the same partition, and then the stalled marker lands."""
    coordinator = txn_log.transaction_coordinator
    log = txn_log.partition_log("t", 0)
    who = coordinator.init_producer_id("classic-tx", 60_000)
    coordinator.add_partitions("classic-tx", who.producer_id, who.epoch, [TP0])
    log.append(_txn_batch(b"n", who, 0))
    write_markers = coordinator._write_markers
    entered, release = threading.Event(), threading.Event()
    stalled: list[bool] = []

    def stalling(*args: object) -> None:
        if not stalled:
            stalled.append(True)
            entered.set()
            assert release.wait(30)
        write_markers(*args)

    monkeypatch.setattr(coordinator, "_write_markers", stalling)
    outcome: list[object] = []
    first = threading.Thread(target=lambda: outcome.append(coordinator.end_transaction(
        "classic-tx", who.producer_id, who.epoch, True, bump=False)))
    first.start()
    assert entered.wait(30)
    assert coordinator.complete_pending() == ["classic-tx"]  # the later claim completes N
    coordinator.add_partitions("classic-tx", who.producer_id, who.epoch, [TP0])
    log.append(_txn_batch(b"n+1", who, 1))  # the same epoch, sequences going on
    release.set()
    first.join(30)
    assert outcome == [who]  # the stalled call answers; it could not complete
    assert log.last_stable_offset == 2, "transaction N+1 must still be open"
    assert coordinator.end_transaction("classic-tx", who.producer_id, who.epoch, False,
                                       bump=False) == who
    assert committed_values(txn_log) == [b"n"]
