"""``logstore transactions list | describe | abort``."""

from __future__ import annotations

import json
import time

import logstore
from logstore.clock import ManualClock
from logstore.types import OffsetAndMetadata, TopicPartition


def open_transaction(api: logstore.Log) -> logstore.Producer:
    api.create_topic("t", partitions=2)
    producer = api.producer(transactional_id="copier-1", linger_ms=0)
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("t", value=b"pending", partition=1).result(10)
    producer.send_offsets_to_transaction({TopicPartition("t", 0): OffsetAndMetadata(5)}, "g")
    return producer


def test_list_and_describe_show_a_hanging_transaction(run, api) -> None:
    producer = open_transaction(api)
    listed = run("transactions", "list")
    assert listed.exit_code == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:4] == ["TRANSACTIONAL_ID", "PRODUCER_ID", "EPOCH", "STATE"]
    assert row.split()[0] == "copier-1" and row.split()[3] == "Ongoing"
    assert row.split()[-1] == "t-1"
    described = json.loads(run("transactions", "describe", "copier-1", "--format",
                               "json").stdout)
    assert described["state"] == "Ongoing" and described["start_ms"] is not None
    assert described["partitions"] == [{"topic": "t", "partition": 1}]
    assert described["pending_offsets"] == {"g": [{"topic": "t", "partition": 0, "offset": 5}]}
    text = run("transactions", "describe", "copier-1").stdout
    assert text.splitlines()[-2].split() == ["GROUP", "TOPIC", "PARTITION", "PENDING_OFFSET"]
    assert text.splitlines()[-1].split() == ["g", "t", "0", "5"]
    producer.close(timeout=0)


def test_abort_releases_the_last_stable_offset(run, api) -> None:
    producer = open_transaction(api)
    assert api.describe_topic("t").partitions[1].last_stable_offset == 0
    result = run("transactions", "abort", "copier-1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "transaction copier-1: CompleteAbort\n"
    partition = api.describe_topic("t").partitions[1]
    assert partition.last_stable_offset == partition.high_watermark == 2
    assert api.committed_offsets("g") == {}, "the pending offsets were dropped"
    assert json.loads(run("transactions", "list", "--format", "json").stdout)[0]["state"] == (
        "CompleteAbort")
    producer.close(timeout=0)


def test_unknown_transactional_id_is_one_error_line(run, api) -> None:
    result = run("transactions", "describe", "nope")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")


def test_list_does_not_show_ids_expired_after_seven_days_unused(run, api, data_dir) -> None:
    api.create_topic("t", partitions=1)
    eight_days_ago = ManualClock(start_ms=int(time.time() * 1000) - 8 * 24 * 3_600_000)
    with logstore.open(data_dir, clock=eight_days_ago, maintenance_interval_ms=None) as old:
        producer = old.producer(transactional_id="gone", linger_ms=0)
        producer.init_transactions()
        producer.begin_transaction()
        producer.send("t", value=b"old", partition=0)
        producer.commit_transaction()
    with api.producer(transactional_id="recent", linger_ms=0) as producer:
        producer.init_transactions()
    assert {d.transactional_id for d in api.list_transactions()} == {"gone", "recent"}

    listed = run("transactions", "list")
    assert listed.exit_code == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["recent"]
    assert [d.transactional_id for d in api.list_transactions()] == ["recent"]
    assert run("transactions", "describe", "gone").exit_code == 1
