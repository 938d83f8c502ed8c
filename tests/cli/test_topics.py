"""``logstore topics``: create, list, describe, alter, delete."""

from __future__ import annotations

import json

import pytest
from logstore.cli import output


def test_create_then_list(run) -> None:
    created = run("topics", "create", "orders", "--partitions", "3")
    assert created.exit_code == 0, created.stderr
    assert created.stdout == "created topic orders with 3 partitions\n"
    assert run("topics", "create", "audit").exit_code == 0
    listed = run("topics", "list")
    assert listed.exit_code == 0
    assert listed.stdout == "audit\norders\n"


def test_create_existing_topic_is_an_error(run) -> None:
    assert run("topics", "create", "t").exit_code == 0
    result = run("topics", "create", "t")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ") and "'t'" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "no.such.key=1"], "unknown topic config 'no.such.key'"),
        (["--config", "retention.ms=soon"], "invalid value for retention.ms"),
        (["--config", "retention.ms"], "invalid --config 'retention.ms': expected KEY=VALUE"),
        (["--config", "retention.ms=1", "--config", "retention.ms=2"], "given twice"),
        (["--partitions", "0"], "partition count must be between 1"),
    ],
)
def test_invalid_create_is_one_error_line(run, api, args: list[str], message: str) -> None:
    result = run("topics", "create", "bad", *args)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]
    assert api.list_topics() == []


def test_illegal_topic_name(run) -> None:
    result = run("topics", "create", "no/slashes")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: illegal topic name")


def test_list_json_has_partitions_and_overrides(run) -> None:
    run("topics", "create", "a", "--partitions", "2", "--config", "retention.ms=1000",
        "--config", "segment.bytes=4096")
    run("topics", "create", "b")
    result = run("topics", "list", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {"name": "a", "partitions": 2,
         "config": {"retention.ms": "1000", "segment.bytes": "4096"}},
        {"name": "b", "partitions": 1, "config": {}},
    ]


def test_list_json_of_no_topics_is_an_empty_list(run) -> None:
    assert json.loads(run("topics", "list", "--format", "json").stdout) == []


def test_describe_text_shows_offsets_and_configs(run, api, produce) -> None:
    api.create_topic("t", 2, {"retention.ms": "5000"})
    produce(api, "t", [b"x", b"y", b"z"], partition=1)
    result = run("topics", "describe", "t")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("topic: t  id: ") and lines[0].endswith("partitions: 2")
    assert lines[1].split() == ["PARTITION", "LOG_START_OFFSET", "LOG_END_OFFSET",
                                "HIGH_WATERMARK", "LAST_STABLE_OFFSET", "BYTES", "SEGMENTS"]
    row0, row1 = lines[2].split(), lines[3].split()
    assert row0 == ["0", "0", "0", "0", "0", "0", "1"]
    assert row1[:5] == ["1", "0", "3", "3", "3"] and int(row1[5]) > 0 and row1[6] == "1"
    assert lines[4] == "configs:"
    assert "  retention.ms=5000" in lines
    assert "  cleanup.policy=delete" in lines


def test_describe_json(run, api, produce) -> None:
    api.create_topic("t", 1)
    produce(api, "t", [b"1", b"2"])
    result = run("topics", "describe", "t", "--format", "json")
    described = json.loads(result.stdout)
    assert described["name"] == "t"
    assert described["partition_count"] == 1
    assert described["topic_id"] == api.describe_topic("t").topic_id
    (partition,) = described["partitions"]
    assert partition["log_start_offset"] == 0
    assert partition["log_end_offset"] == partition["high_watermark"] == 2
    assert partition["segment_count"] == 1 and partition["size_bytes"] > 0
    assert described["config"]["segment.bytes"] == "1073741824"


def test_describe_unknown_topic(run) -> None:
    result = run("topics", "describe", "nosuch", "--format", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error: unknown topic 'nosuch'\n"


def test_alter_sets_and_deletes_configs_and_grows_partitions(run) -> None:
    run("topics", "create", "t", "--config", "segment.bytes=4096")
    result = run("topics", "alter", "t", "--config", "retention.ms=60000",
                 "--delete-config", "segment.bytes", "--partitions", "4")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "altered topic t\n"
    described = json.loads(run("topics", "describe", "t", "--format", "json").stdout)
    assert described["partition_count"] == 4
    assert described["config"]["retention.ms"] == "60000"
    assert described["config"]["segment.bytes"] == "1073741824"


def test_alter_needs_something_to_do(run) -> None:
    run("topics", "create", "t")
    result = run("topics", "alter", "t")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: nothing to alter")


def test_alter_rejects_set_and_delete_of_one_key(run) -> None:
    run("topics", "create", "t")
    result = run("topics", "alter", "t", "--config", "retention.ms=1", "--delete-config",
                 "retention.ms")
    assert result.exit_code == 1
    assert result.stderr == "error: config 'retention.ms' is both set and deleted\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "retention.ms=-5"], "invalid value for retention.ms"),
        (["--delete-config", "bogus"], "unknown topic config 'bogus'"),
        (["--partitions", "1"], "can only grow"),
    ],
)
def test_invalid_alter(run, args: list[str], message: str) -> None:
    run("topics", "create", "t", "--partitions", "2")
    result = run("topics", "alter", "t", *args)
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr


def test_delete_with_yes(run, api) -> None:
    api.create_topic("t")
    result = run("topics", "delete", "t", "--yes")
    assert result.exit_code == 0
    assert result.stdout == "deleted topic t\n"
    assert api.list_topics() == []


def test_delete_without_a_terminal_does_not_ask(run, api) -> None:
    api.create_topic("t")
    result = run("topics", "delete", "t")
    assert result.exit_code == 0
    assert api.list_topics() == []


def test_delete_asks_on_a_terminal(run, api, monkeypatch) -> None:
    api.create_topic("t")
    monkeypatch.setattr(output, "stdin_is_tty", lambda: True)
    monkeypatch.setattr("logstore.cli.topics.stdin_is_tty", lambda: True)
    declined = run("topics", "delete", "t", input="n\n")
    assert declined.exit_code == 1
    assert "Delete topic t and all its records?" in declined.stderr
    assert declined.stderr.splitlines()[-1] == "error: aborted: topic t was not deleted"
    assert api.list_topics() == ["t"]
    accepted = run("topics", "delete", "t", input="y\n")
    assert accepted.exit_code == 0
    assert api.list_topics() == []
    skipped = run("topics", "delete", "other", "-y")
    assert skipped.exit_code == 1
    assert skipped.stderr.startswith("error: ") and "'other'" in skipped.stderr
    assert len(skipped.stderr.splitlines()) == 1
