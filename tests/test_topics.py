"""Topic administration through the embedded API, on SQLite and PostgreSQL metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[logstore.Log]:
    """A log whose metadata lives in each backend in turn."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgresql_url")
    opened = logstore.open(tmp_path / "data", metadata_url=url, maintenance_interval_ms=None)
    yield opened
    opened.close()


def test_create_list_describe(any_log):
    description = any_log.create_topic("orders", partitions=3, config={"retention.ms": 1000})
    assert description.name == "orders" and description.partition_count == 3
    assert description.config["retention.ms"] == "1000"
    assert description.config["cleanup.policy"] == "delete"  # defaults are filled in
    assert [p.partition for p in description.partitions] == [0, 1, 2]
    assert all(p.log_end_offset == 0 and p.segment_count == 1 for p in description.partitions)
    any_log.create_topic("a-first", partitions=1)
    assert any_log.list_topics() == ["a-first", "orders"]


def test_topic_names_and_counts_are_validated(any_log):
    for bad in ["", ".", "..", "has space", "x" * 250, "slash/y", "ümlaut"]:
        with pytest.raises(InvalidTopicError):
            any_log.create_topic(bad)
    with pytest.raises(InvalidPartitionsError):
        any_log.create_topic("t", partitions=0)
    with pytest.raises(InvalidConfigurationError, match=r"no\.such"):
        any_log.create_topic("t", config={"no.such": "1"})
    with pytest.raises(InvalidConfigurationError, match=r"segment\.bytes"):
        any_log.create_topic("t", config={"segment.bytes": "ten"})
    assert any_log.list_topics() == [], "a rejected create must leave nothing behind"
    any_log.create_topic("t")
    with pytest.raises(TopicAlreadyExistsError):
        any_log.create_topic("t")


def test_alter_config_sets_and_restores_defaults(any_log):
    any_log.create_topic("t", config={"retention.ms": "5"})
    described = any_log.alter_topic_config("t", {"retention.bytes": "1000", "retention.ms": None})
    assert described.config["retention.bytes"] == "1000"
    assert described.config["retention.ms"] == "604800000"
    with pytest.raises(InvalidConfigurationError):
        any_log.alter_topic_config("t", {"durability": "maybe"})
    with pytest.raises(UnknownTopicOrPartitionError):
        any_log.alter_topic_config("nope", {"retention.ms": "1"})


def test_alter_config_takes_effect_for_appends(log):
    log.create_topic("t")
    with log.producer(linger_ms=0) as producer:
        producer.send("t", value=b"x" * 500).result(10)
        log.alter_topic_config("t", {"max.message.bytes": "300"})
        # send() may not know yet (the producer caches topic metadata for a second), but the
        # partition log enforces the new limit on the append itself.
        with pytest.raises(logstore.RecordTooLargeError):
            producer.send("t", value=b"x" * 500).result(10)
        assert log.describe_topic("t").partitions[0].log_end_offset == 1


def test_create_partitions_only_grows(any_log):
    any_log.create_topic("t", partitions=2)
    assert any_log.create_partitions("t", 5).partition_count == 5
    with pytest.raises(InvalidPartitionsError):
        any_log.create_partitions("t", 5)
    with pytest.raises(InvalidPartitionsError):
        any_log.create_partitions("t", 3)
    with any_log.producer(linger_ms=0) as producer:
        assert producer.send("t", value=b"x", partition=4).result(10).offset == 0


def test_delete_and_recreate_starts_empty(any_log):
    any_log.create_topic("t", partitions=2)
    with any_log.producer(linger_ms=0) as producer:
        producer.send("t", value=b"old", partition=0).result(10)
    old_id = any_log.describe_topic("t").topic_id
    any_log.delete_topic("t")
    assert any_log.list_topics() == []
    assert not (any_log.path / "topics" / "t").exists()
    with pytest.raises(UnknownTopicOrPartitionError):
        any_log.describe_topic("t")
    with pytest.raises(UnknownTopicOrPartitionError):
        any_log.delete_topic("t")
    recreated = any_log.create_topic("t", partitions=1)
    assert recreated.topic_id != old_id
    assert recreated.partitions[0].log_end_offset == 0


def test_topics_made_by_another_log_instance_are_seen_at_once(tmp_path):
    with logstore.open(tmp_path / "d", maintenance_interval_ms=None) as first, \
            logstore.open(tmp_path / "d", maintenance_interval_ms=None) as second:
        second.list_topics()  # warm its cache
        first.create_topic("t", partitions=2)
        with second.producer(linger_ms=0) as producer:
            assert producer.send("t", value=b"x", partition=1).result(10).offset == 0
        assert first.describe_topic("t").partitions[1].log_end_offset == 1


def test_metadata_survives_reopen(tmp_path):
    with logstore.open(tmp_path / "d", maintenance_interval_ms=None) as log:
        log.create_topic("t", partitions=2, config={"segment.bytes": "12345"})
    with logstore.open(tmp_path / "d", maintenance_interval_ms=None) as log:
        description = log.describe_topic("t")
        assert description.partition_count == 2
        assert description.config["segment.bytes"] == "12345"


def test_a_partition_dir_lost_in_a_crash_is_laid_out_again(log):
    log.create_topic("t", partitions=1)
    import shutil

    log.close()
    shutil.rmtree(log.path / "topics" / "t")
    with logstore.open(log.path, maintenance_interval_ms=None) as reopened:
        assert reopened.describe_topic("t").partitions[0].log_end_offset == 0


def test_a_closed_log_refuses_calls(log):
    log.close()
    with pytest.raises(logstore.IllegalStateError):
        log.list_topics()
    log.close()  # idempotent
