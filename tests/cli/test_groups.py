"""``logstore groups``: list, describe, reset-offsets and delete consumer groups.

Groups are set up with the embedded API on the CLI's data directory: a consumer that subscribes,
polls some records, commits and closes leaves a group with committed offsets and no members; a
consumer that subscribed and polled and is still open is a live member.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from logstore.cli.main import cli

import logstore
from logstore import OffsetAndMetadata, TopicPartition

HOUR_MS = 3_600_000
T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


def consume_and_commit(log: logstore.Log, group: str, topic: str, count: int,
                       ) -> dict[TopicPartition, int]:
    """As an application would: join ``group``, poll ``count`` records of ``topic``, commit
    the positions of every assigned partition and leave. Returns the committed offsets."""
    with log.consumer(group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False) as consumer:
        consumer.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 10
        while got < count:
            assert time.monotonic() < deadline, f"polled {got} of {count} records"
            got += len(consumer.poll(timeout_ms=200, max_records=count - got))
        positions = {tp: consumer.position(tp) for tp in consumer.assignment()}
        consumer.commit({tp: OffsetAndMetadata(offset) for tp, offset in positions.items()})
    return positions


def committed(log: logstore.Log, group: str) -> dict[TopicPartition, int | None]:
    return {TopicPartition(lag.topic, lag.partition): lag.committed_offset
            for lag in log.group_lag(group)}


@pytest.fixture
def topic(api, produce) -> logstore.Log:
    """Topic ``t``: 10 records in partition 0, 6 in partition 1."""
    api.create_topic("t", 2)
    produce(api, "t", [b"a%d" % i for i in range(10)], partition=0)
    produce(api, "t", [b"b%d" % i for i in range(6)], partition=1)
    return api


@pytest.fixture
def live(api) -> Iterator[Callable[..., logstore.Consumer]]:
    """``live("g", "t")``: a consumer of the test process that joined group g, subscribed to
    t and polled until it owns partitions; it stays a live member until the test closes it."""
    started: list[logstore.Consumer] = []

    def start(group: str, topic: str, client_id: str = "app-1") -> logstore.Consumer:
        consumer = api.consumer(group_id=group, client_id=client_id,
                                auto_offset_reset="earliest", enable_auto_commit=False)
        started.append(consumer)
        consumer.subscribe([topic])
        deadline = time.monotonic() + 10
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the live member got no partitions"
            consumer.poll(timeout_ms=100, max_records=1)
        return consumer

    yield start
    for consumer in started:
        consumer.close()


def ok(result) -> str:
    assert result.exit_code == 0, result.stderr
    return result.stdout


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def one_error_line(result, code: int = 1) -> str:
    assert result.exit_code == code, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- help ----------------------------------------------------------------------------------------

GROUP_COMMANDS = [("groups",), ("groups", "list"), ("groups", "describe"),
                  ("groups", "reset-offsets"), ("groups", "delete")]


def test_groups_are_in_the_command_tree() -> None:
    assert set(cli.commands["groups"].commands) == {"list", "describe", "reset-offsets",
                                                    "delete"}


@pytest.mark.parametrize("path", GROUP_COMMANDS, ids=" ".join)
def test_every_groups_help_ends_with_an_example(run, path: tuple[str, ...]) -> None:
    text = ok(run(*path, "--help"))
    example = text.rindex("Example:")
    assert "Options:" in text[:example]
    assert all(line.strip().startswith("logstore groups")
               for line in text[example:].splitlines()[1:] if line.strip())


# --- list ----------------------------------------------------------------------------------------


def test_list_text_and_json(run, topic, live) -> None:
    consume_and_commit(topic, "done", "t", 3)
    live("active", "t")
    assert rows(ok(run("groups", "list"))) == [
        ["GROUP", "STATE", "MEMBERS"], ["active", "Stable", "1"], ["done", "Empty", "0"]]
    assert json.loads(ok(run("groups", "list", "--format", "json"))) == [
        {"group_id": "active", "state": "Stable", "protocol_type": "consumer",
         "member_count": 1},
        {"group_id": "done", "state": "Empty", "protocol_type": "consumer", "member_count": 0},
    ]


def test_list_without_groups(run, api) -> None:
    assert ok(run("groups", "list")) == "GROUP  STATE  MEMBERS\n"
    assert json.loads(ok(run("groups", "list", "--format", "json"))) == []


# --- describe ------------------------------------------------------------------------------------


def test_describe_shows_committed_offsets_and_lag(run, topic) -> None:
    positions = consume_and_commit(topic, "g", "t", 4)
    assert sum(positions.values()) == 4 and set(positions) == {T0, T1}
    tables = ok(run("groups", "describe", "g")).split("\n\n")
    assert len(tables) == 3
    state, offsets, members = map(rows, tables)
    assert state[0] == ["GROUP", "STATE", "GENERATION", "PROTOCOL", "LEADER", "MEMBERS"]
    assert state[1][:2] == ["g", "Empty"] and state[1][3:] == ["-", "-", "0"]
    assert offsets == [
        ["TOPIC", "PARTITION", "CURRENT_OFFSET", "LOG_END_OFFSET", "LAG", "CONSUMER_ID",
         "CLIENT_ID"],
        ["t", "0", str(positions[T0]), "10", str(10 - positions[T0]), "-", "-"],
        ["t", "1", str(positions[T1]), "6", str(6 - positions[T1]), "-", "-"],
    ]
    assert members == [["MEMBER_ID", "CLIENT_ID", "INSTANCE_ID", "ASSIGNMENT"]]


def test_describe_json(run, topic) -> None:
    positions = consume_and_commit(topic, "g", "t", 4)
    document = json.loads(ok(run("groups", "describe", "g", "--format", "json")))
    assert document["group_id"] == "g" and document["state"] == "Empty"
    assert document["protocol_type"] == "consumer" and document["members"] == []
    assert document["offsets"] == [
        {"topic": "t", "partition": p, "committed_offset": positions[TopicPartition("t", p)],
         "log_end_offset": end, "lag": end - positions[TopicPartition("t", p)],
         "member_id": None, "client_id": None}
        for p, end in ((0, 10), (1, 6))
    ]


def test_describe_a_live_member(run, topic, live) -> None:
    consumer = live("g", "t", client_id="app-1")
    consumer.commit({T0: OffsetAndMetadata(7)})
    member = topic.describe_group("g").members[0].member_id
    tables = ok(run("groups", "describe", "g")).split("\n\n")
    state, offsets, members = map(rows, tables)
    assert state[1] == ["g", "Stable", "1", "range", member, "1"]
    assert offsets[1:] == [["t", "0", "7", "10", "3", member, "app-1"],
                           ["t", "1", "-", "6", "-", member, "app-1"]]
    assert members[1:] == [[member, "app-1", "-", "t-0,t-1"]]
    document = json.loads(ok(run("groups", "describe", "g", "--format", "json")))
    assert document["leader_id"] == member and document["protocol"] == "range"
    assert document["members"] == [{
        "member_id": member, "client_id": "app-1", "group_instance_id": None,
        "assignment": [{"topic": "t", "partition": 0}, {"topic": "t", "partition": 1}]}]
    assert document["offsets"][1] == {
        "topic": "t", "partition": 1, "committed_offset": None, "log_end_offset": 6,
        "lag": None, "member_id": member, "client_id": "app-1"}


@pytest.mark.parametrize(("flag", "header"), [("--state", "GROUP"), ("--offsets", "TOPIC"),
                                              ("--members", "MEMBER_ID")])
def test_describe_one_table_for_pipes(run, topic, live, flag: str, header: str) -> None:
    live("g", "t")
    text = ok(run("groups", "describe", "g", flag))
    assert "\n\n" not in text
    lines = text.splitlines()
    assert lines[0].split()[0] == header and len(lines) >= 2


@pytest.mark.parametrize("options", [["--state", "--members"], ["--offsets", "--format", "json"]])
def test_describe_table_flags_misused(run, topic, options: list[str]) -> None:
    consume_and_commit(topic, "g", "t", 1)
    one_error_line(run("groups", "describe", "g", *options), code=2)


def test_describe_unknown_group(run, api) -> None:
    assert one_error_line(run("groups", "describe", "nosuch")) == (
        "error: group 'nosuch' does not exist")


# --- reset-offsets -------------------------------------------------------------------------------


@pytest.fixture
def group(topic) -> logstore.Log:
    """Group ``g`` with committed offsets t-0: 5 and t-1: 3, and no members."""
    consume_and_commit(topic, "g", "t", 1)
    topic.alter_group_offsets("g", {T0: 5, T1: 3})
    return topic


BEFORE = {T0: 5, T1: 3}


@pytest.mark.parametrize(
    ("options", "planned"),
    [
        (["--to-earliest"], {T0: 0, T1: 0}),
        (["--to-latest"], {T0: 10, T1: 6}),
        (["--to-offset", "4"], {T0: 4, T1: 4}),
        (["--shift-by", "-2"], {T0: 3, T1: 1}),
        (["--shift-by", "2"], {T0: 7, T1: 5}),
        (["--shift-by", "-100"], {T0: 0, T1: 0}),
        (["--to-earliest", "--partition", "1"], {T1: 0}),
        (["--to-latest", "--partition", "1", "--partition", "0", "--partition", "1"],
         {T0: 10, T1: 6}),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_reset_offsets(run, group, options: list[str], planned: dict) -> None:
    result = run("groups", "reset-offsets", "g", "--topic", "t", *options)
    assert rows(ok(result)) == [["TOPIC", "PARTITION", "CURRENT_OFFSET", "NEW_OFFSET"]] + [
        ["t", str(tp.partition), str(BEFORE[tp]), str(offset)] for tp, offset in planned.items()]
    count = f"{len(planned)} partition{'s' if len(planned) > 1 else ''}"
    assert result.stderr == f"reset the offsets of group g on {count} of t\n"
    assert committed(group, "g") == BEFORE | planned


def test_reset_to_datetime(run, api, produce) -> None:
    api.create_topic("t")
    now = api.clock.time_ms()
    produce(api, "t", [b"old-%d" % i for i in range(3)], timestamp_ms=now - 3 * HOUR_MS)
    produce(api, "t", [b"new-%d" % i for i in range(2)], timestamp_ms=now)
    two_hours_ago = datetime.fromtimestamp((now - 2 * HOUR_MS) / 1000, tz=UTC)
    utc = two_hours_ago.strftime("%Y-%m-%dT%H:%M:%SZ")
    ok(run("groups", "reset-offsets", "g", "--topic", "t", "--to-datetime", utc))
    assert committed(api, "g") == {TopicPartition("t", 0): 3}
    # A time without an offset is local time, as for tail --since.
    four_hours_ago = datetime.fromtimestamp((now - 4 * HOUR_MS) / 1000)
    ok(run("groups", "reset-offsets", "g", "--topic", "t", "--to-datetime",
           four_hours_ago.isoformat(timespec="seconds")))
    assert committed(api, "g") == {TopicPartition("t", 0): 0}
    # After the last record: the log end.
    in_an_hour = datetime.fromtimestamp((now + HOUR_MS) / 1000, tz=UTC)
    ok(run("groups", "reset-offsets", "g", "--topic", "t", "--to-datetime",
           in_an_hour.isoformat()))
    assert committed(api, "g") == {TopicPartition("t", 0): 5}


def test_reset_json(run, group) -> None:
    document = json.loads(ok(run("groups", "reset-offsets", "g", "--topic", "t",
                                 "--to-earliest", "--format", "json")))
    assert document == {"group_id": "g", "dry_run": False, "offsets": [
        {"topic": "t", "partition": 0, "current_offset": 5, "new_offset": 0},
        {"topic": "t", "partition": 1, "current_offset": 3, "new_offset": 0}]}


@pytest.mark.parametrize("options", [["--to-earliest"], ["--to-latest"], ["--shift-by", "-1"],
                                     ["--to-offset", "1"], ["--to-datetime", "2000-01-01"]])
def test_dry_run_changes_nothing(run, group, options: list[str]) -> None:
    result = run("groups", "reset-offsets", "g", "--topic", "t", *options, "--dry-run")
    table = rows(ok(result))
    assert table[0] == ["TOPIC", "PARTITION", "CURRENT_OFFSET", "NEW_OFFSET"]
    assert [row[:3] for row in table[1:]] == [["t", "0", "5"], ["t", "1", "3"]]
    assert result.stderr == "dry run: the offsets of group g were not changed\n"
    assert committed(group, "g") == {T0: 5, T1: 3}
    document = json.loads(ok(run("groups", "reset-offsets", "g", "--topic", "t", *options,
                                 "--dry-run", "--format", "json")))
    assert document["dry_run"] is True
    assert committed(group, "g") == {T0: 5, T1: 3}


def test_reset_is_refused_while_a_member_is_live(run, group, live) -> None:
    consumer = live("g", "t")
    before = committed(group, "g")
    result = run("groups", "reset-offsets", "g", "--topic", "t", "--to-earliest")
    line = one_error_line(result)
    assert "group 'g' has 1 live member(s)" in line
    assert result.stdout == ""
    assert committed(group, "g") == before
    # A dry run still shows the plan, and says that applying it would be refused.
    dry = run("groups", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--dry-run")
    assert rows(ok(dry))[1] == ["t", "0", "5", "0"]
    assert "has 1 live member(s): the reset will be refused" in dry.stderr
    consumer.close()
    ok(run("groups", "reset-offsets", "g", "--topic", "t", "--to-earliest"))
    assert committed(group, "g") == {T0: 0, T1: 0}


def test_reset_a_new_group_creates_it(run, topic) -> None:
    result = run("groups", "reset-offsets", "fresh", "--topic", "t", "--to-offset", "2")
    assert rows(ok(result))[1:] == [["t", "0", "-", "2"], ["t", "1", "-", "2"]]
    assert committed(topic, "fresh") == {T0: 2, T1: 2}


def test_reset_to_an_offset_out_of_range_is_clamped_with_a_warning(run, group) -> None:
    result = run("groups", "reset-offsets", "g", "--topic", "t", "--to-offset", "8")
    assert rows(ok(result))[1:] == [["t", "0", "5", "8"], ["t", "1", "3", "6"]]
    assert "warning: offset 8 is out of range for t-1: using 6\n" in result.stderr
    assert committed(group, "g") == {T0: 8, T1: 6}


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        ([], 2, "missing the reset target"),
        (["--to-earliest", "--to-latest"], 2, "--to-earliest and --to-latest cannot be combined"),
        (["--to-offset", "1", "--shift-by", "1"], 2, "cannot be combined"),
        (["--to-datetime", "yesterday"], 1, "invalid --to-datetime 'yesterday'"),
        (["--to-earliest", "--partition", "2"], 1, "partition 2 does not exist"),
    ],
)
def test_reset_errors(run, group, options: list[str], code: int, message: str) -> None:
    line = one_error_line(run("groups", "reset-offsets", "g", "--topic", "t", *options), code)
    assert message in line
    assert committed(group, "g") == {T0: 5, T1: 3}


def test_reset_unknown_topic(run, group) -> None:
    assert one_error_line(run("groups", "reset-offsets", "g", "--topic", "nosuch",
                              "--to-earliest")) == "error: unknown topic 'nosuch'"


# --- delete --------------------------------------------------------------------------------------


def test_delete_is_refused_while_live_and_works_after(run, topic, live) -> None:
    consumer = live("g", "t")
    line = one_error_line(run("groups", "delete", "g", "--yes"))
    assert "group 'g' has 1 live member(s): it cannot be deleted" in line
    assert [g.group_id for g in topic.list_groups()] == ["g"]
    consumer.close()
    assert ok(run("groups", "delete", "g")) == "deleted group g\n"
    assert topic.list_groups() == []


def test_delete_unknown_group(run, api) -> None:
    assert one_error_line(run("groups", "delete", "nosuch", "--yes")) == (
        "error: group 'nosuch' does not exist")


def test_delete_asks_on_a_terminal(run, topic, monkeypatch) -> None:
    from logstore.cli import groups

    consume_and_commit(topic, "g", "t", 1)
    monkeypatch.setattr(groups, "stdin_is_tty", lambda: True)
    refused = run("groups", "delete", "g", input="n\n")
    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == ["Delete group g and its committed offsets? [y/N]: n",
                                           "error: aborted: group g was not deleted"]
    assert [g.group_id for g in topic.list_groups()] == ["g"]
    assert ok(run("groups", "delete", "g", input="y\n")) == "deleted group g\n"
    assert topic.list_groups() == []
