"""``logstore tail``: start positions, partitions, formats, limits and ``-f``."""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import logstore

HOUR_MS = 3_600_000


@pytest.fixture
def numbered(api, produce) -> logstore.Log:
    """Topic ``t`` with one partition holding values 0..14."""
    api.create_topic("t")
    produce(api, "t", [b"%d" % i for i in range(15)])
    return api


def values(result) -> list[str]:
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def test_default_is_the_last_ten(run, numbered) -> None:
    assert values(run("tail", "t")) == [str(i) for i in range(5, 15)]


def test_lines(run, numbered) -> None:
    assert values(run("tail", "t", "-n", "3")) == ["12", "13", "14"]
    assert values(run("tail", "t", "--lines", "100")) == [str(i) for i in range(15)]
    assert values(run("tail", "t", "-n", "0")) == []


def test_from_beginning(run, numbered) -> None:
    assert values(run("tail", "t", "--from-beginning")) == [str(i) for i in range(15)]


def test_offset(run, numbered) -> None:
    assert values(run("tail", "t", "--offset", "12")) == ["12", "13", "14"]
    assert values(run("tail", "t", "--offset", "15")) == []


@pytest.mark.parametrize("offset", ["16", "1000"])
def test_offset_out_of_range(run, numbered, offset: str) -> None:
    result = run("tail", "t", "--offset", offset)
    assert result.exit_code == 1
    assert result.stderr == (f"error: offset {offset} is out of range for t-0: its offsets are "
                             "0 to 15\n")


def test_offset_below_log_start(run, numbered) -> None:
    numbered.delete_records({logstore.TopicPartition("t", 0): 5})
    result = run("tail", "t", "--offset", "2")
    assert result.exit_code == 1
    assert "out of range" in result.stderr
    assert values(run("tail", "t", "--from-beginning", "--max-messages", "1")) == ["5"]


def test_max_messages(run, numbered) -> None:
    assert values(run("tail", "t", "--from-beginning", "--max-messages", "2")) == ["0", "1"]


def test_partitions_print_in_turn_and_can_be_chosen(run, api, produce) -> None:
    api.create_topic("t", 2)
    produce(api, "t", [b"a%d" % i for i in range(12)], partition=0)
    produce(api, "t", [b"b%d" % i for i in range(3)], partition=1)
    assert values(run("tail", "t")) == [f"a{i}" for i in range(2, 12)] + ["b0", "b1", "b2"]
    assert values(run("tail", "t", "--partition", "1", "-n", "2")) == ["b1", "b2"]
    assert values(run("tail", "t", "--partition", "1", "--offset", "1")) == ["b1", "b2"]
    # --max-messages counts across partitions.
    assert values(run("tail", "t", "-n", "1", "--max-messages", "1")) == ["a11"]


def test_offset_needs_partition_when_there_are_several(run, api) -> None:
    api.create_topic("t", 3)
    result = run("tail", "t", "--offset", "0")
    assert result.exit_code == 1
    assert result.stderr == "error: --offset needs --partition: topic t has 3 partitions\n"


def test_unknown_partition(run, numbered) -> None:
    result = run("tail", "t", "--partition", "5")
    assert result.exit_code == 1
    assert result.stderr == "error: topic t has 1 partitions; partition 5 does not exist\n"


@pytest.mark.parametrize(
    "options",
    [["--from-beginning", "--offset", "1"], ["--since", "1h", "-n", "3"],
     ["--offset", "1", "--since", "1h"]],
)
def test_start_options_are_exclusive(run, numbered, options: list[str]) -> None:
    result = run("tail", "t", *options)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "cannot be combined" in result.stderr


@pytest.fixture
def aged(api, produce) -> int:
    """Topic ``t``: values old-0..2 stamped 3 hours ago, new-0..1 stamped now; returns now."""
    api.create_topic("t")
    now = api.clock.time_ms()
    produce(api, "t", [b"old-%d" % i for i in range(3)], timestamp_ms=now - 3 * HOUR_MS)
    produce(api, "t", [b"new-%d" % i for i in range(2)], timestamp_ms=now)
    return now


def test_since_duration(run, aged: int) -> None:
    assert values(run("tail", "t", "--since", "1h")) == ["new-0", "new-1"]
    assert values(run("tail", "t", "--since", "4h")) == ["old-0", "old-1", "old-2", "new-0",
                                                        "new-1"]
    assert values(run("tail", "t", "--since", "0s")) == []


