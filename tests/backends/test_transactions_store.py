"""Transaction storage of the SQL metadata store (SQLite and PostgreSQL): the atomic
read-modify-write primitive, its records, commit offsets through the group tables, and the
producer-id allocator."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from logstore.backends.group_records import CommittedOffset, GroupRecord, GroupUpdate
from logstore.backends.sql_metadata import SqlMetadataStore
from logstore.backends.txn_records import (
    BUMP_END,
    COMPLETE_COMMIT,
    EMPTY,
    ONGOING,
    PREPARE_COMMIT,
    TransactionRecord,
    TxnUpdate,
)
from sqlalchemy import create_engine, text

from logstore.errors import (
    InvalidArgumentError,
    MetadataStoreError,
    StaleVersionError,
    TransactionalIdNotFoundError,
)
from logstore.types import TopicPartition

A0, B3 = TopicPartition("a", 0), TopicPartition("b", 3)


def _record(**changes: object) -> TransactionRecord:
    base = TransactionRecord(
        transactional_id="tx", producer_id=1000, producer_epoch=4, state=PREPARE_COMMIT,
        timeout_ms=30_000, partitions=frozenset({A0, B3}),
        pending_offsets={"g": {A0: CommittedOffset(7, "m", 2, 99)},
                         "h\u00e9": {B3: CommittedOffset(0)}},
        start_ms=10, update_ms=20, last_bump=BUMP_END, previous_producer_id=1000,
        previous_epoch=3, next_producer_id=1001,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _put(store: SqlMetadataStore, record: TransactionRecord, **offsets: object):  # type: ignore[no-untyped-def]
    return store.update_transaction(
        record.transactional_id,
        lambda current, _: (TxnUpdate(record, offsets), current),  # type: ignore[arg-type]
    )


def test_a_record_round_trips_and_every_write_bumps_the_version(store: SqlMetadataStore):
    record = _record()
    assert _put(store, record) is None  # the step saw no record
    stored = store.read_transaction("tx")
    assert stored == replace(record, version=1)
    seen = _put(store, replace(record, state=ONGOING, partitions=frozenset()))
    assert seen == stored
    assert store.read_transaction("tx") == replace(
        record, state=ONGOING, partitions=frozenset(), version=2)
    assert store.read_transaction("other") is None


def test_list_sorts_by_id_and_filters_by_state(store: SqlMetadataStore):
    for tid, state in (("b", ONGOING), ("a", PREPARE_COMMIT), ("c", ONGOING)):
        _put(store, _record(transactional_id=tid, state=state))
    assert [r.transactional_id for r in store.list_transactions()] == ["a", "b", "c"]
    assert [r.transactional_id for r in store.list_transactions([ONGOING])] == ["b", "c"]
    assert store.list_transactions([]) == []
    with pytest.raises(InvalidArgumentError):
        store.list_transactions(["Bogus"])


def test_a_step_that_raises_writes_nothing(store: SqlMetadataStore):
    def step(current, allocate):  # type: ignore[no-untyped-def]
        allocate()
        raise InvalidArgumentError("no")

    with pytest.raises(InvalidArgumentError):
        store.update_transaction("tx", step)
    assert store.read_transaction("tx") is None
    assert store.allocate_producer_id() == 1000  # the allocation rolled back too


def test_commit_offsets_are_written_with_the_record_and_create_missing_groups(
    store: SqlMetadataStore,
):
    store.update_group("g", lambda s: (GroupUpdate(group=GroupRecord("g", generation=5)), None))
    offsets = {"g": {A0: CommittedOffset(7, "m", 2, 99)}, "new": {B3: CommittedOffset(3)}}
    _put(store, _record(), **offsets)
    assert store.fetch_offsets("g") == offsets["g"]
    assert store.fetch_offsets("new") == offsets["new"]
    assert store.read_group("g").group.generation == 5  # type: ignore[union-attr]
    created = store.read_group("new").group
    assert created is not None and (created.generation, created.state_since_ms) == (0, 20)


def test_a_failed_write_commits_neither_record_nor_offsets(store: SqlMetadataStore):
    def step(current, _):  # type: ignore[no-untyped-def]
        # Both the row and the offsets are in the update; the row violates a constraint.
        return TxnUpdate(_record(producer_epoch=40_000), {"g": {A0: CommittedOffset(1)}}), None

    with pytest.raises(MetadataStoreError):
        store.update_transaction("tx", step)
    assert store.read_transaction("tx") is None and store.fetch_offsets("g") == {}


def test_producer_ids_start_at_1000_and_are_never_reused(store: SqlMetadataStore):
    first = store.allocate_producer_id()
    inside = store.update_transaction("tx", lambda _, allocate: (TxnUpdate(),
                                                                 [allocate(), allocate()]))
    assert [first, *inside, store.allocate_producer_id()] == [1000, 1001, 1002, 1003]


def test_concurrent_updates_of_one_id_serialize(store: SqlMetadataStore):
    _put(store, _record(timeout_ms=0))
    start = threading.Barrier(6)

    def bump() -> None:
        start.wait()
        for _ in range(10):
            store.update_transaction("tx", lambda r, _: (
                TxnUpdate(replace(r, timeout_ms=r.timeout_ms + 1)), None))

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    record = store.read_transaction("tx")
    assert record is not None and (record.timeout_ms, record.version) == (60, 61)


def test_postgresql_ids_do_not_block_each_other(postgresql_url: str):
    with SqlMetadataStore(postgresql_url) as store:
        inside, release = threading.Event(), threading.Event()

        def slow(current, _):  # type: ignore[no-untyped-def]
            inside.set()
            release.wait(timeout=30)
            return TxnUpdate(_record(transactional_id="slow")), None

        holder = threading.Thread(target=lambda: store.update_transaction("slow", slow))
        holder.start()
        try:
            assert inside.wait(timeout=30)
            _put(store, _record(transactional_id="fast"))  # not blocked by "slow"'s lock
            assert store.read_transaction("fast") is not None
        finally:
            release.set()
            holder.join(timeout=30)
        assert store.read_transaction("slow") is not None


@pytest.mark.parametrize("tid", ["", "x" * 256, None, 5])
def test_transactional_ids_must_be_1_to_255_characters(store: SqlMetadataStore, tid):
    with pytest.raises(InvalidArgumentError):
        store.update_transaction(tid, lambda r, _: (TxnUpdate(), None))
    with pytest.raises(InvalidArgumentError):
        store.read_transaction(tid)


def test_unreadable_rows_are_a_non_retriable_store_error(store: SqlMetadataStore, store_url):
    _put(store, _record())
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE transactions SET partitions = '[[\"a\"]]'"))
    finally:
        engine.dispose()
    with pytest.raises(MetadataStoreError) as info:
        store.read_transaction("tx")
    assert not info.value.retriable


def test_versions_go_past_32_bits(store: SqlMetadataStore, store_url):
    """A busy transactional id writes its record a few times per transaction: its version (the
    coordinator's marker claims) must not stop at 2**31 - 1 (PostgreSQL's INTEGER)."""
    def step(_snapshot):  # type: ignore[no-untyped-def]
        return GroupUpdate(group=GroupRecord("g", generation=1, state="Stable")), None

    _put(store, _record())
    store.update_group("g", step)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE transactions SET version = 2147483647"))
            conn.execute(text("UPDATE consumer_groups SET version = 2147483647"))
    finally:
        engine.dispose()
    _put(store, _record(state=ONGOING))
    store.update_group("g", step)
    assert store.read_transaction("tx").version == 2**31
    assert store.read_group("g").group.version == 2**31


# --- expiry: listing by age, and the compare-and-swap delete ----------------------------------


def test_list_filters_by_last_update(store: SqlMetadataStore):
    for tid, state, update_ms in (("a", EMPTY, 10), ("b", COMPLETE_COMMIT, 20),
                                  ("c", EMPTY, 30), ("d", ONGOING, 5)):
        _put(store, _record(transactional_id=tid, state=state, update_ms=update_ms))
    assert [r.transactional_id for r in store.list_transactions(updated_before_ms=30)] == [
        "a", "b", "d"]
    assert [r.transactional_id for r in store.list_transactions(
        [EMPTY, COMPLETE_COMMIT], updated_before_ms=21)] == ["a", "b"]
    assert store.list_transactions(updated_before_ms=5) == []
    with pytest.raises(InvalidArgumentError):
        store.list_transactions(updated_before_ms="30")  # type: ignore[arg-type]


def test_delete_removes_the_row_only_at_the_expected_version(store: SqlMetadataStore):
    _put(store, _record(state=EMPTY))
    read = store.read_transaction("tx")
    assert read is not None and read.version == 1
    _put(store, _record(state=EMPTY, update_ms=99))  # written since it was read: version 2
    with pytest.raises(StaleVersionError):
        store.delete_transaction("tx", expected_version=read.version)
    kept = store.read_transaction("tx")
    assert kept is not None and (kept.version, kept.update_ms) == (2, 99)

    assert store.delete_transaction("tx", expected_version=2) == kept
    assert store.read_transaction("tx") is None and store.list_transactions() == []
    with pytest.raises(TransactionalIdNotFoundError):
        store.delete_transaction("tx", expected_version=2)
    # The id can be created again, from scratch.
    assert _put(store, _record(state=EMPTY)) is None
    again = store.read_transaction("tx")
    assert again is not None and again.version == 1


@pytest.mark.parametrize(("tid", "version"), [("", 1), ("x" * 256, 1), ("tx", "1"),
                                              ("tx", True)])
def test_delete_refuses_bad_arguments(store: SqlMetadataStore, tid, version):
    _put(store, _record(state=EMPTY))
    with pytest.raises(InvalidArgumentError):
        store.delete_transaction(tid, expected_version=version)
    assert store.read_transaction("tx") is not None


def test_a_delete_racing_an_update_of_the_same_id_is_serialized(store: SqlMetadataStore):
    """The delete takes the id's lock: an update that read the row before the delete either
    commits first (and the delete then fails its compare-and-swap) or waits and finds no row,
    never a half of each."""
    _put(store, _record(state=EMPTY))
    inside, release = threading.Event(), threading.Event()
    seen: list[TransactionRecord | None] = []

    def slow(current, _):  # type: ignore[no-untyped-def]
        seen.append(current)
        inside.set()
        release.wait(timeout=30)
        return TxnUpdate(replace(current, update_ms=current.update_ms + 1)), None

    updater = threading.Thread(target=lambda: store.update_transaction("tx", slow))
    updater.start()
    outcome: list[object] = []
    try:
        assert inside.wait(timeout=30)
        deleter = threading.Thread(target=lambda: outcome.append(_delete_or_error(store)))
        deleter.start()
        deleter.join(timeout=0.5)
        assert deleter.is_alive(), "the delete must wait for the id's lock"
    finally:
        release.set()
        updater.join(timeout=30)
    deleter.join(timeout=30)
    assert isinstance(outcome[0], StaleVersionError)
    kept = store.read_transaction("tx")
    assert kept is not None and (kept.version, kept.update_ms) == (2, 21)


def _delete_or_error(store: SqlMetadataStore) -> object:
    try:
        return store.delete_transaction("tx", expected_version=1)
    except StaleVersionError as exc:
        return exc
