"""Named leases and cleaner checkpoints of the metadata store, run against every backend
(SQLite and, when LOGSTORE_TEST_POSTGRES_URL is set, PostgreSQL): acquisition, renewal, release,
expiry and takeover, epoch fencing of checkpoint writes, checkpoints' lifetime with their topic,
input validation, and acquisition races between threads and between processes.

Times are explicit ``now_ms`` values; nothing sleeps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from logstore.backends import migrate, sql_metadata
from logstore.backends.cleaner_records import CleanerCheckpoint, Lease
from logstore.backends.metadata import MetadataStore
from logstore.backends.sql_metadata import SqlMetadataStore
from sqlalchemy import create_engine, inspect, text

from logstore.errors import (
    InvalidArgumentError,
    LeaseLostError,
    StaleVersionError,
    UnknownTopicOrPartitionError,
)

T0 = 1_700_000_000_000
TTL = 10_000
NAME = "compactor/t/0"




def _acquire(store: SqlMetadataStore, holder: str, now_ms: int, name: str = NAME) -> Lease:
    lease = store.acquire_lease(name, holder, now_ms=now_ms, duration_ms=TTL)
    assert lease is not None
    return lease


# --- the interface -----------------------------------------------------------------------------


def test_store_still_implements_the_protocol(store: SqlMetadataStore) -> None:
    assert isinstance(store, MetadataStore)


def test_lease_error_is_a_non_retriable_stale_version_error() -> None:
    assert issubclass(LeaseLostError, StaleVersionError)
    assert LeaseLostError().retriable is False


# --- acquire -----------------------------------------------------------------------------------


def test_first_acquisition_gets_epoch_1(store: SqlMetadataStore) -> None:
    lease = store.acquire_lease(NAME, "a", now_ms=T0, duration_ms=TTL)

    assert lease == Lease(NAME, "a", epoch=1, acquired_ms=T0, expires_ms=T0 + TTL)
    assert store.read_lease(NAME) == lease
    assert store.read_lease("compactor/t/1") is None


def test_another_holder_is_refused_until_the_lease_expires(store: SqlMetadataStore) -> None:
    held = _acquire(store, "a", T0)

    assert store.acquire_lease(NAME, "b", now_ms=T0 + 1, duration_ms=TTL) is None
    assert store.acquire_lease(NAME, "b", now_ms=T0 + TTL - 1, duration_ms=TTL) is None
    assert store.read_lease(NAME) == held

    taken = store.acquire_lease(NAME, "b", now_ms=T0 + TTL, duration_ms=TTL)  # expires_ms <= now

    assert taken == Lease(NAME, "b", epoch=2, acquired_ms=T0 + TTL, expires_ms=T0 + 2 * TTL)
    assert store.read_lease(NAME) == taken


def test_reacquiring_a_live_lease_keeps_its_epoch_and_extends_it(store: SqlMetadataStore) -> None:
    held = _acquire(store, "a", T0)

    again = store.acquire_lease(NAME, "a", now_ms=T0 + 5, duration_ms=2 * TTL)

    assert again == Lease(NAME, "a", epoch=1, acquired_ms=T0, expires_ms=T0 + 5 + 2 * TTL)
    store.set_cleaner_checkpoint(_topic_id(store), 0, 1, updated_ms=T0, lease=held)  # not fenced


def test_reacquiring_an_expired_lease_starts_a_new_epoch(store: SqlMetadataStore) -> None:
    old = _acquire(store, "a", T0)

    new = _acquire(store, "a", T0 + TTL)

    assert (new.epoch, new.acquired_ms) == (2, T0 + TTL)
    with pytest.raises(LeaseLostError):
        store.renew_lease(old, now_ms=T0 + TTL + 1, duration_ms=TTL)
    assert store.read_lease(NAME) == new


def test_epochs_grow_with_every_acquisition_and_never_go_back(store: SqlMetadataStore) -> None:
    epochs = []
    now = T0
    for round_ in range(6):
        holder = "ab"[round_ % 2]
        lease = _acquire(store, holder, now)
        epochs.append(lease.epoch)
        lease = store.renew_lease(lease, now_ms=now + 1, duration_ms=TTL)  # renewals keep it
        epochs.append(lease.epoch)
        if round_ % 3 == 0:
            store.release_lease(lease)
            now += 1
        else:
            now = lease.expires_ms  # let it expire

    assert epochs == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]


def test_leases_of_different_names_are_independent(store: SqlMetadataStore) -> None:
    first = _acquire(store, "a", T0, name="x")
    second = _acquire(store, "b", T0, name="y")

    assert (first.epoch, second.epoch) == (1, 1)
    assert store.acquire_lease("x", "b", now_ms=T0, duration_ms=TTL) is None


# --- renew -------------------------------------------------------------------------------------


def test_renewal_extends_the_lease_and_keeps_epoch_and_start(store: SqlMetadataStore) -> None:
    held = _acquire(store, "a", T0)

    renewed = store.renew_lease(held, now_ms=T0 + 7, duration_ms=3 * TTL)

    assert renewed == Lease(NAME, "a", epoch=1, acquired_ms=T0, expires_ms=T0 + 7 + 3 * TTL)
    assert store.read_lease(NAME) == renewed
    assert store.acquire_lease(NAME, "b", now_ms=T0 + TTL, duration_ms=TTL) is None


def test_an_expired_lease_nobody_took_can_still_be_renewed(store: SqlMetadataStore) -> None:
    held = _acquire(store, "a", T0)

    renewed = store.renew_lease(held, now_ms=T0 + 5 * TTL, duration_ms=TTL)

    assert (renewed.epoch, renewed.expires_ms) == (1, T0 + 6 * TTL)


def test_renewal_after_a_takeover_raises_lease_lost(store: SqlMetadataStore) -> None:
    old = _acquire(store, "a", T0)
    new = _acquire(store, "b", T0 + TTL)

    with pytest.raises(LeaseLostError, match="held by 'b' at epoch 2") as caught:
        store.renew_lease(old, now_ms=T0 + TTL + 1, duration_ms=TTL)

    assert caught.value.retriable is False
    assert store.read_lease(NAME) == new


def test_renewal_of_a_released_or_unknown_lease_raises_lease_lost(
    store: SqlMetadataStore,
) -> None:
    held = _acquire(store, "a", T0)
    store.release_lease(held)

    with pytest.raises(LeaseLostError, match="released"):
        store.renew_lease(held, now_ms=T0 + 1, duration_ms=TTL)
    with pytest.raises(LeaseLostError, match="does not exist"):
        store.renew_lease(Lease("never", "a", 1, T0, T0 + TTL), now_ms=T0, duration_ms=TTL)
    assert store.read_lease(NAME) is None


# --- release -----------------------------------------------------------------------------------


def test_release_frees_the_lease_at_once_and_is_idempotent(store: SqlMetadataStore) -> None:
    held = _acquire(store, "a", T0)

    store.release_lease(held)
    store.release_lease(held)

    assert store.read_lease(NAME) is None
    assert store.list_leases() == []
    taken = _acquire(store, "b", T0 + 1)  # long before the released lease would have expired
    assert (taken.holder, taken.epoch) == ("b", 2)


def test_releasing_a_lost_lease_leaves_the_new_holder_alone(store: SqlMetadataStore) -> None:
    old = _acquire(store, "a", T0)
    new = _acquire(store, "b", T0 + TTL)

    store.release_lease(old)

    assert store.read_lease(NAME) == new


def test_the_same_holder_reacquiring_after_release_gets_a_new_epoch(
    store: SqlMetadataStore,
) -> None:
    first = _acquire(store, "a", T0)
    store.release_lease(first)

    second = _acquire(store, "a", T0 + 1)

    assert second.epoch == 2
    with pytest.raises(LeaseLostError):
        store.set_cleaner_checkpoint(_topic_id(store), 0, 5, updated_ms=T0, lease=first)


# --- list --------------------------------------------------------------------------------------


def test_list_returns_held_leases_by_name_and_filters_by_exact_prefix(
    store: SqlMetadataStore,
) -> None:
    for name in ("compactor/b/0", "leader/a/0", "compactor/a/1", "compactor/a/0", "Compactor/z",
                 "compactor%x", "compactor_y"):
        _acquire(store, "h", T0, name=name)
    store.release_lease(store.read_lease("compactor/a/1"))  # type: ignore[arg-type]
    _acquire(store, "h", T0 - TTL, name="compactor/c/0")  # held, though expired at T0

    assert [lease.name for lease in store.list_leases("compactor/")] == [
        "compactor/a/0", "compactor/b/0", "compactor/c/0"
    ]
    assert [lease.name for lease in store.list_leases("compactor%")] == ["compactor%x"]
    assert [lease.name for lease in store.list_leases("compactor_")] == ["compactor_y"]
    assert [lease.name for lease in store.list_leases()] == [
        "Compactor/z", "compactor%x", "compactor/a/0", "compactor/b/0", "compactor/c/0",
        "compactor_y", "leader/a/0",
    ]
    assert store.list_leases("nothing") == []


# --- cleaner checkpoints -----------------------------------------------------------------------


def _topic_id(store: SqlMetadataStore, name: str = "t", partitions: int = 3) -> str:
    existing = store.get_topic(name)
    if existing is not None:
        return existing.topic_id
    return store.create_topic(name, partitions, {}, created_ms=T0).topic_id


def test_checkpoints_are_upserted_per_partition(store: SqlMetadataStore) -> None:
    topic_id = _topic_id(store)
    other = _topic_id(store, "other")
    assert store.cleaner_checkpoints(topic_id) == {}

    first = store.set_cleaner_checkpoint(topic_id, 2, 100, updated_ms=T0)
    store.set_cleaner_checkpoint(topic_id, 0, 7, updated_ms=T0 + 1)
    store.set_cleaner_checkpoint(other, 0, 1, updated_ms=T0)
    moved = store.set_cleaner_checkpoint(topic_id, 2, 250, updated_ms=T0 + 2)

    assert first == CleanerCheckpoint(topic_id, 2, 100, T0)
    assert moved == CleanerCheckpoint(topic_id, 2, 250, T0 + 2)
    checkpoints = store.cleaner_checkpoints(topic_id)
    assert checkpoints == {0: CleanerCheckpoint(topic_id, 0, 7, T0 + 1), 2: moved}
    assert list(checkpoints) == [0, 2]
    assert store.cleaner_checkpoints(other) == {0: CleanerCheckpoint(other, 0, 1, T0)}
    assert store.cleaner_checkpoints("no-such-topic-id") == {}


def test_a_checkpoint_may_move_backwards(store: SqlMetadataStore) -> None:
    topic_id = _topic_id(store)
    store.set_cleaner_checkpoint(topic_id, 0, 100, updated_ms=T0)

    store.set_cleaner_checkpoint(topic_id, 0, 0, updated_ms=T0 + 1)

    assert store.cleaner_checkpoints(topic_id)[0].offset == 0


def test_a_checkpoint_records_the_earliest_delete_horizon(store: SqlMetadataStore) -> None:
    topic_id = _topic_id(store)
    lease = _acquire(store, "me", T0)

    written = store.set_cleaner_checkpoint(topic_id, 0, 40, updated_ms=T0, lease=lease,
                                           delete_horizon_ms=T0 + 86_400_000)
    store.set_cleaner_checkpoint(topic_id, 1, 7, updated_ms=T0)

    assert written == CleanerCheckpoint(topic_id, 0, 40, T0, T0 + 86_400_000)
    assert store.cleaner_checkpoints(topic_id) == {
        0: written, 1: CleanerCheckpoint(topic_id, 1, 7, T0, None)}
    assert not written.delete_horizon_passed(T0 + 86_399_999)
    assert written.delete_horizon_passed(T0 + 86_400_000)
    assert not store.cleaner_checkpoints(topic_id)[1].delete_horizon_passed(1 << 62)
    # The next cleaning replaces it, with None when it left no tombstone or marker behind.
    store.set_cleaner_checkpoint(topic_id, 0, 50, updated_ms=T0 + 1, delete_horizon_ms=None)
    assert store.cleaner_checkpoints(topic_id)[0] == CleanerCheckpoint(topic_id, 0, 50, T0 + 1)


@pytest.mark.parametrize("horizon", ["1", 1.5, True, 1 << 63])
def test_an_invalid_delete_horizon_is_refused(store: SqlMetadataStore, horizon: Any) -> None:
    topic_id = _topic_id(store)

    with pytest.raises(InvalidArgumentError, match="delete_horizon_ms"):
        store.set_cleaner_checkpoint(topic_id, 0, 1, updated_ms=T0, delete_horizon_ms=horizon)
    assert store.cleaner_checkpoints(topic_id) == {}


def test_a_checkpoint_needs_an_existing_topic_and_partition(store: SqlMetadataStore) -> None:
    topic_id = _topic_id(store, partitions=2)

    with pytest.raises(UnknownTopicOrPartitionError):
        store.set_cleaner_checkpoint(topic_id, 2, 0, updated_ms=T0)
    with pytest.raises(UnknownTopicOrPartitionError):
        store.set_cleaner_checkpoint("00000000-0000-4000-8000-000000000000", 0, 0, updated_ms=T0)
    assert store.cleaner_checkpoints(topic_id) == {}


def test_deleting_a_topic_deletes_its_checkpoints(store: SqlMetadataStore) -> None:
    old_id = _topic_id(store)
    kept = _topic_id(store, "kept")
    store.set_cleaner_checkpoint(old_id, 0, 10, updated_ms=T0)
    store.set_cleaner_checkpoint(old_id, 1, 20, updated_ms=T0)
    store.set_cleaner_checkpoint(kept, 0, 30, updated_ms=T0)
    counter = store.change_counter()

    store.delete_topic("t")

    assert store.cleaner_checkpoints(old_id) == {}
    assert store.cleaner_checkpoints(kept) == {0: CleanerCheckpoint(kept, 0, 30, T0)}
    assert store.change_counter() == counter + 1
    with pytest.raises(UnknownTopicOrPartitionError):  # no checkpoint outlives its topic
        store.set_cleaner_checkpoint(old_id, 0, 11, updated_ms=T0)
    assert store.cleaner_checkpoints(old_id) == {}

    recreated = store.create_topic("t", 3, {}, created_ms=T0 + 1)
    assert recreated.topic_id != old_id
    assert store.cleaner_checkpoints(recreated.topic_id) == {}


def test_a_failed_delete_keeps_the_checkpoints(store: SqlMetadataStore) -> None:
    topic_id = _topic_id(store)
    store.set_cleaner_checkpoint(topic_id, 0, 10, updated_ms=T0)

    with pytest.raises(StaleVersionError):
        store.delete_topic("t", expected_version=99)

    assert store.cleaner_checkpoints(topic_id) == {0: CleanerCheckpoint(topic_id, 0, 10, T0)}


# --- fencing -----------------------------------------------------------------------------------


def test_a_fenced_write_succeeds_while_the_lease_is_current(store: SqlMetadataStore) -> None:
    topic_id = _topic_id(store)
    lease = _acquire(store, "a", T0)

    store.set_cleaner_checkpoint(topic_id, 0, 10, updated_ms=T0, lease=lease)
    # Expired but not taken over: the epoch, not the clock, fences.
    store.set_cleaner_checkpoint(topic_id, 0, 20, updated_ms=T0 + 2 * TTL, lease=lease)

    assert store.cleaner_checkpoints(topic_id)[0].offset == 20


def test_a_fenced_write_with_a_stale_lease_is_refused_and_writes_nothing(
    store: SqlMetadataStore,
) -> None:
    topic_id = _topic_id(store)
    old = _acquire(store, "a", T0)
    store.set_cleaner_checkpoint(topic_id, 0, 10, updated_ms=T0, lease=old)
    new = _acquire(store, "b", T0 + TTL)

    with pytest.raises(LeaseLostError, match="held by 'b' at epoch 2"):
        store.set_cleaner_checkpoint(topic_id, 0, 99, updated_ms=T0 + TTL, lease=old)
    with pytest.raises(LeaseLostError):  # an insert is refused too, not only an update
        store.set_cleaner_checkpoint(topic_id, 1, 99, updated_ms=T0 + TTL, lease=old)

    assert store.cleaner_checkpoints(topic_id) == {0: CleanerCheckpoint(topic_id, 0, 10, T0)}
    store.set_cleaner_checkpoint(topic_id, 0, 50, updated_ms=T0 + TTL, lease=new)
    assert store.cleaner_checkpoints(topic_id)[0].offset == 50


def test_a_lease_with_the_right_epoch_but_another_holder_is_refused(
    store: SqlMetadataStore,
) -> None:
    topic_id = _topic_id(store)
    lease = _acquire(store, "a", T0)
    forged = Lease(lease.name, "b", lease.epoch, lease.acquired_ms, lease.expires_ms)

    with pytest.raises(LeaseLostError):
        store.set_cleaner_checkpoint(topic_id, 0, 1, updated_ms=T0, lease=forged)
    with pytest.raises(LeaseLostError):
        store.renew_lease(forged, now_ms=T0, duration_ms=TTL)
    store.release_lease(forged)

    assert store.read_lease(NAME) == lease
    assert store.cleaner_checkpoints(topic_id) == {}


# --- validation --------------------------------------------------------------------------------

_LONG = "x" * 256


@pytest.mark.parametrize(
    ("name", "holder", "now_ms", "duration_ms"),
    [
        ("", "a", T0, TTL),
        (_LONG, "a", T0, TTL),
        (None, "a", T0, TTL),
        (NAME, "", T0, TTL),
        (NAME, _LONG, T0, TTL),
        (NAME, 7, T0, TTL),
        (NAME, "a", -1, TTL),
        (NAME, "a", 1.5, TTL),
        (NAME, "a", True, TTL),
        (NAME, "a", T0, 0),
        (NAME, "a", T0, -5),
        (NAME, "a", (1 << 63) - 1, 1),  # the expiry would not fit a BIGINT
    ],
)
def test_invalid_acquisitions_raise_invalid_argument(
    store: SqlMetadataStore, name: Any, holder: Any, now_ms: Any, duration_ms: Any
) -> None:
    with pytest.raises(InvalidArgumentError):
        store.acquire_lease(name, holder, now_ms=now_ms, duration_ms=duration_ms)
    assert store.list_leases() == []


def test_longest_names_and_holders_are_accepted(store: SqlMetadataStore) -> None:
    lease = _acquire(store, "h" * 255, T0, name="n" * 255)

    assert store.read_lease("n" * 255) == lease


def test_invalid_lease_calls_raise_invalid_argument(store: SqlMetadataStore) -> None:
    lease = _acquire(store, "a", T0)
    bad_epoch = Lease(NAME, "a", 0, T0, T0 + TTL)
    topic_id = _topic_id(store)

    with pytest.raises(InvalidArgumentError):
        store.renew_lease(lease, now_ms=T0, duration_ms=0)
    with pytest.raises(InvalidArgumentError):
        store.renew_lease(bad_epoch, now_ms=T0, duration_ms=TTL)
    with pytest.raises(InvalidArgumentError):
        store.renew_lease("lease", now_ms=T0, duration_ms=TTL)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.release_lease(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.read_lease("")
    with pytest.raises(InvalidArgumentError):
        store.list_leases(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.set_cleaner_checkpoint(
            topic_id, 0, 1, updated_ms=T0, lease="x"  # type: ignore[arg-type]
        )
    assert store.read_lease(NAME) == lease


@pytest.mark.parametrize(
    ("topic_id", "partition", "offset", "updated_ms"),
    [
        ("", 0, 0, T0),
        ("x" * 37, 0, 0, T0),
        (None, 0, 0, T0),
        ("topic", -1, 0, T0),
        ("topic", 1 << 31, 0, T0),
        ("topic", False, 0, T0),
        ("topic", 0, -1, T0),
        ("topic", 0, 1 << 63, T0),
        ("topic", 0, "5", T0),
        ("topic", 0, 0, -1),
    ],
)
def test_invalid_checkpoints_raise_invalid_argument(
    store: SqlMetadataStore, topic_id: Any, partition: Any, offset: Any, updated_ms: Any
) -> None:
    real_id = _topic_id(store)
    if topic_id == "topic":
        topic_id = real_id

    with pytest.raises(InvalidArgumentError):
        store.set_cleaner_checkpoint(topic_id, partition, offset, updated_ms=updated_ms)
    assert store.cleaner_checkpoints(real_id) == {}


def test_reading_checkpoints_of_an_invalid_topic_id_raises(store: SqlMetadataStore) -> None:
    with pytest.raises(InvalidArgumentError):
        store.cleaner_checkpoints("")


def test_a_closed_store_refuses_lease_calls(store_url: str) -> None:
    from logstore.errors import IllegalStateError

    closed = SqlMetadataStore(store_url)
    closed.close()

    with pytest.raises(IllegalStateError):
        closed.acquire_lease(NAME, "a", now_ms=T0, duration_ms=TTL)


# --- races -------------------------------------------------------------------------------------


def test_threads_racing_for_a_new_lease_leave_exactly_one_winner(
    race, store: SqlMetadataStore
) -> None:
    for round_ in range(5):
        name = f"race/{round_}"
        results = race(8, lambda i, name=name: store.acquire_lease(
            name, f"h{i}", now_ms=T0, duration_ms=TTL))

        assert not [r for r in results if isinstance(r, BaseException)], results
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, results
        assert winners[0].epoch == 1  # type: ignore[union-attr]
        assert store.read_lease(name) == winners[0]


def test_threads_racing_to_take_over_an_expired_lease_leave_one_winner(
    race,
    store: SqlMetadataStore,
) -> None:
    _acquire(store, "old", T0)
    for round_ in range(1, 6):
        now = T0 + round_ * TTL  # the previous round's winner has just expired
        results = race(8, lambda i, round_=round_, now=now: store.acquire_lease(
            NAME, f"h{round_}.{i}", now_ms=now, duration_ms=TTL))

        assert not [r for r in results if isinstance(r, BaseException)], results
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, results
        assert winners[0].epoch == round_ + 1  # type: ignore[union-attr]
        assert store.read_lease(NAME) == winners[0]


def test_stores_of_separate_processes_race_for_a_lease(store_url: str, tmp_path: Path) -> None:
    SqlMetadataStore(store_url).close()  # migrated once, up front
    child = (
        "import json, sys\n"
        "from logstore.backends.sql_metadata import SqlMetadataStore\n"
        "store = SqlMetadataStore(sys.argv[1])\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        f"lease = store.acquire_lease('proc', sys.argv[2], now_ms={T0}, duration_ms={TTL})\n"
        "print(json.dumps(None if lease is None else [lease.holder, lease.epoch]), flush=True)\n"
        "store.close()\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", child, store_url, f"p{i}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path,
        )
        for i in range(4)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        answers = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert [p.returncode for p in processes] == [0, 0, 0, 0]
    winners = [answer for answer in answers if answer is not None]
    assert len(winners) == 1 and winners[0][1] == 1, answers
    with SqlMetadataStore(store_url) as store:
        held = store.read_lease("proc")
    assert held is not None and [held.holder, held.epoch] == winners[0]


# --- the migration -----------------------------------------------------------------------------


def test_the_migration_downgrades_to_the_previous_revision(store_url: str) -> None:
    from alembic import command

    migrate.upgrade(store_url)
    engine = sql_metadata.create_metadata_engine(store_url)
    try:
        with migrate._process_lock, sql_metadata.begin_write(engine) as conn:
            command.downgrade(migrate._alembic_config(conn), "0003")
        assert migrate.current_revision(engine) == "0003"
        tables = set(inspect(engine).get_table_names())
        assert "topics" in tables and not {"leases", "cleaner_checkpoints"} & tables
    finally:
        engine.dispose()

    assert migrate.upgrade(store_url).changed
    with SqlMetadataStore(store_url) as store:
        assert store.acquire_lease(NAME, "a", now_ms=T0, duration_ms=TTL) is not None


def test_the_migration_creates_named_constraints(store_url: str) -> None:
    migrate.upgrade(store_url)
    engine = create_engine(store_url)
    try:
        inspector = inspect(engine)
        assert inspector.get_pk_constraint("leases")["constrained_columns"] == ["name"]
        assert inspector.get_pk_constraint("cleaner_checkpoints")["constrained_columns"] == [
            "topic_id", "partition"
        ]
        checks = {
            check["name"]
            for table in ("leases", "cleaner_checkpoints")
            for check in inspector.get_check_constraints(table)
        }
    finally:
        engine.dispose()

    assert checks == {
        "ck_leases_epoch_positive",
        "ck_leases_version_positive",
        "ck_cleaner_checkpoints_partition_non_negative",
        "ck_cleaner_checkpoints_offset_non_negative",
    }


def _columns(engine: Any, table: str) -> list[str]:
    return [column["name"] for column in inspect(engine).get_columns(table)]


def test_migration_0006_keeps_existing_checkpoints_and_downgrades(store_url: str) -> None:
    from alembic import command

    topic_id = "00000000-0000-4000-8000-000000000001"
    engine = sql_metadata.create_metadata_engine(store_url)
    try:
        with migrate._process_lock, sql_metadata.begin_write(engine) as conn:
            command.upgrade(migrate._alembic_config(conn), "0005")
            conn.execute(text(
                "INSERT INTO topics (name, topic_id, partition_count, configs, version, "
                "created_ms) VALUES ('t', :id, 2, '{}', 1, :now)"), {"id": topic_id, "now": T0})
            conn.execute(text(
                "INSERT INTO cleaner_checkpoints (topic_id, partition, checkpoint_offset, "
                "updated_ms) VALUES (:id, 1, 42, :now)"), {"id": topic_id, "now": T0})
        assert "delete_horizon_ms" not in _columns(engine, "cleaner_checkpoints")

        assert migrate.upgrade(store_url) == migrate.UpgradeResult("0005", migrate.HEAD_REVISION)
        assert "delete_horizon_ms" in _columns(engine, "cleaner_checkpoints")
        assert "ix_transactions_update_ms" in {
            index["name"] for index in inspect(engine).get_indexes("transactions")}
        with SqlMetadataStore(store_url) as store:
            assert store.cleaner_checkpoints(topic_id) == {
                1: CleanerCheckpoint(topic_id, 1, 42, T0, None)}
            store.set_cleaner_checkpoint(topic_id, 1, 43, updated_ms=T0, delete_horizon_ms=T0)

        with migrate._process_lock, sql_metadata.begin_write(engine) as conn:
            command.downgrade(migrate._alembic_config(conn), "0005")
        assert migrate.current_revision(engine) == "0005"
        assert "delete_horizon_ms" not in _columns(engine, "cleaner_checkpoints")
        assert "ix_transactions_update_ms" not in {
            index["name"] for index in inspect(engine).get_indexes("transactions")}
        checks = {check["name"] for check in
                  inspect(engine).get_check_constraints("cleaner_checkpoints")}
        assert checks == {"ck_cleaner_checkpoints_partition_non_negative",
                          "ck_cleaner_checkpoints_offset_non_negative"}
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT topic_id, partition, checkpoint_offset FROM cleaner_checkpoints")).all()
        assert [tuple(row) for row in rows] == [(topic_id, 1, 43)]
    finally:
        engine.dispose()
