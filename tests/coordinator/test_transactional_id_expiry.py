"""Transactional ids expire (Kafka's ``transactional.id.expiration.ms``): the coordinator's
maintenance removes ids with no transaction in progress that were not used for that long, never
one a producer uses at the same moment; a producer using an expired id starts afresh. On the
real metadata store (SQLite and PostgreSQL), time from a ManualClock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from logstore.backends.sql_metadata import SqlMetadataStore
from logstore.backends.txn_records import (
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    EMPTY,
    ONGOING,
    PREPARE_COMMIT,
    ProducerIdAndEpoch,
)

import logstore
from logstore.clock import ManualClock
from logstore.coordinator.transaction_coordinator import TransactionCoordinator
from logstore.coordinator.txn_state import DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS
from logstore.errors import (
    InvalidArgumentError,
    ProducerFencedError,
    StorageError,
    TransactionAbortedError,
    TransactionalIdNotFoundError,
)
from logstore.types import TopicPartition

A0 = TopicPartition("a", 0)
TIMEOUT = 60_000
EXPIRY = 3_600_000
DAY = 24 * 3_600_000


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgresql_url"))
    return f"sqlite:///{tmp_path / 'metadata.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[SqlMetadataStore]:
    opened = SqlMetadataStore(store_url)
    yield opened
    opened.close()


class Markers:
    """A ``write_markers`` that records calls, or fails while ``failing``."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False

    def __call__(self, partitions: list[TopicPartition], producer_id: int, epoch: int,
                 commit: bool, coordinator_epoch: int) -> None:
        if self.failing:
            raise StorageError("disk unavailable", retriable=True)
        self.calls += 1


@pytest.fixture
def markers() -> Markers:
    return Markers()


@pytest.fixture
def coordinator(store: SqlMetadataStore, clock: ManualClock,
                markers: Markers) -> TransactionCoordinator:
    return TransactionCoordinator(store, clock, markers, transactional_id_expiration_ms=EXPIRY)


def ids(coordinator: TransactionCoordinator) -> dict[str, str]:
    return {r.transactional_id: r.state for r in coordinator.list_transactions()}


def commit_one(coordinator: TransactionCoordinator, tid: str) -> ProducerIdAndEpoch:
    who = coordinator.init_producer_id(tid, TIMEOUT)
    coordinator.add_partitions(tid, who.producer_id, who.epoch, [A0])
    return coordinator.end_transaction(tid, who.producer_id, who.epoch, commit=True)


def test_the_default_is_kafkas_seven_days(store, clock, markers):
    assert DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS == 7 * DAY
    coordinator = TransactionCoordinator(store, clock, markers)
    assert coordinator.transactional_id_expiration_ms == 7 * DAY
    coordinator.init_producer_id("tx", TIMEOUT)
    clock.advance(7 * DAY - 1)
    assert coordinator.expire_transactional_ids() == []
    clock.advance(1)
    assert coordinator.expire_transactional_ids() == ["tx"]


def test_ids_without_a_transaction_in_progress_expire_after_the_expiration(
    coordinator, clock, markers
):
    coordinator.init_producer_id("empty", TIMEOUT)
    commit_one(coordinator, "committed")
    aborted = coordinator.init_producer_id("aborted", TIMEOUT)
    coordinator.add_partitions("aborted", aborted.producer_id, aborted.epoch, [A0])
    coordinator.end_transaction("aborted", aborted.producer_id, aborted.epoch, commit=False)
    ongoing = coordinator.init_producer_id("ongoing", 900_000)
    coordinator.add_partitions("ongoing", ongoing.producer_id, ongoing.epoch, [A0])
    prepared = coordinator.init_producer_id("prepared", 900_000)
    coordinator.add_partitions("prepared", prepared.producer_id, prepared.epoch, [A0])
    markers.failing = True  # the commit stops after its first step: PrepareCommit
    with pytest.raises(StorageError):
        coordinator.end_transaction("prepared", prepared.producer_id, prepared.epoch, True)
    assert ids(coordinator) == {"aborted": COMPLETE_ABORT, "committed": COMPLETE_COMMIT,
                                "empty": EMPTY, "ongoing": ONGOING, "prepared": PREPARE_COMMIT}

    clock.advance(EXPIRY - 1)
    assert coordinator.expire_transactional_ids() == []
    clock.advance(1)
    assert coordinator.expire_transactional_ids() == ["aborted", "committed", "empty"]
    # A transaction in progress is the timeout's business, never the expiry's.
    assert ids(coordinator) == {"ongoing": ONGOING, "prepared": PREPARE_COMMIT}
    assert coordinator.expire_transactional_ids() == []


