"""``logstore compact`` (one pass, --dry-run, --format json, --every under signals) and the
cleaner's view in ``logstore topics describe``."""

from __future__ import annotations

import json
import queue
import signal
import threading
from pathlib import Path

import pytest
from logstore.cli import output
from logstore.cli.schedule import parse_interval_s

import logstore
from logstore.records.builder import encode_batch
from logstore.records.reader import iter_records

COMPACTED = {"cleanup.policy": "compact", "segment.bytes": "100000",
             "min.cleanable.dirty.ratio": "0.01"}
KEYS = 5
ROUNDS = 3
# Every round writes each key once (one batch per record, a segment per round), then k1 is
# deleted: 16 records at offsets 0..15, of which the latest values of k0, k2, k3, k4 (round 2,
# offsets 10, 12, 13, 14) and the tombstone of k1 (offset 15) must stay.
EXPECTED = [(10, b"k0", b"v0-2"), (12, b"k2", b"v2-2"), (13, b"k3", b"v3-2"),
            (14, b"k4", b"v4-2"), (15, b"k1", None)]
RECORDS = KEYS * ROUNDS + 1
LONGEST_WAIT_S = int(threading.TIMEOUT_MAX)  # 9,223,372,036 s on 64-bit Linux


def fill(log: logstore.Log, topic: str = "c", partition: int = 0) -> None:
    """Duplicate keys across rolled segments, then a tombstone, all in sealed segments."""
    ts = log.clock.time_ms()
    plog = log.partition_log(topic, partition)
    for round_ in range(ROUNDS):
        for key in range(KEYS):
            log.append(topic, partition, encode_batch(
                [(ts, b"k%d" % key, b"v%d-%d" % (key, round_), ())]))
        plog.roll()
    log.append(topic, partition, encode_batch([(ts, b"k1", None, ())]))
    plog.roll()


def stored(log: logstore.Log, topic: str = "c", partition: int = 0) -> list[tuple]:
    """Every record of the partition as (offset, key, value), read back through fetch."""
    offset, out = 0, []
    while True:
        fetched = log.fetch(topic, partition, offset, max_bytes=1 << 20)
        for header, records in iter_records(fetched.records):
            out += [(r.offset, r.key, r.value) for r in records if r.offset >= offset]
            offset = max(offset, header.last_offset + 1)
        if not fetched.records or offset >= fetched.high_watermark:
            return out


@pytest.fixture
def compacted(api: logstore.Log) -> logstore.Log:
    """Topic ``c`` (compacted, 2 partitions; partition 0 filled) and ``plain`` (delete)."""
    api.create_topic("c", 2, COMPACTED)
    api.create_topic("plain", 1)
    fill(api)
    return api


def rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """The summary table's rows by (topic, partition); the header is checked."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITION", "STATUS", "DUE", "DIRTY_RATIO",
                                "BYTES_BEFORE", "BYTES_AFTER", "RECORDS_REMOVED",
                                "TOMBSTONES_REMOVED", "CHECKPOINT", "DURATION_MS", "REASON"]
    return {(cells[0], cells[1]): cells for cells in (line.split() for line in lines[1:])}


# --- one pass ------------------------------------------------------------------------------


def test_compact_keeps_the_latest_record_of_each_key(run, compacted) -> None:
    assert len(stored(compacted)) == RECORDS
    result = run("compact")
    assert result.exit_code == 0, result.stderr
    table = rows(result.stdout)
    assert set(table) == {("c", "0"), ("c", "1")}  # only compacted topics
    status, due, ratio, before, after, removed, tombstones, checkpoint = table["c", "0"][2:10]
    assert (status, due, ratio, removed, tombstones, checkpoint) == (
        "cleaned", "dirty-ratio", "1.00", "11", "0", "16")
    assert int(before) > int(after) > 0
    assert table["c", "1"][2:4] == ["clean", "-"]
    assert result.stderr.startswith("2 partitions (1 cleaned, 1 clean): ")
    assert stored(compacted) == EXPECTED


def test_nothing_due_exits_0(run, compacted) -> None:
    assert run("compact").exit_code == 0
    again = run("compact", "c", "--partition", "0")
    assert again.exit_code == 0, again.stderr
    assert [cells[2] for cells in rows(again.stdout).values()] == ["clean"]
    assert stored(compacted) == EXPECTED


def test_below_the_dirty_ratio_is_not_due_unless_forced(run, api) -> None:
    api.create_topic("c", 1, {**COMPACTED, "min.cleanable.dirty.ratio": "0.99"})
    fill(api)
    assert run("compact", "c").exit_code == 0  # dirty ratio 1.0: cleaned
    ts = api.clock.time_ms()
    api.append("c", 0, encode_batch([(ts, b"k0", b"new", ())]))
    api.partition_log("c", 0).roll()
    result = run("compact", "c")
    assert result.exit_code == 0
    (cells,) = rows(result.stdout).values()
    assert cells[2] == "not-due" and "min.cleanable.dirty.ratio" in result.stdout
    forced = run("compact", "c", "--force")
    assert forced.exit_code == 0
    assert [cells[2:4] for cells in rows(forced.stdout).values()] == [["cleaned", "forced"]]
    assert (10, b"k0", b"v0-2") not in stored(api)
    assert stored(api)[-1] == (16, b"k0", b"new")


def test_dry_run_changes_nothing(run, compacted, data_dir: Path) -> None:
    before = stored(compacted)
    files = sorted(p.name for p in (data_dir / "topics").rglob("*.sqlite"))
    described = json.loads(run("topics", "describe", "c", "--format", "json").stdout)
    result = run("compact", "--dry-run")
    assert result.exit_code == 0, result.stderr
    cells = rows(result.stdout)["c", "0"]
    assert cells[2] == "dry-run" and cells[7] == "11"
    assert "would remove 11 records" in result.stderr
    assert stored(compacted) == before
    assert sorted(p.name for p in (data_dir / "topics").rglob("*.sqlite")) == files
    assert json.loads(run("topics", "describe", "c", "--format", "json").stdout) == described


def test_format_json_prints_the_report(run, compacted) -> None:
    result = run("compact", "c", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["dry_run"] is False and report["records_removed"] == 11
    by_partition = {p["partition"]: p for p in report["partitions"]}
    assert set(by_partition) == {0, 1}
    assert by_partition[0]["status"] == "cleaned"
    assert by_partition[0]["topic"] == "c"
    assert by_partition[0]["checkpoint_offset"] == 16
    assert by_partition[0]["bytes_before"] > by_partition[0]["bytes_after"]
    assert by_partition[1]["status"] == "clean"


def test_one_partition(run, compacted) -> None:
    fill(compacted, partition=1)
    result = run("compact", "c", "--partition", "1", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [(p["partition"], p["status"]) for p in json.loads(result.stdout)["partitions"]] \
        == [(1, "cleaned")]
    assert len(stored(compacted, partition=0)) == RECORDS
    assert stored(compacted, partition=1) == EXPECTED


def test_no_compacted_topic_is_nothing_to_do(run, api) -> None:
    api.create_topic("plain", 1)
    result = run("compact")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith("TOPIC")
    assert len(result.stdout.splitlines()) == 1
    assert "no compacted topic" in result.stderr


def test_progress_bar_only_on_a_terminal(run, compacted, monkeypatch) -> None:
    assert "compacting" not in run("compact", "--dry-run").stderr
    monkeypatch.setattr(output, "stderr_is_tty", lambda: True)
    result = run("compact")
    assert result.exit_code == 0
    assert "compacting" in result.stderr
    assert "compacting" not in result.stdout
    assert stored(compacted) == EXPECTED


@pytest.mark.parametrize(("args", "code", "message"), [
    (["compact", "nosuch"], 1, "error: unknown topic 'nosuch'"),
    (["compact", "plain"], 1, "error: topic 'plain' is not compacted"),
    (["compact", "--partition", "0"], 2, "error: --partition needs a TOPIC"),
    (["compact", "c", "--partition", "7"], 1, "error: topic 'c' has no partition 7"),
    (["compact", "--every", "soon"], 2, "error: Invalid value for '--every': invalid duration"),
    (["compact", "--every", "0s"], 2, "error: Invalid value for '--every': the interval must"),
    # Longer than a thread can wait: refused before the first run, not after it.
    (["compact", "--every", "100000w"], 2,
     f"error: Invalid value for '--every': the interval must be at most {LONGEST_WAIT_S:,} s"),
    (["compact", "--every", "1" + "0" * 400], 2,
     "error: Invalid value for '--every': the interval must be at most"),
    (["compact", "--memory-bytes", "10"], 2, "error: Invalid value for '--memory-bytes'"),
], ids=["unknown-topic", "not-compacted", "partition-without-topic", "no-such-partition",
        "bad-duration", "zero-duration", "longer-than-a-thread-waits", "infinite-seconds",
        "tiny-map"])
def test_user_errors_are_one_line(run, compacted, args: list[str], code: int,
                                  message: str) -> None:
    result = run(*args)
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert len(stored(compacted)) == RECORDS


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("10m", 600), ("1h", 3600), ("1d", 86400), ("1h30m", 5400), ("500ms", 0.5),
    ("90", 90), ("2.5", 2.5), (" 10M ", 600), (str(LONGEST_WAIT_S), LONGEST_WAIT_S),
])
def test_interval_forms(text: str, seconds: float) -> None:
    assert parse_interval_s(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "-5", "0", "0.0", "1 h",
                                  str(LONGEST_WAIT_S + 1), "100000w"])
def test_bad_intervals(text: str) -> None:
    with pytest.raises(Exception, match=r"invalid duration|must be positive|must be at most"):
        parse_interval_s(text)


# --- topics describe ------------------------------------------------------------------------


def describe_cells(run, topic: str = "c") -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The cleaner columns of ``topics describe`` (text), per partition."""
    result = run("topics", "describe", topic)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split()[-3:] == ["DIRTY_RATIO", "CLEANER_CHECKPOINT", "CLEANER_DUE"]
    return [line.split()[-3:] for line in lines[2:] if line and line[0].isdigit()]