def test_since_iso_time(run, aged: int) -> None:
    two_hours_ago = datetime.fromtimestamp((aged - 2 * HOUR_MS) / 1000, tz=UTC)
    utc = two_hours_ago.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert values(run("tail", "t", "--since", utc)) == ["new-0", "new-1"]
    local = two_hours_ago.astimezone().replace(tzinfo=None).isoformat()
    assert values(run("tail", "t", "--since", local)) == ["new-0", "new-1"]


@pytest.mark.parametrize("since", [
    "yesterday", "10", "5x", "2024-13-45", "2024-02-30", "0000-01-01", "10000-01-01", "",
    "1" * 5000 + "s", "99999999999999999999w",
])
def test_bad_since(run, numbered, since: str) -> None:
    result = run("tail", "t", "--since", since)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid")


@pytest.mark.parametrize("since", [
    "0001-01-01", "0001-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "1970-01-01T00:00:00Z",
    "100000w",
])
def test_since_the_far_past_prints_from_the_beginning(run, aged: int, since: str) -> None:
    assert values(run("tail", "t", "--since", since)) == ["old-0", "old-1", "old-2", "new-0",
                                                         "new-1"]


@pytest.mark.parametrize("since", ["9999-12-31", "9999-12-31T23:59:59.999999-23:59"])
def test_since_the_far_future_prints_nothing(run, aged: int, since: str) -> None:
    assert values(run("tail", "t", "--since", since)) == []


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/New_York"])
def test_since_year_one_in_a_real_process(tmp_path: Path, produce, shell, zone: str) -> None:
    with logstore.open(tmp_path / "logstore-data", maintenance_interval_ms=None) as log:
        log.create_topic("t")
        produce(log, "t", [b"a", b"b"])
    result = shell(f"TZ={zone} logstore tail t --since 0001-01-01")
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", b"a\nb\n")


def test_print_key(run, api, produce) -> None:
    api.create_topic("t")
    produce(api, "t", [b"v1"], key=b"k1")
    produce(api, "t", [b"v2"], key=None)
    assert values(run("tail", "t", "--print-key")) == ["k1\tv1", "\tv2"]
    assert values(run("tail", "t", "--print-key", "--key-separator", " => ")) == [
        "k1 => v1", " => v2"]


def test_json_lines(run, api) -> None:
    api.create_topic("t")
    with api.producer() as producer:
        producer.send("t", value=b"hello", key=None, headers=[("h", b"x"), ("n", None)],
                      timestamp_ms=1_700_000_000_123)
        producer.send("t", value=None, key=b"k", timestamp_ms=1_700_000_000_124)
    lines = values(run("tail", "t", "--format", "json"))
    first, tombstone = (json.loads(line) for line in lines)
    assert first == {
        "topic": "t", "partition": 0, "offset": 0, "timestamp": 1_700_000_000_123,
        "timestamp_iso": "2023-11-14T22:13:20.123Z", "key": None, "value": "hello",
        "headers": [{"key": "h", "value": "x"}, {"key": "n", "value": None}],
    }
    assert tombstone["key"] == "k" and tombstone["value"] is None
    assert tombstone["offset"] == 1 and tombstone["headers"] == []


def test_json_lines_of_timestamps_beyond_year_9999(run, api, produce) -> None:
    api.create_topic("t")
    produce(api, "t", [b"late"], timestamp_ms=2**63 - 1)
    (line,) = values(run("tail", "t", "--format", "json"))
    record = json.loads(line)
    assert record["timestamp"] == 2**63 - 1 and record["timestamp_iso"] is None


def test_follow_stops_at_max_messages(run, numbered) -> None:
    assert values(run("tail", "t", "-f", "-n", "2", "--max-messages", "2")) == ["13", "14"]


def _lines_of(stream) -> queue.Queue[bytes]:
    lines: queue.Queue[bytes] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _take(lines: queue.Queue[bytes], count: int, timeout: float = 15) -> list[bytes]:
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < count:
        try:
            got.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            pytest.fail(f"tail -f printed {got} and then nothing for {timeout} s")
    return got


