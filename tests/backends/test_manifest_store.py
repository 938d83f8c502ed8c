"""The tiered-segment manifest of the metadata store, run against every backend (SQLite and,
when LOGSTORE_TEST_POSTGRES_URL is set, PostgreSQL): the copy/delete lifecycle, the
no-overlapping-live-segments invariant (at begin, at finish, under thread races), version
compare-and-swap, lease fencing, the manifest's lifetime with its topic, listing, input
validation and the migration.

Times are explicit milliseconds; nothing sleeps.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from logstore.backends import migrate, sql_metadata
from logstore.backends.manifest_records import (
    COPY_FINISHED,
    COPY_STARTED,
    DELETE_STARTED,
    RemoteSegment,
    RemoteSegmentState,
)
from logstore.backends.metadata import MetadataStore
from logstore.backends.sql_metadata import SqlMetadataStore
from sqlalchemy import create_engine, inspect

from logstore.errors import (
    IllegalStateError,
    InvalidArgumentError,
    LeaseLostError,
    StaleVersionError,
    UnknownTopicOrPartitionError,
)

T0 = 1_700_000_000_000
TTL = 10_000
Make = Callable[..., RemoteSegment]


@pytest.fixture
def topic_id(store: SqlMetadataStore) -> str:
    """The id of topic "t" with 3 partitions."""
    return store.create_topic("t", 3, {}, created_ms=T0).topic_id


@pytest.fixture
def make(topic_id: str) -> Make:
    """``make(base, next, **fields)``: a new copy-started segment of topic "t" partition 0 with
    a fresh id, covering ``[base, next)``."""

    def build(base: int = 0, next_offset: int = 100, **fields: Any) -> RemoteSegment:
        segment_id = fields.pop("segment_id", uuid.uuid4().hex)
        values: dict[str, Any] = {
            "segment_id": segment_id, "topic_id": topic_id, "topic": "t", "partition": 0,
            "base_offset": base, "last_offset": next_offset - 1, "next_offset": next_offset,
            "object_key":
                f"topics/t/0000000000/{base:020d}-{next_offset - 1:020d}-{segment_id}.log",
            "size_bytes": 1_000, "data_bytes": 900, "max_timestamp": T0, "batch_count": 4,
            "aborted_count": 0, "leader_epoch": 0, "state": COPY_STARTED, "created_ms": T0,
            "updated_ms": T0, "version": 1,
        }
        values.update(fields)
        return RemoteSegment(**values)

    return build


def _live(store: SqlMetadataStore, segment: RemoteSegment, **kw: Any) -> RemoteSegment:
    started = store.begin_remote_copy(segment, **kw)
    return store.finish_remote_copy(started, updated_ms=T0 + 1, **kw)


def _ids(segments: list[RemoteSegment]) -> list[str]:
    return [segment.segment_id for segment in segments]


def test_store_implements_the_protocol(store: SqlMetadataStore) -> None:
    assert isinstance(store, MetadataStore)


# --- the lifecycle -----------------------------------------------------------------------------


def test_a_segment_goes_through_its_whole_lifecycle(store: SqlMetadataStore, make: Make) -> None:
    segment = make(0, 100)

    started = store.begin_remote_copy(segment)
    assert started == segment and not started.is_live
    assert store.remote_segments() == [started]

    finished = store.finish_remote_copy(started, updated_ms=T0 + 5)
    assert finished == replace(started, state=COPY_FINISHED, updated_ms=T0 + 5, version=2)
    assert finished.is_live
    assert store.remote_segments() == [finished]

    deleting = store.begin_remote_delete(finished, updated_ms=T0 + 9)
    assert deleting == replace(finished, state=DELETE_STARTED, updated_ms=T0 + 9, version=3)
    assert deleting is not None and not deleting.is_live
    assert store.remote_segments() == [deleting]

    store.delete_remote_segment(segment.segment_id)
    assert store.remote_segments() == []


def test_begin_stores_copy_started_at_version_1_whatever_it_is_given(
    store: SqlMetadataStore, make: Make
) -> None:
    stored = store.begin_remote_copy(make(state=COPY_FINISHED, version=7, updated_ms=T0 + 3))

    assert (stored.state, stored.version, stored.created_ms, stored.updated_ms) == (
        COPY_STARTED, 1, T0, T0 + 3)
    assert store.remote_segments() == [stored]
    assert store.remote_segments(states=[COPY_FINISHED]) == []


def test_an_abandoned_copy_is_deleted_without_ever_being_live(
    store: SqlMetadataStore, make: Make
) -> None:
    started = store.begin_remote_copy(make())

    deleting = store.begin_remote_delete(started, updated_ms=T0 + 1)

    assert deleting is not None and (deleting.state, deleting.version) == (DELETE_STARTED, 2)
    with pytest.raises(StaleVersionError, match="delete-started, not copy-started"):
        store.finish_remote_copy(started, updated_ms=T0 + 2)
    store.delete_remote_segment(started.segment_id)
    assert store.remote_segments() == []


# --- no overlapping live segments --------------------------------------------------------------


@pytest.mark.parametrize(("base", "next_offset"), [(150, 250), (50, 101), (199, 200), (0, 1000)])
def test_begin_refuses_a_range_overlapping_a_live_segment(
    store: SqlMetadataStore, make: Make, base: int, next_offset: int
) -> None:
    live = _live(store, make(100, 200))

    with pytest.raises(StaleVersionError, match="overlaps the live remote segment") as caught:
        store.begin_remote_copy(make(base, next_offset))

    assert caught.value.retriable is True
    assert store.remote_segments() == [live]


def test_adjacent_ranges_and_overlaps_with_non_live_segments_are_allowed(
    store: SqlMetadataStore, make: Make
) -> None:
    _live(store, make(100, 200))
    _live(store, make(200, 300))  # starts exactly at the previous next_offset
    _live(store, make(0, 100))  # ends exactly at the first base_offset
    copying = store.begin_remote_copy(make(300, 400))
    store.begin_remote_copy(make(350, 450))  # overlaps only a copy-started entry
    deleting = store.begin_remote_delete(_live(store, make(400, 500)), updated_ms=T0 + 2)
    assert deleting is not None

    _live(store, make(450, 550))  # overlaps only a delete-started entry
    store.finish_remote_copy(copying, updated_ms=T0 + 3)

    live = store.remote_segments(states=[COPY_FINISHED])
    assert [(s.base_offset, s.next_offset) for s in live] == [
        (0, 100), (100, 200), (200, 300), (300, 400), (450, 550)]


def test_overlap_is_checked_per_partition_and_topic_incarnation(
    store: SqlMetadataStore, make: Make
) -> None:
    other = store.create_topic("u", 1, {}, created_ms=T0).topic_id
    _live(store, make(0, 100))

    _live(store, make(0, 100, partition=1))
    _live(store, make(0, 100, topic_id=other, topic="u"))

    assert len(store.remote_segments(states=[COPY_FINISHED])) == 3


def test_of_two_copies_of_one_range_the_first_to_finish_wins(
    store: SqlMetadataStore, make: Make
) -> None:
    first = store.begin_remote_copy(make(0, 100))
    second = store.begin_remote_copy(make(50, 150))

    store.finish_remote_copy(second, updated_ms=T0 + 1)
    with pytest.raises(StaleVersionError, match="overlaps the live remote segment"):
        store.finish_remote_copy(first, updated_ms=T0 + 2)

    assert _ids(store.remote_segments(states=[COPY_FINISHED])) == [second.segment_id]
    assert store.remote_segments(states=[COPY_STARTED]) == [first]  # unchanged: clean it up
    assert store.begin_remote_delete(first, updated_ms=T0 + 3) is not None


def test_racing_finishers_of_overlapping_copies_leave_exactly_one_live(
    race: Callable[..., list[Any]], store: SqlMetadataStore, make: Make
) -> None:
    for round_ in range(5):
        start = round_ * 1_000
        # Staggered ranges that all contain [start + 70, start + 100): every pair overlaps.
        copies = [store.begin_remote_copy(make(start + 10 * i, start + 100 + 10 * i))
                  for i in range(8)]

        results = race(
            8, lambda i, copies=copies: store.finish_remote_copy(copies[i], updated_ms=T0 + i)
        )

        winners = [r for r in results if isinstance(r, RemoteSegment)]
        losers = [r for r in results if not isinstance(r, RemoteSegment)]
        assert len(winners) == 1, results
        assert all(isinstance(r, StaleVersionError) for r in losers), results
        live = store.remote_segments(states=[COPY_FINISHED])
        assert live[-1] == winners[0] and len(live) == round_ + 1


# --- compare-and-swap --------------------------------------------------------------------------


def test_finish_is_a_compare_and_swap_on_state_and_version(
    store: SqlMetadataStore, make: Make
) -> None:
    started = store.begin_remote_copy(make())

    with pytest.raises(StaleVersionError, match="version 1, not the expected 5"):
        store.finish_remote_copy(replace(started, version=5), updated_ms=T0)
    finished = store.finish_remote_copy(started, updated_ms=T0 + 1)
    with pytest.raises(StaleVersionError, match="copy-finished, not copy-started"):
        store.finish_remote_copy(started, updated_ms=T0 + 2)
    with pytest.raises(StaleVersionError, match="gone"):
        store.finish_remote_copy(make(), updated_ms=T0)

    assert store.remote_segments() == [finished]


def test_a_duplicate_segment_id_is_refused(store: SqlMetadataStore, make: Make) -> None:
    first = store.begin_remote_copy(make(0, 100, segment_id="a" * 32))

    with pytest.raises(StaleVersionError, match="already exists"):
        store.begin_remote_copy(make(500, 600, segment_id="a" * 32))

    assert store.remote_segments() == [first]


def test_begin_delete_is_a_cas_idempotent_and_none_once_deleted(
    store: SqlMetadataStore, make: Make
) -> None:
    finished = _live(store, make())

    with pytest.raises(StaleVersionError, match="version 2, not the expected 1"):
        store.begin_remote_delete(replace(finished, version=1), updated_ms=T0 + 5)
    assert store.remote_segments() == [finished]

    deleting = store.begin_remote_delete(finished, updated_ms=T0 + 5)
    again = store.begin_remote_delete(finished, updated_ms=T0 + 6)  # a retry: no bump
    stale = store.begin_remote_delete(replace(finished, version=1), updated_ms=T0 + 7)
    assert deleting is not None and deleting.version == 3
    assert again == deleting and stale == deleting
    assert store.remote_segments() == [deleting]

    store.delete_remote_segment(finished.segment_id)
    store.delete_remote_segment(finished.segment_id)  # idempotent
    assert store.begin_remote_delete(finished, updated_ms=T0 + 8) is None
    store.delete_remote_segment(uuid.uuid4().hex)  # never existed


def test_deleting_a_row_that_is_not_delete_started_is_refused(
    store: SqlMetadataStore, make: Make
) -> None:
    live = _live(store, make(0, 100))
    copying = store.begin_remote_copy(make(100, 200))

    with pytest.raises(StaleVersionError, match="copy-finished, not delete-started"):
        store.delete_remote_segment(live.segment_id)
    with pytest.raises(StaleVersionError, match="copy-started, not delete-started"):
        store.delete_remote_segment(copying.segment_id)

    assert store.remote_segments() == [live, copying]


# --- lease fencing -----------------------------------------------------------------------------


def test_copies_fenced_by_a_lost_lease_are_refused(store: SqlMetadataStore, make: Make) -> None:
    old = store.acquire_lease("tierer/t/0", "a", now_ms=T0, duration_ms=TTL)
    assert old is not None
    started = store.begin_remote_copy(make(0, 100), lease=old)
    new = store.acquire_lease("tierer/t/0", "b", now_ms=T0 + TTL, duration_ms=TTL)
    assert new is not None and new.epoch == 2

    with pytest.raises(LeaseLostError, match="held by 'b' at epoch 2"):
        store.finish_remote_copy(started, updated_ms=T0 + TTL, lease=old)
    with pytest.raises(LeaseLostError):
        store.begin_remote_copy(make(100, 200), lease=old)
    assert store.remote_segments() == [started]

    finished = store.finish_remote_copy(started, updated_ms=T0 + TTL, lease=new)
    assert finished.is_live
    assert store.begin_remote_copy(make(100, 200), lease=new).state == COPY_STARTED


# --- topics ------------------------------------------------------------------------------------


def test_begin_needs_an_existing_topic_id_and_partition(
    store: SqlMetadataStore, make: Make
) -> None:
    with pytest.raises(UnknownTopicOrPartitionError, match="has 3 partitions"):
        store.begin_remote_copy(make(partition=3))
    with pytest.raises(UnknownTopicOrPartitionError, match="no topic has the topic id"):
        store.begin_remote_copy(make(topic_id=str(uuid.uuid4())))

    assert store.remote_segments() == []


def test_deleting_a_topic_deletes_its_manifest_and_only_its(
    store: SqlMetadataStore, make: Make, topic_id: str
) -> None:
    other = store.create_topic("u", 1, {}, created_ms=T0).topic_id
    _live(store, make(0, 100))
    store.begin_remote_copy(make(0, 50, partition=2))
    kept = _live(store, make(0, 100, topic_id=other, topic="u"))
    with pytest.raises(StaleVersionError):  # a failed delete keeps the manifest
        store.delete_topic("t", expected_version=99)
    assert len(store.remote_segments(topic_id)) == 2

    store.delete_topic("t")

    assert store.remote_segments() == [kept]
    with pytest.raises(UnknownTopicOrPartitionError):
        store.begin_remote_copy(make(0, 100))
    recreated = store.create_topic("t", 3, {}, created_ms=T0 + 1)
    assert recreated.topic_id != topic_id
    assert store.remote_segments(recreated.topic_id) == []
    _live(store, make(0, 100, topic_id=recreated.topic_id))  # no stale live segment in the way


def test_no_manifest_row_outlives_a_topic_deleted_during_copies(
    race: Callable[..., list[Any]], store: SqlMetadataStore, make: Make
) -> None:
    for round_ in range(5):
        topic_id = store.create_topic(f"r{round_}", 1, {}, created_ms=T0).topic_id

        def act(i: int, round_: int = round_, topic_id: str = topic_id) -> object:
            if i == 0:
                return store.delete_topic(f"r{round_}")
            return store.begin_remote_copy(
                make(100 * i, 100 * i + 100, topic_id=topic_id, topic=f"r{round_}"))

        results = race(8, act)

        assert all(isinstance(r, (RemoteSegment, UnknownTopicOrPartitionError))
                   for r in results[1:]), results
        assert store.remote_segments(topic_id) == []


# --- listing -----------------------------------------------------------------------------------


def test_listing_sorts_numerically_and_filters(store: SqlMetadataStore, make: Make) -> None:
    other = store.create_topic("u", 1, {}, created_ms=T0).topic_id
    made = [
        _live(store, make(100, 1_000)),
        _live(store, make(9, 10)),
        store.begin_remote_copy(make(10, 100)),
        _live(store, make(0, 5, partition=1)),
        _live(store, make(0, 5, topic_id=other, topic="u")),
    ]
    by_id = {s.segment_id: s for s in made}

    t0 = store.remote_segments(made[0].topic_id, 0)
    assert [s.base_offset for s in t0] == [9, 10, 100]  # 9 < 10 < 100: not text order
    assert [s.partition for s in store.remote_segments(made[0].topic_id)] == [0, 0, 0, 1]
    assert _ids(store.remote_segments(partition=1)) == [made[3].segment_id]
    assert store.remote_segments(states=(RemoteSegmentState.COPY_STARTED,)) == [made[2]]
    assert len(store.remote_segments(states=[COPY_FINISHED, COPY_STARTED])) == 5
    assert store.remote_segments(states=[]) == []
    assert store.remote_segments(str(uuid.uuid4())) == []
    listed = store.remote_segments()
    assert [(s.topic_id, s.partition, s.base_offset) for s in listed] == sorted(
        (s.topic_id, s.partition, s.base_offset) for s in made)
    assert all(by_id[s.segment_id] == s for s in listed)


# --- validation --------------------------------------------------------------------------------

_BIG = (1 << 63) - 1


@pytest.mark.parametrize(
    "fields",
    [
        {"segment_id": ""}, {"segment_id": "x" * 33}, {"segment_id": 7}, {"topic_id": ""},
        {"topic_id": "x" * 37}, {"topic": ""}, {"topic": None}, {"partition": -1},
        {"partition": 1 << 31}, {"partition": True}, {"base_offset": -1},
        {"base_offset": 10, "last_offset": 8}, {"last_offset": 100},
        {"last_offset": 99, "next_offset": 99}, {"next_offset": _BIG + 1}, {"object_key": ""},
        {"object_key": "k" * 1025}, {"data_bytes": -1}, {"size_bytes": 899},
        {"max_timestamp": -2}, {"batch_count": -1}, {"batch_count": 1.0},
        {"aborted_count": -1}, {"leader_epoch": -2}, {"leader_epoch": 1 << 31},
        {"created_ms": -1}, {"updated_ms": "0"},
    ],
)
def test_invalid_segments_are_refused(
    store: SqlMetadataStore, make: Make, fields: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgumentError):
        store.begin_remote_copy(replace(make(0, 100), **fields))

    assert store.remote_segments() == []


def test_boundary_values_are_accepted(store: SqlMetadataStore, make: Make) -> None:
    segment = make(
        5, 5, segment_id="s" * 32, last_offset=4, object_key="k" * 1024, size_bytes=0,
        data_bytes=0, max_timestamp=-1, leader_epoch=-1, batch_count=0, topic="t" * 249,
    )

    stored = store.begin_remote_copy(segment)

    assert store.remote_segments() == [stored]
    big = make(_BIG - 1, _BIG, partition=2, size_bytes=_BIG, data_bytes=_BIG)
    assert store.finish_remote_copy(store.begin_remote_copy(big), updated_ms=_BIG).is_live


def test_invalid_calls_are_refused(store: SqlMetadataStore, make: Make) -> None:
    started = store.begin_remote_copy(make())
    calls: list[Callable[[], object]] = [
        lambda: store.begin_remote_copy("segment"),  # type: ignore[arg-type]
        lambda: store.begin_remote_copy(make(500, 600), lease="lease"),  # type: ignore[arg-type]
        lambda: store.finish_remote_copy(started, updated_ms=-1),
        lambda: store.finish_remote_copy(replace(started, version=0), updated_ms=T0),
        lambda: store.finish_remote_copy(None, updated_ms=T0),  # type: ignore[arg-type]
        lambda: store.begin_remote_delete(replace(started, segment_id=""), updated_ms=T0),
        lambda: store.begin_remote_delete(started, updated_ms=True),
        lambda: store.delete_remote_segment("x" * 33),
        lambda: store.remote_segments(""),
        lambda: store.remote_segments(partition=-1),
        lambda: store.remote_segments(states="copy-started"),
        lambda: store.remote_segments(states=["copy_started"]),
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError):
            call()

    assert store.remote_segments() == [started]


def test_a_closed_store_refuses_manifest_calls(store_url: str, make: Make) -> None:
    closed = SqlMetadataStore(store_url)
    closed.close()

    with pytest.raises(IllegalStateError):
        closed.begin_remote_copy(make())
    with pytest.raises(IllegalStateError):
        closed.remote_segments()


# --- the migration -----------------------------------------------------------------------------


def test_the_migration_creates_the_table_and_downgrades(store_url: str) -> None:
    from alembic import command

    migrate.upgrade(store_url)
    engine = sql_metadata.create_metadata_engine(store_url)
    try:
        inspector = inspect(engine)
        assert inspector.get_pk_constraint("remote_segments")["constrained_columns"] == [
            "segment_id"]
        [index] = inspector.get_indexes("remote_segments")
        assert index["column_names"] == ["topic_id", "partition", "base_offset"]
        checks = {check["name"] for check in inspector.get_check_constraints("remote_segments")}
        assert checks == {f"ck_remote_segments_{name}" for name in (
            "partition_non_negative", "base_offset_non_negative", "last_offset_range",
            "next_offset_range", "bytes_range", "version_positive", "state_known")}

        with migrate._process_lock, sql_metadata.begin_write(engine) as conn:
            command.downgrade(migrate._alembic_config(conn), "0004")
        assert migrate.current_revision(engine) == "0004"
        assert "remote_segments" not in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()

    assert migrate.upgrade(store_url).changed
    with SqlMetadataStore(store_url) as store:
        assert store.remote_segments() == []


def test_the_check_constraints_hold_without_the_store(store_url: str) -> None:
    from logstore.backends.schema import remote_segments
    from sqlalchemy import exc, insert

    migrate.upgrade(store_url)
    engine = create_engine(store_url)
    row = {
        "segment_id": "s", "topic_id": "t", "topic": "t", "partition": 0, "base_offset": 0,
        "last_offset": 9, "next_offset": 10, "object_key": "k", "size_bytes": 1, "data_bytes": 1,
        "max_timestamp": 0, "batch_count": 1, "aborted_count": 0, "leader_epoch": 0,
        "state": COPY_STARTED, "created_ms": 0, "updated_ms": 0, "version": 1,
    }
    try:
        for bad in ({"state": "live"}, {"next_offset": 9}, {"data_bytes": 2}, {"version": 0}):
            with pytest.raises(exc.IntegrityError), engine.begin() as conn:
                conn.execute(insert(remote_segments).values({**row, **bad}))
        with engine.begin() as conn:
            conn.execute(insert(remote_segments).values(row))
    finally:
        engine.dispose()