def describe_json(run, topic: str = "c") -> list[tuple[object, object, object]]:  # type: ignore[no-untyped-def]
    described = json.loads(run("topics", "describe", topic, "--format", "json").stdout)
    return [(p["dirty_ratio"], p["cleaner_checkpoint"], p["cleaner_due"])
            for p in described["partitions"]]


def test_describe_shows_dirty_ratio_checkpoint_and_why_due(run, compacted) -> None:
    # Before: everything dirty, never cleaned; partition 1 is empty.
    assert describe_cells(run) == [["1.00", "-", "dirty-ratio"], ["0.00", "-", "-"]]
    assert describe_json(run) == [(1.0, None, "dirty-ratio"), (0.0, None, None)]
    assert run("compact").exit_code == 0
    assert describe_cells(run) == [["0.00", "16", "-"], ["0.00", "-", "-"]]
    assert describe_json(run) == [(0.0, 16, None), (0.0, None, None)]
    # New duplicates in a sealed segment: dirty again, below the checkpoint nothing changed.
    ts = compacted.clock.time_ms()
    compacted.append("c", 0, encode_batch([(ts, b"k0", b"new", ())]))
    compacted.partition_log("c", 0).roll()
    (ratio, checkpoint, due), _ = describe_json(run)
    assert 0.0 < ratio < 1.0 and checkpoint == 16  # type: ignore[operator]
    assert due == "dirty-ratio"  # min.cleanable.dirty.ratio is 0.01 here
    described = compacted.describe_topic("c").partitions[0]
    assert described.dirty_ratio == ratio and described.cleaner_checkpoint == 16


def test_describe_of_a_topic_that_is_not_compacted(run, api) -> None:
    api.create_topic("plain", 1)
    result = run("topics", "describe", "plain")
    assert result.exit_code == 0
    header = result.stdout.splitlines()[1].split()
    assert not {"DIRTY_RATIO", "CLEANER_CHECKPOINT", "CLEANER_DUE"} & set(header)
    (partition,) = json.loads(run("topics", "describe", "plain", "--format", "json")
                              .stdout)["partitions"]
    assert partition["dirty_ratio"] is None and partition["cleaner_checkpoint"] is None
    assert partition["cleaner_due"] is None
    assert api.describe_topic("plain").partitions[0].dirty_ratio is None