def test_follow_in_a_real_process(tmp_path: Path, produce, spawn) -> None:
    with logstore.open(tmp_path / "logstore-data", maintenance_interval_ms=None) as log:
        log.create_topic("t")
        produce(log, "t", [b"before-0", b"before-1"])
        proc = spawn("tail", "t", "-f", "--from-beginning")
        lines = _lines_of(proc.stdout)
        assert _take(lines, 2) == [b"before-0\n", b"before-1\n"]  # caught up: now waiting
        produce(log, "t", [b"after-0", b"after-1"])
        assert _take(lines, 2) == [b"after-0\n", b"after-1\n"]
        time.sleep(0.2)  # back to waiting for new records: the usual moment to be stopped
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert lines.empty()
        assert proc.stderr is not None and proc.stderr.read() == b""


def test_follow_exits_cleanly_on_ctrl_c(tmp_path: Path, produce, spawn) -> None:
    with logstore.open(tmp_path / "logstore-data", maintenance_interval_ms=None) as log:
        log.create_topic("t")
        produce(log, "t", [b"only"])
        proc = spawn("tail", "t", "--follow")
        assert _take(_lines_of(proc.stdout), 1) == [b"only\n"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()


def test_bounded_read_stops_at_the_end_taken_at_start(numbered) -> None:
    import io

    from logstore.cli.tail import RecordPrinter, Span, print_spans

    out = io.BytesIO()
    printer = RecordPrinter(out, "text", False, b"\t")
    # As if the command had started when the high watermark was 3: later records stay out.
    with numbered.consumer() as consumer:
        print_spans(consumer, [Span(logstore.TopicPartition("t", 0), 1, 3)], printer, None)
    assert out.getvalue() == b"1\n2\n"


# --- tail --group ---------------------------------------------------------------------------------


def _committed(log: logstore.Log, group: str) -> dict[logstore.TopicPartition, int | None]:
    return {logstore.TopicPartition(lag.topic, lag.partition): lag.committed_offset
            for lag in log.group_lag(group)}


def _left(log: logstore.Log, group: str) -> bool:
    """Whether the group has no members (the CLI's consumer left, not merely went silent)."""
    description = log.describe_group(group)
    return description.state == "Empty" and description.members == ()


def test_group_second_run_continues_where_the_first_stopped(run, numbered) -> None:
    tp = logstore.TopicPartition("t", 0)
    first = run("tail", "t", "--group", "g", "--from-beginning", "--max-messages", "4")
    assert values(first) == ["0", "1", "2", "3"]
    assert _committed(numbered, "g") == {tp: 4}  # what was printed, not what was read ahead
    assert _left(numbered, "g")
    # --from-beginning only applies to partitions without a committed offset.
    assert values(run("tail", "t", "--group", "g", "--from-beginning")) == [
        str(i) for i in range(4, 15)]
    assert _committed(numbered, "g") == {tp: 15}
    assert values(run("tail", "t", "--group", "g")) == []
    assert _left(numbered, "g")


def test_group_shares_partitions_and_resumes_each(run, api, produce) -> None:
    api.create_topic("t", 3)
    for p in range(3):
        produce(api, "t", [b"p%d-%d" % (p, i) for i in range(4)], partition=p)
    first = values(run("tail", "t", "--group", "g", "--from-beginning", "--max-messages", "5"))
    second = values(run("tail", "t", "--group", "g", "--from-beginning"))
    assert len(first) == 5 and len(second) == 7
    assert sorted(first + second) == sorted(f"p{p}-{i}" for p in range(3) for i in range(4))
    assert set(_committed(api, "g").values()) == {4}


def test_group_without_from_beginning_starts_at_the_end(run, numbered, produce) -> None:
    assert values(run("tail", "t", "--group", "g")) == []
    # The start was committed: the group resumes there, not at the end of a later run.
    assert _committed(numbered, "g") == {logstore.TopicPartition("t", 0): 15}
    produce(numbered, "t", [b"new-0", b"new-1"])
    assert values(run("tail", "t", "--group", "g", "--print-key", "--key-separator", "=")) == [
        "=new-0", "=new-1"]


def test_group_json_lines(run, numbered) -> None:
    lines = values(run("tail", "t", "--group", "g", "--from-beginning", "--format", "json",
                       "--max-messages", "2"))
    assert [json.loads(line)["offset"] for line in lines] == [0, 1]


def test_group_follow_stops_at_max_messages(run, numbered) -> None:
    assert values(run("tail", "t", "--group", "g", "--from-beginning", "-f",
                      "--max-messages", "3")) == ["0", "1", "2"]
    assert _committed(numbered, "g") == {logstore.TopicPartition("t", 0): 3}


def test_group_read_stops_at_the_end_taken_at_start(numbered) -> None:
    import io

    from logstore.cli.signals import StopOnSignal
    from logstore.cli.tail import RecordPrinter, consume_group

    out = io.BytesIO()
    tp = logstore.TopicPartition("t", 0)
    # As if the command had started when the high watermark was 3: later records stay out,
    # and are not committed either.
    with numbered.consumer(group_id="g", auto_offset_reset="earliest",
                           enable_auto_commit=False) as consumer:
        consume_group(consumer, "t", {tp: 3}, RecordPrinter(out, "text", False, b"\t"), None,
                      StopOnSignal())
    assert out.getvalue() == b"0\n1\n2\n"
    assert _committed(numbered, "g") == {tp: 3}


@pytest.mark.parametrize("options", [["--offset", "1"], ["--since", "1h"], ["-n", "3"],
                                     ["--partition", "0"]])
def test_group_conflicting_options(run, numbered, options: list[str]) -> None:
    result = run("tail", "t", "--group", "g", *options)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"{options[0].replace('-n', '-n/--lines')} cannot be combined with --group" in lines[0]
    assert numbered.list_groups() == []


def test_group_unknown_topic(run, api) -> None:
    result = run("tail", "nosuch", "--group", "g")
    assert result.exit_code == 1
    assert result.stderr == "error: unknown topic 'nosuch'\n"


def test_group_twice_in_real_processes(tmp_path: Path, produce, shell) -> None:
    with logstore.open(tmp_path / "logstore-data", maintenance_interval_ms=None) as log:
        log.create_topic("t", 2)
        produce(log, "t", [b"a%d" % i for i in range(6)], partition=0)
        produce(log, "t", [b"b%d" % i for i in range(4)], partition=1)
    first = shell("logstore tail t --group g --from-beginning --max-messages 4")
    second = shell("logstore tail t --group g --from-beginning")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stderr == second.stderr == b""
    printed = first.stdout.splitlines() + second.stdout.splitlines()
    assert len(first.stdout.splitlines()) == 4
    assert sorted(printed) == sorted([b"a%d" % i for i in range(6)]
                                     + [b"b%d" % i for i in range(4)])
    with logstore.open(tmp_path / "logstore-data", maintenance_interval_ms=None) as log:
        assert _committed(log, "g") == {logstore.TopicPartition("t", 0): 6,
                                        logstore.TopicPartition("t", 1): 4}
        assert _left(log, "g")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_group_follow_commits_and_leaves_on_a_signal(tmp_path: Path, produce, spawn,
                                                     signum: int) -> None:
    with logstore.open(tmp_path / "logstore-data", maintenance_interval_ms=None) as log:
        log.create_topic("t")
        produce(log, "t", [b"before-0", b"before-1"])
        proc = spawn("tail", "t", "--group", "g", "-f", "--from-beginning")
        lines = _lines_of(proc.stdout)
        assert _take(lines, 2) == [b"before-0\n", b"before-1\n"]
        produce(log, "t", [b"after-0"])
        assert _take(lines, 1) == [b"after-0\n"]
        time.sleep(0.2)
        assert len(log.describe_group("g").members) == 1
        proc.send_signal(signum)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None and proc.stderr.read() == b""
        # Left at once (not dropped after the 45 s session timeout), with everything committed.
        assert _left(log, "g")
        assert _committed(log, "g") == {logstore.TopicPartition("t", 0): 3}


def test_group_read_interrupted_before_the_end_leaves_and_says_so(tmp_path: Path, produce,
                                                                   spawn) -> None:
    with logstore.open(tmp_path / "logstore-data", maintenance_interval_ms=None) as log:
        log.create_topic("t")
        produce(log, "t", [b"x"])
        # A live member that does not poll: the command's join waits for it to rejoin.
        with log.consumer(group_id="g", enable_auto_commit=False) as member:
            member.subscribe(["t"])
            member.poll(timeout_ms=1000)
            assert member.assignment()
            proc = spawn("tail", "t", "--group", "g", "--from-beginning")
            deadline = time.monotonic() + 15
            while len(log.describe_group("g").members) < 2:  # the command is joining
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 128 + signal.SIGTERM
            assert proc.stdout is not None and proc.stdout.read() == b""
            assert proc.stderr is not None and proc.stderr.read() == b"aborted\n"
            assert len(log.describe_group("g").members) == 1  # it left the group