def test_every_use_of_an_id_restarts_its_expiration(coordinator, clock):
    who = coordinator.init_producer_id("tx", TIMEOUT)
    clock.advance(EXPIRY - 1)
    coordinator.add_partitions("tx", who.producer_id, who.epoch, [A0])  # a new transaction
    after = coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    clock.advance(EXPIRY - 1)
    assert coordinator.expire_transactional_ids() == []
    coordinator.init_producer_id("tx", TIMEOUT)  # a new instance
    clock.advance(EXPIRY - 1)
    assert coordinator.expire_transactional_ids() == []
    assert coordinator.describe_transaction("tx").producer_epoch == after.epoch + 1
    clock.advance(1)
    assert coordinator.expire_transactional_ids() == ["tx"]


def test_an_expired_id_starts_afresh_and_the_old_instance_is_fenced(coordinator, clock):
    old = commit_one(coordinator, "tx")
    clock.advance(EXPIRY)
    assert coordinator.expire_transactional_ids() == ["tx"]
    # Until an instance initializes it again, the id is unknown to the old instance too.
    with pytest.raises(TransactionalIdNotFoundError, match="expired"):
        coordinator.add_partitions("tx", old.producer_id, old.epoch, [A0])
    with pytest.raises(TransactionalIdNotFoundError):
        coordinator.describe_transaction("tx")

    new = coordinator.init_producer_id("tx", TIMEOUT)
    assert new.epoch == 0 and new.producer_id != old.producer_id  # no memory of the old id
    with pytest.raises(ProducerFencedError):
        coordinator.add_partitions("tx", old.producer_id, old.epoch, [A0])
    with pytest.raises(ProducerFencedError):
        coordinator.end_transaction("tx", old.producer_id, old.epoch, commit=False)
    coordinator.add_partitions("tx", new.producer_id, new.epoch, [A0])
    assert coordinator.describe_transaction("tx").state == ONGOING