def test_a_passed_delete_horizon_makes_compact_remove_the_tombstone(run, api) -> None:
    # delete.retention.ms=0: the horizon the first cleaning gives the tombstone is "now", so
    # it has passed by the next run; nothing is written in between.
    api.create_topic("c", 1, {**COMPACTED, "delete.retention.ms": "0"})
    fill(api)
    first = run("compact", "c")
    assert first.exit_code == 0, first.stderr
    assert rows(first.stdout)["c", "0"][2:4] == ["cleaned", "dirty-ratio"]
    assert stored(api) == EXPECTED  # the tombstone of k1 (offset 15) stays until its horizon
    assert describe_cells(run) == [["0.00", "16", "delete-horizon"]]

    second = run("compact", "c")
    assert second.exit_code == 0, second.stderr
    cells = rows(second.stdout)["c", "0"]
    assert cells[2:4] == ["cleaned", "delete-horizon"] and cells[8] == "1"
    assert "delete horizon passed" in second.stdout
    assert stored(api) == EXPECTED[:-1]
    assert describe_cells(run) == [["0.00", "16", "-"]]
    third = json.loads(run("compact", "c", "--format", "json").stdout)["partitions"][0]
    assert (third["status"], third["due"], third["delete_horizon_ms"]) == ("clean", None, None)


# --- real processes ---------------------------------------------------------------------------


def test_real_process_compacts_and_reports_errors_in_one_line(shell, compacted) -> None:
    done = shell("logstore --data-dir data compact --format json | "
                 "python -c 'import json,sys; r=json.load(sys.stdin); "
                 "print(r[\"records_removed\"], [p[\"status\"] for p in r[\"partitions\"]])'")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"11 ['cleaned', 'clean']\n"
    assert stored(compacted) == EXPECTED
    failed = shell("logstore --data-dir data compact plain")
    assert failed.returncode == 1
    assert failed.stdout == b""
    assert failed.stderr.count(b"\n") == 1 and b"Traceback" not in failed.stderr
    assert failed.stderr.startswith(b"error: topic 'plain' is not compacted")




def _next_line(lines: queue.Queue[bytes], timeout: float = 30) -> bytes:
    return lines.get(timeout=timeout)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_every_runs_until_a_signal_and_exits_0(spawn, compacted, line_reader,
                                               signum: int) -> None:
    proc = spawn("--data-dir", "data", "compact", "--every", "1s", "--format", "json")
    lines = line_reader(proc.stdout)
    first = json.loads(_next_line(lines))  # one JSON object per line, per run
    assert [(p["partition"], p["status"]) for p in first["partitions"]] == [(0, "cleaned"),
                                                                           (1, "clean")]
    assert stored(compacted) == EXPECTED
    # The scheduler keeps going: new duplicates are cleaned by a later run.
    ts = compacted.clock.time_ms()
    compacted.append("c", 0, encode_batch([(ts, b"k2", b"newer", ())]))
    compacted.partition_log("c", 0).roll()
    while True:
        report = json.loads(_next_line(lines))
        if report["records_removed"]:
            break
    assert (12, b"k2", b"v2-2") not in stored(compacted)
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""


def test_every_in_text_prints_a_summary_per_run(spawn, compacted, line_reader) -> None:
    proc = spawn("--data-dir", "data", "compact", "c", "--every", "1s")
    lines = line_reader(proc.stdout)
    headers = 0
    while headers < 2:
        if _next_line(lines).startswith(b"TOPIC"):
            headers += 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None
    summaries = proc.stderr.read().decode().splitlines()
    assert len(summaries) >= 2 and all("partitions (" in line for line in summaries)
    assert "cleaned" in summaries[0]
    assert stored(compacted) == EXPECTED


def test_every_stops_when_stdout_closes(shell, compacted) -> None:
    result = shell("set -o pipefail; "
                   "logstore --data-dir data compact --every 0.2 --format json | head -1",
                   timeout=60)
    assert result.returncode == 0
    assert json.loads(result.stdout)["records_removed"] == 11
    assert b"Traceback" not in result.stderr

