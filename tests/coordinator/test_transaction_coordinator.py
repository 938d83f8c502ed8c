"""The transaction coordinator on the real metadata store (SQLite and PostgreSQL), with a
recording fake ``write_markers``; time from a ManualClock."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from logstore.backends import sql_transactions
from logstore.backends.group_records import CommittedOffset
from logstore.backends.sql_metadata import SqlMetadataStore
from logstore.backends.txn_records import (
    BUMP_TIMEOUT,
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    EMPTY,
    MAX_PRODUCER_EPOCH,
    ONGOING,
    PREPARE_ABORT,
    PREPARE_COMMIT,
    ProducerIdAndEpoch,
    TxnUpdate,
)

from logstore.clock import ManualClock
from logstore.coordinator.group_coordinator import GroupCoordinator
from logstore.coordinator.group_state import JoinRequest
from logstore.coordinator.transaction_coordinator import TransactionCoordinator
from logstore.errors import (
    CommitFailedError,
    InvalidArgumentError,
    InvalidTxnStateError,
    MetadataStoreError,
    ProducerFencedError,
    StorageError,
    TransactionAbortedError,
    TransactionalIdNotFoundError,
)
from logstore.types import TopicPartition

A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
TIMEOUT = 60_000
Marker = tuple[tuple[TopicPartition, ...], int, int, bool]


class Markers:
    """A fake ``write_markers``: records every call; can fail, or hold callers at a barrier."""

    def __init__(self) -> None:
        self.calls: list[Marker] = []
        self.failures = 0
        self.barrier: threading.Barrier | None = None
        self._lock = threading.Lock()

    def __call__(self, partitions: list[TopicPartition], producer_id: int, epoch: int,
                 commit: bool, coordinator_epoch: int) -> None:
        assert isinstance(partitions, list)
        with self._lock:
            failing = self.failures > 0
            self.failures -= failing
        if failing:
            raise StorageError("disk unavailable", retriable=True)
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        with self._lock:
            self.calls.append((tuple(partitions), producer_id, epoch, commit))


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


@pytest.fixture
def markers() -> Markers:
    return Markers()


@pytest.fixture
def coordinator(store: SqlMetadataStore, clock: ManualClock,
                markers: Markers) -> TransactionCoordinator:
    return TransactionCoordinator(store, clock, markers)


def off(offset: int) -> CommittedOffset:
    return CommittedOffset(offset, "meta", 1, 123)


def begin(coordinator: TransactionCoordinator, tid: str = "tx") -> ProducerIdAndEpoch:
    who = coordinator.init_producer_id(tid, TIMEOUT)
    coordinator.add_partitions(tid, who.producer_id, who.epoch, [A0, B0])
    return who


def test_commit_writes_markers_with_the_bumped_epoch_then_commits_the_offsets(
    coordinator, store, markers
):
    who = begin(coordinator)
    coordinator.add_partitions("tx", who.producer_id, who.epoch, [A1])
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(5), A1: off(6)})
    assert coordinator.describe_transaction("tx").state == ONGOING
    assert store.fetch_offsets("g") == {} and store.read_group("g").group is None
    nxt = coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    assert nxt == ProducerIdAndEpoch(who.producer_id, who.epoch + 1)
    assert markers.calls == [((A0, A1, B0), who.producer_id, who.epoch + 1, True)]
    assert store.fetch_offsets("g") == {A0: off(5), A1: off(6)}
    assert store.read_group("g").group is not None  # created, as a simple commit does
    record = coordinator.describe_transaction("tx")
    assert (record.state, record.identity) == (COMPLETE_COMMIT, nxt)
    coordinator.add_partitions("tx", nxt.producer_id, nxt.epoch, [B0])
    with pytest.raises(ProducerFencedError):
        coordinator.add_partitions("tx", who.producer_id, who.epoch, [B0])


def test_abort_writes_abort_markers_and_drops_the_offsets(coordinator, store, markers):
    who = begin(coordinator)
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(5)})
    nxt = coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=False)
    assert markers.calls == [((A0, B0), who.producer_id, who.epoch + 1, False)]
    assert store.fetch_offsets("g") == {}
    assert coordinator.describe_transaction("tx").state == COMPLETE_ABORT
    assert coordinator.end_transaction("tx", nxt.producer_id, nxt.epoch, commit=False) == nxt
    with pytest.raises(InvalidTxnStateError):
        coordinator.end_transaction("tx", nxt.producer_id, nxt.epoch, commit=True)


def test_failed_markers_leave_the_commit_prepared_for_complete_pending(
    coordinator, store, markers
):
    who = begin(coordinator)
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(5)})
    markers.failures = 1
    with pytest.raises(StorageError):
        coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    assert coordinator.describe_transaction("tx").state == PREPARE_COMMIT
    assert store.fetch_offsets("g") == {} and markers.calls == []
    assert coordinator.abort_timed_out() == []  # prepared: not the timeout pass's business
    assert coordinator.complete_pending() == ["tx"]
    assert markers.calls == [((A0, B0), who.producer_id, who.epoch + 1, True)]
    assert store.fetch_offsets("g") == {A0: off(5)}
    assert coordinator.complete_pending() == []
    # The producer's retry of its commit gets the same answer and writes nothing more.
    nxt = coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    assert nxt == ProducerIdAndEpoch(who.producer_id, who.epoch + 1)
    assert len(markers.calls) == 1


def test_the_producer_retrying_its_commit_finishes_it(coordinator, store, markers):
    who = begin(coordinator)
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(5)})
    markers.failures = 1
    with pytest.raises(StorageError) as info:
        coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    assert info.value.retriable
    with pytest.raises(InvalidTxnStateError):  # the commit is decided
        coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=False)
    nxt = coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    assert nxt.epoch == who.epoch + 1 and store.fetch_offsets("g") == {A0: off(5)}


def test_offsets_and_completion_commit_atomically(coordinator, store, markers, monkeypatch):
    who = begin(coordinator)
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g1", {A0: off(5)})
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g2", {B0: off(9)})
    real = sql_transactions._commit_group_offsets

    def fail_on_g2(conn, group_id, offsets, now_ms):  # type: ignore[no-untyped-def]
        real(conn, group_id, offsets, now_ms)  # g1 is written first...
        if group_id == "g2":
            raise MetadataStoreError("connection lost", retriable=True)  # ...then this fails

    monkeypatch.setattr(sql_transactions, "_commit_group_offsets", fail_on_g2)
    with pytest.raises(MetadataStoreError):
        coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    assert len(markers.calls) == 1
    assert coordinator.describe_transaction("tx").state == PREPARE_COMMIT
    assert store.fetch_offsets("g1") == {} and store.fetch_offsets("g2") == {}
    monkeypatch.setattr(sql_transactions, "_commit_group_offsets", real)
    assert coordinator.complete_pending() == ["tx"]
    assert store.fetch_offsets("g1") == {A0: off(5)} and store.fetch_offsets("g2") == {B0: off(9)}
    assert coordinator.describe_transaction("tx").state == COMPLETE_COMMIT


def test_a_timed_out_transaction_is_aborted_and_its_producer_adopts_the_epoch(
    coordinator, store, markers, clock
):
    who = begin(coordinator)
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(5)})
    other = begin(coordinator, "other")
    clock.advance(TIMEOUT)
    coordinator.add_partitions("other", other.producer_id, other.epoch, [A1])
    assert coordinator.abort_timed_out() == []
    clock.advance(1)
    assert coordinator.abort_timed_out() == ["other", "tx"]
    assert sorted(markers.calls) == sorted([
        ((A0, B0), who.producer_id, who.epoch + 1, False),
        ((A0, A1, B0), other.producer_id, other.epoch + 1, False),
    ])
    record = coordinator.describe_transaction("tx")
    assert (record.state, record.last_bump) == (COMPLETE_ABORT, BUMP_TIMEOUT)
    assert store.fetch_offsets("g") == {}
    with pytest.raises(TransactionAbortedError):
        coordinator.add_partitions("tx", who.producer_id, who.epoch, [A1])
    with pytest.raises(TransactionAbortedError):
        coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(6)})
    with pytest.raises(TransactionAbortedError):
        coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    adopted = coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=False)
    assert adopted == ProducerIdAndEpoch(who.producer_id, who.epoch + 1)
    coordinator.add_partitions("tx", adopted.producer_id, adopted.epoch, [A1])
    coordinator.end_transaction("tx", adopted.producer_id, adopted.epoch, commit=True)
    assert markers.calls[-1] == ((A1,), who.producer_id, who.epoch + 2, True)
    assert coordinator.abort_timed_out() == []


def test_init_fences_the_previous_instance_and_aborts_what_it_left_open(
    coordinator, markers
):
    zombie = begin(coordinator)
    fresh = coordinator.init_producer_id("tx", TIMEOUT)
    assert fresh == ProducerIdAndEpoch(zombie.producer_id, zombie.epoch + 2)
    assert markers.calls == [((A0, B0), zombie.producer_id, zombie.epoch + 1, False)]
    for call in (
        lambda: coordinator.add_partitions("tx", zombie.producer_id, zombie.epoch, [A0]),
        lambda: coordinator.add_offsets("tx", zombie.producer_id, zombie.epoch, "g",
                                        {A0: off(1)}),
        lambda: coordinator.end_transaction("tx", zombie.producer_id, zombie.epoch, True),
        lambda: coordinator.end_transaction("tx", zombie.producer_id, zombie.epoch, False),
    ):
        with pytest.raises(ProducerFencedError):
            call()
    record = coordinator.describe_transaction("tx")
    assert (record.state, record.identity) == (EMPTY, fresh)


def test_init_finishes_a_prepared_commit_first(coordinator, store, markers):
    who = begin(coordinator)
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(5)})
    markers.failures = 1
    with pytest.raises(StorageError):
        coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    fresh = coordinator.init_producer_id("tx", TIMEOUT)
    assert markers.calls == [((A0, B0), who.producer_id, who.epoch + 1, True)]
    assert store.fetch_offsets("g") == {A0: off(5)}
    assert fresh == ProducerIdAndEpoch(who.producer_id, who.epoch + 2)


def test_epoch_overflow_hands_out_a_new_producer_id(coordinator, store, markers):
    who = coordinator.init_producer_id("tx", TIMEOUT)
    store.update_transaction("tx", lambda r, _: (
        TxnUpdate(replace(r, producer_epoch=MAX_PRODUCER_EPOCH - 1)), None))
    last = ProducerIdAndEpoch(who.producer_id, MAX_PRODUCER_EPOCH - 1)
    coordinator.add_partitions("tx", last.producer_id, last.epoch, [A0])
    nxt = coordinator.end_transaction("tx", last.producer_id, last.epoch, commit=True)
    assert markers.calls == [((A0,), who.producer_id, MAX_PRODUCER_EPOCH, True)]
    assert nxt.epoch == 0 and nxt.producer_id > who.producer_id
    assert coordinator.end_transaction("tx", last.producer_id, last.epoch, True) == nxt
    coordinator.add_partitions("tx", nxt.producer_id, nxt.epoch, [A0])
    assert store.allocate_producer_id() > nxt.producer_id


def test_offsets_from_a_stale_consumer_generation_are_refused(coordinator, store, clock):
    groups = GroupCoordinator(store, clock)
    view = groups.join_group("g", JoinRequest("", None, "c", "consumer",
                                              (("range", b""),), 10_000, 30_000))
    groups.sync_group("g", view.member_id, view.generation, {view.member_id: b""})
    who = coordinator.init_producer_id("tx", TIMEOUT)
    with pytest.raises(CommitFailedError):
        coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(1)},
                                member_id=view.member_id, generation=view.generation - 1)
    assert coordinator.describe_transaction("tx").state == EMPTY
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(1)},
                            member_id=view.member_id, generation=view.generation)
    coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    assert store.fetch_offsets("g") == {A0: off(1)}


def test_racing_finishers_complete_a_prepared_transaction_once(coordinator, store, markers):
    who = begin(coordinator)
    coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: off(5)})
    markers.failures = 1
    with pytest.raises(StorageError):
        coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    # Both finishers are inside write_markers before either completes.
    markers.barrier = threading.Barrier(2)
    results = _race(coordinator.complete_pending, coordinator.complete_pending)
    assert sorted(results) == [[], ["tx"]]
    assert markers.calls == [((A0, B0), who.producer_id, who.epoch + 1, True)] * 2
    record = coordinator.describe_transaction("tx")
    assert (record.state, record.producer_epoch, record.version) == (
        COMPLETE_COMMIT, who.epoch + 1, 7)  # init, 2 adds, prepare, 2 claims, one completion
    assert store.fetch_offsets("g") == {A0: off(5)}


def test_complete_pending_skips_what_was_completed_since_it_listed(
    coordinator, store, markers, monkeypatch
):
    who = begin(coordinator)
    markers.failures = 1
    with pytest.raises(StorageError):
        coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)
    listed = store.list_transactions()
    assert coordinator.complete_pending() == ["tx"] and len(markers.calls) == 1
    monkeypatch.setattr(store, "list_transactions", lambda states=None: listed)
    assert coordinator.complete_pending() == []
    assert len(markers.calls) == 1  # no markers for a transaction that is already complete


def test_racing_timeout_passes_abort_once(coordinator, store, markers, clock):
    who = begin(coordinator)
    clock.advance(TIMEOUT + 1)
    results = _race(coordinator.abort_timed_out, coordinator.abort_timed_out,
                    coordinator.complete_pending)
    assert sorted(results[:2]) == [[], ["tx"]]
    assert set(markers.calls) == {((A0, B0), who.producer_id, who.epoch + 1, False)}
    record = coordinator.describe_transaction("tx")
    assert (record.state, record.producer_epoch) == (COMPLETE_ABORT, who.epoch + 1)
    adopted = coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=False)
    assert adopted.epoch == who.epoch + 1


def _race(*calls: Callable[[], list[str]]) -> list[list[str]]:
    start = threading.Barrier(len(calls))
    results: list[list[str]] = [[] for _ in calls]
    errors: list[Exception] = []

    def run(i: int) -> None:
        start.wait(timeout=10)
        try:
            results[i] = calls[i]()
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


def test_producer_ids_are_unique_across_threads(coordinator):
    got: list[int] = []
    lock = threading.Lock()

    def allocate(n: int) -> None:
        for i in range(20):
            if i % 4 == 0:
                identity = coordinator.init_producer_id(f"t{n}-{i}", TIMEOUT)
            else:
                identity = coordinator.init_producer_id(None, TIMEOUT)
            with lock:
                got.append(identity.producer_id)

    threads = [threading.Thread(target=allocate, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(got) == 160 and len(set(got)) == 160 and min(got) >= 1000


def test_producer_ids_are_unique_across_processes(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    SqlMetadataStore(url).close()  # migrate once, so the workers race on allocation only
    script = (
        "import json, sys\n"
        "from logstore.backends.sql_metadata import SqlMetadataStore\n"
        "with SqlMetadataStore(sys.argv[1]) as store:\n"
        "    print(json.dumps([store.allocate_producer_id() for _ in range(100)]))\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, url], cwd=tmp_path,
                                stdout=subprocess.PIPE, text=True) for _ in range(3)]
    got = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        got.extend(json.loads(out))
    assert len(got) == 300 and len(set(got)) == 300
    assert sorted(got) == list(range(1000, 1300))


def test_admin_list_describe_and_force_abort(coordinator, markers):
    with pytest.raises(TransactionalIdNotFoundError):
        coordinator.describe_transaction("tx")
    with pytest.raises(TransactionalIdNotFoundError):
        coordinator.force_abort("tx")
    who = begin(coordinator)
    coordinator.init_producer_id("idle", TIMEOUT)
    assert [(r.transactional_id, r.state) for r in coordinator.list_transactions()] == [
        ("idle", EMPTY), ("tx", ONGOING)]
    record = coordinator.force_abort("tx")
    assert (record.state, record.last_bump) == (COMPLETE_ABORT, BUMP_TIMEOUT)
    assert markers.calls == [((A0, B0), who.producer_id, who.epoch + 1, False)]
    assert coordinator.force_abort("tx") == record  # completed: left alone
    assert coordinator.force_abort("idle").state == EMPTY
    with pytest.raises(TransactionAbortedError):
        coordinator.end_transaction("tx", who.producer_id, who.epoch, commit=True)


def test_bad_arguments_are_refused(coordinator):
    for tid, timeout in (("", TIMEOUT), ("x" * 256, TIMEOUT), ("tx", 0), ("tx", 900_001)):
        with pytest.raises(InvalidArgumentError):
            coordinator.init_producer_id(tid, timeout)
    who = coordinator.init_producer_id("tx", 900_000)
    with pytest.raises(InvalidArgumentError):
        coordinator.add_partitions("tx", who.producer_id, who.epoch, [("a", 0)])
    with pytest.raises(InvalidArgumentError):
        coordinator.add_offsets("tx", who.producer_id, who.epoch, "g", {A0: 3})
    with pytest.raises(TransactionalIdNotFoundError):
        coordinator.add_partitions("nope", who.producer_id, who.epoch, [A0])
    assert coordinator.describe_transaction("tx").state == EMPTY


def test_a_failing_marker_write_does_not_stop_other_timeouts(coordinator, markers, clock):
    begin(coordinator, "t1")
    begin(coordinator, "t2")
    clock.advance(TIMEOUT + 1)
    markers.failures = 1
    with pytest.raises(StorageError):
        coordinator.abort_timed_out()
    states = {r.transactional_id: r.state for r in coordinator.list_transactions()}
    assert sorted(states.values()) == [COMPLETE_ABORT, PREPARE_ABORT]
    assert coordinator.complete_pending() == [t for t, s in states.items() if s == PREPARE_ABORT]
    assert {r.state for r in coordinator.list_transactions()} == {COMPLETE_ABORT}
