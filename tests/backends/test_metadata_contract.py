"""The MetadataStore contract, run against every backend (SQLite and, when configured, PostgreSQL).

The ``store_url`` / ``store`` fixtures (conftest.py) give each test a fresh database.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from logstore.backends import migrate, open_metadata_store
from logstore.backends.metadata import MetadataStore, TopicRecord
from logstore.backends.sql_metadata import SqlMetadataStore
from sqlalchemy import create_engine, text

from logstore.errors import (
    MetadataStoreError,
    StaleVersionError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

# --- create / get / list ---------------------------------------------------------------------


def test_store_implements_the_protocol(store: SqlMetadataStore) -> None:
    assert isinstance(store, MetadataStore)


def test_create_returns_the_stored_record(store: SqlMetadataStore) -> None:
    created_ms = 1_700_000_000_000
    created = store.create_topic("orders", 3, {"retention.ms": "1000"}, created_ms=created_ms)

    assert created.name == "orders"
    assert created.partition_count == 3
    assert created.configs == {"retention.ms": "1000"}
    assert created.version == 1
    assert created.created_ms == created_ms
    assert uuid.UUID(created.topic_id).version == 4
    assert store.get_topic("orders") == created


def test_each_topic_gets_its_own_id(store: SqlMetadataStore) -> None:
    first = store.create_topic("a", 1, {}, created_ms=0)
    second = store.create_topic("b", 1, {}, created_ms=0)

    assert first.topic_id != second.topic_id


def test_get_unknown_topic_is_none(store: SqlMetadataStore) -> None:
    assert store.get_topic("missing") is None


def test_list_is_sorted_by_code_point_on_every_backend(store: SqlMetadataStore) -> None:
    names = ["b", "B", "a", "_x", "-y", "a.b", "A-1", "z9"]
    for name in names:
        store.create_topic(name, 1, {}, created_ms=0)

    assert [topic.name for topic in store.list_topics()] == sorted(names)


def test_list_of_an_empty_store_is_empty(store: SqlMetadataStore) -> None:
    assert store.list_topics() == []


def test_duplicate_create_raises_and_keeps_the_original(store: SqlMetadataStore) -> None:
    original = store.create_topic("orders", 2, {"retention.ms": "1"}, created_ms=1)

    with pytest.raises(TopicAlreadyExistsError, match="orders"):
        store.create_topic("orders", 5, {}, created_ms=2)
    assert store.get_topic("orders") == original


def test_configs_round_trip_exactly(store: SqlMetadataStore) -> None:
    configs = {
        "retention.ms": "-1",
        "cleanup.policy": "delete",
        "message.timestamp.type": "LogAppendTime",
        "odd \"quoted\" key": "ünïcödé, \\ backslash, {json: [1]}",
        "empty": "",
    }
    store.create_topic("t", 1, configs, created_ms=0)

    assert store.get_topic("t").configs == configs  # type: ignore[union-attr]
    assert store.list_topics()[0].configs == configs


def test_records_are_frozen_and_configs_are_private_copies(store: SqlMetadataStore) -> None:
    passed = {"retention.ms": "1"}
    created = store.create_topic("t", 1, passed, created_ms=0)
    passed["retention.ms"] = "2"
    fetched = store.get_topic("t")
    assert fetched is not None
    fetched.configs["retention.ms"] = "3"  # type: ignore[index]

    assert created.configs == {"retention.ms": "1"}
    assert store.get_topic("t").configs == {"retention.ms": "1"}  # type: ignore[union-attr]
    assert type(fetched.configs) is dict
    with pytest.raises(dataclasses.FrozenInstanceError):
        fetched.version = 9  # type: ignore[misc]


# --- update / delete (compare-and-swap) ------------------------------------------------------


def test_update_partition_count_bumps_the_version(store: SqlMetadataStore) -> None:
    created = store.create_topic("t", 1, {"retention.ms": "5"}, created_ms=7)

    updated = store.update_topic("t", expected_version=1, partition_count=4)

    assert updated == dataclasses.replace(created, partition_count=4, version=2)
    assert store.get_topic("t") == updated


def test_update_configs_replaces_the_whole_map(store: SqlMetadataStore) -> None:
    store.create_topic("t", 2, {"retention.ms": "5", "segment.ms": "10"}, created_ms=0)

    updated = store.update_topic("t", expected_version=1, configs={"segment.bytes": "100"})

    assert updated.configs == {"segment.bytes": "100"}
    assert updated.partition_count == 2
    assert store.get_topic("t") == updated


def test_successive_updates_chain_versions(store: SqlMetadataStore) -> None:
    store.create_topic("t", 1, {}, created_ms=0)
    store.update_topic("t", expected_version=1, partition_count=2)
    store.update_topic("t", expected_version=2, configs={"retention.ms": "1"})

    final = store.update_topic("t", expected_version=3, partition_count=3, configs={})

    assert (final.version, final.partition_count, final.configs) == (4, 3, {})


def test_update_with_a_stale_version_changes_nothing(store: SqlMetadataStore) -> None:
    store.create_topic("t", 1, {}, created_ms=0)
    current = store.update_topic("t", expected_version=1, partition_count=2)

    with pytest.raises(StaleVersionError, match="version 2") as info:
        store.update_topic("t", expected_version=1, partition_count=9)
    assert info.value.retriable
    assert store.get_topic("t") == current


def test_update_unknown_topic(store: SqlMetadataStore) -> None:
    with pytest.raises(UnknownTopicOrPartitionError, match="ghost"):
        store.update_topic("ghost", expected_version=1, partition_count=2)


def test_delete_returns_the_deleted_record(store: SqlMetadataStore) -> None:
    created = store.create_topic("t", 1, {"retention.ms": "1"}, created_ms=0)

    assert store.delete_topic("t") == created
    assert store.get_topic("t") is None
    assert store.list_topics() == []


def test_delete_with_the_current_version(store: SqlMetadataStore) -> None:
    store.create_topic("t", 1, {}, created_ms=0)
    updated = store.update_topic("t", expected_version=1, partition_count=2)

    assert store.delete_topic("t", expected_version=2) == updated
    assert store.get_topic("t") is None


def test_delete_with_a_stale_version_keeps_the_topic(store: SqlMetadataStore) -> None:
    store.create_topic("t", 1, {}, created_ms=0)
    updated = store.update_topic("t", expected_version=1, partition_count=2)

    with pytest.raises(StaleVersionError):
        store.delete_topic("t", expected_version=1)
    assert store.get_topic("t") == updated


def test_delete_unknown_topic(store: SqlMetadataStore) -> None:
    with pytest.raises(UnknownTopicOrPartitionError):
        store.delete_topic("ghost")
    with pytest.raises(UnknownTopicOrPartitionError):
        store.delete_topic("ghost", expected_version=1)


def test_a_name_can_be_reused_after_delete(store: SqlMetadataStore) -> None:
    first = store.create_topic("t", 1, {}, created_ms=0)
    store.delete_topic("t")

    second = store.create_topic("t", 2, {}, created_ms=1)

    assert second.topic_id != first.topic_id
    assert second.version == 1


# --- change counter --------------------------------------------------------------------------


def test_change_counter_moves_on_every_write_and_only_on_writes(store: SqlMetadataStore) -> None:
    seen = [store.change_counter()]

    def after(action: Callable[[], object]) -> int:
        action()
        seen.append(store.change_counter())
        return seen[-1]

    after(lambda: store.create_topic("t", 1, {}, created_ms=0))
    after(lambda: store.update_topic("t", expected_version=1, partition_count=2))
    after(lambda: store.update_topic("t", expected_version=2, configs={"retention.ms": "1"}))
    after(lambda: store.delete_topic("t"))
    assert seen == sorted(set(seen)), f"counter must strictly increase on writes: {seen}"

    before_reads = store.change_counter()
    store.get_topic("t")
    store.list_topics()
    store.change_counter()
    assert store.change_counter() == before_reads


def test_failed_writes_do_not_move_the_change_counter(store: SqlMetadataStore) -> None:
    store.create_topic("t", 1, {}, created_ms=0)
    before = store.change_counter()

    for failing in (
        lambda: store.create_topic("t", 1, {}, created_ms=0),
        lambda: store.update_topic("t", expected_version=7, partition_count=2),
        lambda: store.update_topic("ghost", expected_version=1, partition_count=2),
        lambda: store.delete_topic("t", expected_version=7),
        lambda: store.delete_topic("ghost"),
    ):
        with pytest.raises(
            (TopicAlreadyExistsError, StaleVersionError, UnknownTopicOrPartitionError)
        ):
            failing()

    assert store.change_counter() == before


def test_change_counter_is_shared_between_stores(store_url: str) -> None:
    with SqlMetadataStore(store_url) as writer, SqlMetadataStore(store_url) as watcher:
        before = watcher.change_counter()
        writer.create_topic("t", 1, {}, created_ms=0)

        assert watcher.change_counter() > before
        assert watcher.get_topic("t") is not None


# --- migrations ------------------------------------------------------------------------------


def test_reopening_is_idempotent_and_keeps_data(store_url: str) -> None:
    with open_metadata_store(store_url) as first:
        created = first.create_topic("t", 1, {"retention.ms": "1"}, created_ms=0)
    with open_metadata_store(store_url) as second:
        assert second.get_topic("t") == created
    with open_metadata_store(store_url) as third:
        assert third.list_topics() == [created]

    assert migrate.current_revision(store_url) == migrate.HEAD_REVISION
    head = migrate.HEAD_REVISION
    assert migrate.upgrade(store_url) == migrate.UpgradeResult(head, head)


def test_upgrade_reports_what_it_did(store_url: str) -> None:
    assert migrate.current_revision(store_url) is None

    first = migrate.upgrade(store_url)
    second = migrate.upgrade(store_url)

    assert (first.from_revision, first.to_revision, first.changed) == (
        None, migrate.HEAD_REVISION, True)
    assert second.changed is False
    with SqlMetadataStore(store_url, auto_migrate=False) as opened:
        assert opened.change_counter() == 0


def test_without_auto_migrate_an_empty_database_is_refused(store_url: str) -> None:
    with pytest.raises(MetadataStoreError, match="logstore db upgrade") as info:
        SqlMetadataStore(store_url, auto_migrate=False)

    assert info.value.retriable is False
    assert migrate.current_revision(store_url) is None


@pytest.mark.parametrize("auto_migrate", [True, False])
def test_a_database_newer_than_the_code_is_refused(store_url: str, auto_migrate: bool) -> None:
    migrate.upgrade(store_url)
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(MetadataStoreError, match="upgrade logstore") as info:
        SqlMetadataStore(store_url, auto_migrate=auto_migrate)
    assert info.value.retriable is False
    assert "9999" in str(info.value)
    with pytest.raises(MetadataStoreError, match="newer logstore"):
        migrate.upgrade(store_url)
    assert migrate.current_revision(store_url) == "9999"


# --- concurrency -----------------------------------------------------------------------------


def test_threads_racing_one_cas_update_have_exactly_one_winner(
    race, store: SqlMetadataStore
) -> None:
    store.create_topic("t", 1, {}, created_ms=0)
    before = store.change_counter()

    results = race(
        8, lambda i: store.update_topic("t", expected_version=1, configs={"retention.ms": str(i)})
    )

    winners = [result for result in results if isinstance(result, TopicRecord)]
    losers = [result for result in results if isinstance(result, StaleVersionError)]
    assert len(winners) == 1, results
    assert len(losers) == 7, results
    assert store.get_topic("t") == winners[0]
    assert winners[0].version == 2
    assert store.change_counter() == before + 1


def test_threads_racing_create_have_exactly_one_winner(
    race, store: SqlMetadataStore
) -> None:
    results = race(8, lambda i: store.create_topic("t", i + 1, {}, created_ms=i))

    winners = [result for result in results if isinstance(result, TopicRecord)]
    assert len(winners) == 1, results
    assert all(isinstance(r, TopicAlreadyExistsError) for r in results if r is not winners[0])
    assert store.list_topics() == [winners[0]]


def test_threads_racing_upgrade_migrate_exactly_once(race, store_url: str) -> None:
    results = race(6, lambda _: migrate.upgrade(store_url))

    assert all(isinstance(result, migrate.UpgradeResult) for result in results), results
    assert sum(result.changed for result in results) == 1  # type: ignore[union-attr]
    assert migrate.current_revision(store_url) == migrate.HEAD_REVISION


_WORKER = """
import json, os, sys, time
import alembic.command  # imported up front so that the processes race on the database only
from logstore.backends import open_metadata_store
from logstore.errors import TopicAlreadyExistsError

url, ready, go = sys.argv[1:4]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
store = open_metadata_store(url)
try:
    store.create_topic("raced", 1, {}, created_ms=0)
    outcome = "created"
except TopicAlreadyExistsError:
    outcome = "exists"
print(json.dumps({"outcome": outcome, "topics": [t.name for t in store.list_topics()]}))
store.close()
"""


def test_processes_opening_a_fresh_store_together_all_succeed(
    store_url: str, tmp_path: Path
) -> None:
    count = 4
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(count)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, store_url, str(ready[i]), str(go)],
            cwd=tmp_path,  # not the repository root, whose folders would shadow the package
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    try:
        deadline = time.monotonic() + 20
        while not all(path.exists() for path in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        outputs = [worker.communicate(timeout=30) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()

    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
    reports = [json.loads(stdout) for stdout, _ in outputs]
    assert sorted(report["outcome"] for report in reports) == ["created"] + ["exists"] * (count - 1)
    assert all(report["topics"] == ["raced"] for report in reports)
    assert migrate.current_revision(store_url) == migrate.HEAD_REVISION
    with SqlMetadataStore(store_url) as check:
        assert check.change_counter() == 1