def test_an_id_reinitialized_while_the_expiry_runs_is_kept(coordinator, store, clock):
    """The removal is a compare-and-swap on the version judged expired: a producer that
    initializes the id between the listing and the delete keeps it (and its identity)."""
    coordinator.init_producer_id("tx", TIMEOUT)
    clock.advance(EXPIRY)
    listed = store.list_transactions
    fresh: list[ProducerIdAndEpoch] = []

    def list_then_reinit(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = listed(*args, **kwargs)
        fresh.append(coordinator.init_producer_id("tx", TIMEOUT))  # the producer, meanwhile
        return found

    store.list_transactions = list_then_reinit  # type: ignore[method-assign]
    try:
        assert coordinator.expire_transactional_ids() == []
    finally:
        del store.list_transactions
    record = coordinator.describe_transaction("tx")
    assert (record.producer_id, record.producer_epoch) == (fresh[0].producer_id, fresh[0].epoch)
    assert record.update_ms == clock.time_ms()
    assert coordinator.expire_transactional_ids() == []


def test_two_coordinators_expiring_at_once_remove_an_id_once(store, clock, markers):
    first = TransactionCoordinator(store, clock, markers, transactional_id_expiration_ms=EXPIRY)
    second = TransactionCoordinator(store, clock, markers, transactional_id_expiration_ms=EXPIRY)
    first.init_producer_id("tx", TIMEOUT)
    clock.advance(EXPIRY)
    listed = store.list_transactions
    removed_by_second: list[list[str]] = []

    def list_then_race(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = listed(*args, **kwargs)
        store.list_transactions = listed  # type: ignore[method-assign]
        removed_by_second.append(second.expire_transactional_ids())
        return found

    store.list_transactions = list_then_race  # type: ignore[method-assign]
    try:
        assert first.expire_transactional_ids() == []
    finally:
        vars(store).pop("list_transactions", None)
    assert removed_by_second == [["tx"]]


@pytest.mark.parametrize("expiration", [0, -1, 1 << 31, "7d", True, 1.5])
def test_a_bad_expiration_is_refused(store, clock, markers, expiration):
    with pytest.raises(InvalidArgumentError, match="transactional_id_expiration_ms"):
        TransactionCoordinator(store, clock, markers, transactional_id_expiration_ms=expiration)


# --- through the embedded API ----------------------------------------------------------------


def test_log_maintenance_expires_ids_and_a_new_producer_starts_afresh(tmp_path, clock,
                                                                      store_url):
    with logstore.open(tmp_path / "data", metadata_url=store_url, clock=clock,
                       maintenance_interval_ms=None,
                       transactional_id_expiration_ms=EXPIRY) as log:
        log.create_topic("t", 1)
        with log.producer(transactional_id="copier", linger_ms=0) as producer:
            producer.init_transactions()
            producer.begin_transaction()
            producer.send("t", value=b"x", partition=0)
            producer.commit_transaction()
        old = log.describe_transaction("copier")
        clock.advance(EXPIRY - 1)
        assert log.run_transaction_maintenance() == []
        assert [d.transactional_id for d in log.list_transactions()] == ["copier"]
        clock.advance(1)
        assert log.run_transaction_maintenance() == []  # it returns the ids it aborted
        assert log.list_transactions() == []

        with log.producer(transactional_id="copier", linger_ms=0) as producer:
            producer.init_transactions()
            producer.begin_transaction()
            producer.send("t", value=b"y", partition=0)
            producer.commit_transaction()
        new = log.describe_transaction("copier")
        assert new.producer_id != old.producer_id
        consumer = log.consumer(isolation_level="read_committed", auto_offset_reset="earliest",
                                enable_auto_commit=False)
        consumer.assign([TopicPartition("t", 0)])
        values = [r.value for r in consumer.poll(timeout_ms=1000)]
        consumer.close()
        assert values == [b"x", b"y"]


def test_opening_a_log_expires_ids_and_the_default_is_seven_days(tmp_path, clock, store_url):
    path = tmp_path / "data"
    with logstore.open(path, metadata_url=store_url, clock=clock,
                       maintenance_interval_ms=None) as log:
        log.transaction_coordinator.init_producer_id("idle", TIMEOUT)
        assert log.transaction_coordinator.transactional_id_expiration_ms == 7 * DAY
    clock.advance(7 * DAY - 1)
    with logstore.open(path, metadata_url=store_url, clock=clock,
                       maintenance_interval_ms=None) as log:
        assert [d.transactional_id for d in log.list_transactions()] == ["idle"]
    clock.advance(1)
    with logstore.open(path, metadata_url=store_url, clock=clock,
                       maintenance_interval_ms=None) as log:
        assert log.list_transactions() == []
    with pytest.raises(InvalidArgumentError):
        logstore.open(path, metadata_url=store_url, transactional_id_expiration_ms=0)


# --- a producer that outlives its id ----------------------------------------------------------


def read_committed(log: logstore.Log, tp: TopicPartition) -> list[bytes]:
    consumer = log.consumer(isolation_level="read_committed", auto_offset_reset="earliest",
                            enable_auto_commit=False)
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    values: list[bytes] = []
    while consumer.position(tp) < end:
        values.extend(r.value for r in consumer.poll(timeout_ms=1000))
    consumer.close()
    return values


def test_a_producer_idle_past_the_expiration_aborts_and_goes_on(tmp_path, clock, store_url):
    """Kafka's INVALID_PRODUCER_ID_MAPPING: the gone id makes the transaction abortable, and
    abort_transaction() initialises the id again, so the same producer goes on."""
    with logstore.open(tmp_path / "data", metadata_url=store_url, clock=clock,
                       maintenance_interval_ms=None,
                       transactional_id_expiration_ms=EXPIRY) as log:
        log.create_topic("t", 2)
        producer = log.producer(transactional_id="copier", linger_ms=0,
                                transaction_timeout_ms=TIMEOUT)
        producer.init_transactions()
        with producer.transaction():
            producer.send("t", value=b"before", partition=0)
        old = log.describe_transaction("copier")
        clock.advance(EXPIRY)
        log.run_transaction_maintenance()
        assert log.list_transactions() == []

        producer.begin_transaction()
        with pytest.raises(TransactionalIdNotFoundError, match=r"abort_transaction\(\)"):
            producer.send("t", value=b"lost", partition=0)
        with pytest.raises(TransactionAbortedError, match="abort"):
            producer.commit_transaction()
        producer.abort_transaction()
        renewed = log.describe_transaction("copier")
        assert renewed.producer_id != old.producer_id and renewed.producer_epoch == 0
        assert renewed.timeout_ms == TIMEOUT

        with producer.transaction():
            producer.send("t", value=b"after", partition=0)
            producer.send("t", value=b"after too", partition=1)
        producer.close()
        assert read_committed(log, TopicPartition("t", 0)) == [b"before", b"after"]
        assert read_committed(log, TopicPartition("t", 1)) == [b"after too"]


def test_after_the_renewal_a_zombie_of_an_earlier_instance_is_fenced(tmp_path, clock,
                                                                     store_url):
    with logstore.open(tmp_path / "data", metadata_url=store_url, clock=clock,
                       maintenance_interval_ms=None,
                       transactional_id_expiration_ms=EXPIRY) as log:
        log.create_topic("t", 1)
        zombie = log.producer(transactional_id="copier", linger_ms=0)
        zombie.init_transactions()
        current = log.producer(transactional_id="copier", linger_ms=0)
        current.init_transactions()  # fences the zombie, which does not know it yet
        clock.advance(EXPIRY)
        log.run_transaction_maintenance()
        assert log.list_transactions() == []

        current.begin_transaction()
        with pytest.raises(TransactionalIdNotFoundError):
            current.send("t", value=b"lost", partition=0)
        current.abort_transaction()  # initialises the id again: a new producer id
        zombie.begin_transaction()
        with pytest.raises(ProducerFencedError):
            zombie.send("t", value=b"zombie", partition=0)
        with pytest.raises(ProducerFencedError):
            zombie.abort_transaction()
        with pytest.raises(ProducerFencedError):
            zombie.begin_transaction()  # for good
        with current.transaction():
            current.send("t", value=b"current", partition=0)
        zombie.close()
        current.close()
        assert read_committed(log, TopicPartition("t", 0)) == [b"current"]


def test_a_zombie_that_comes_back_first_takes_the_renewed_id(tmp_path, clock, store_url):
    """The expired id keeps no memory of the epoch that fenced the zombie (as in Kafka):
    whichever instance initialises the id again first owns it, and the other is fenced."""
    with logstore.open(tmp_path / "data", metadata_url=store_url, clock=clock,
                       maintenance_interval_ms=None,
                       transactional_id_expiration_ms=EXPIRY) as log:
        log.create_topic("t", 1)
        zombie = log.producer(transactional_id="copier", linger_ms=0)
        zombie.init_transactions()
        current = log.producer(transactional_id="copier", linger_ms=0)
        current.init_transactions()
        clock.advance(EXPIRY)
        log.run_transaction_maintenance()

        zombie.begin_transaction()
        with pytest.raises(TransactionalIdNotFoundError):
            zombie.send("t", value=b"lost", partition=0)
        zombie.abort_transaction()
        with zombie.transaction():
            zombie.send("t", value=b"zombie", partition=0)
        current.begin_transaction()
        with pytest.raises(ProducerFencedError):
            current.send("t", value=b"current", partition=0)
        zombie.close()
        current.close()
        assert read_committed(log, TopicPartition("t", 0)) == [b"zombie"]
