"""``logstore tier run|status|check|clean`` and the global ``--object-store`` option, through the
real console script: several processes share one ``file://`` object store, as they would share
a bucket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from logstore.cli import output

import logstore
from logstore.records.builder import encode_batch

Shell = Callable[..., subprocess.CompletedProcess[bytes]]

TIERED = ("--config remote.storage.enable=true --config segment.bytes=2000 "
          "--config local.retention.bytes=0")
BATCHES = 5
PER_BATCH = 60
# Each `logstore produce` sends its 60 lines as one batch (~1.1 kB), so with segment.bytes=2000
# every batch ends up in a segment of its own: 4 sealed segments (offsets 0-239) and the
# active one (240-299). local.retention.bytes=0 keeps only what is not tiered yet locally.
VALUES = [f"record-{i:04d}" for i in range(BATCHES * PER_BATCH)]
SEALED_END = (BATCHES - 1) * PER_BATCH
ORPHAN = ("topics/t/0000000000/00000000000000000000-00000000000000000009-"
          "0123456789abcdef0123456789abcdef.log")


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    path = tmp_path / "bucket"
    path.mkdir()
    return path


@pytest.fixture
def store(bucket: Path) -> str:
    return f"file://{bucket}"


def ok(result: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    return result


def one_error_line(result: subprocess.CompletedProcess[bytes], code: int = 1) -> str:
    """The single ``error:`` line of a failed command (nothing on stdout, no traceback)."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def produce_batches(shell: Shell) -> None:
    """Create topic t (tiered, tiny segments) and produce VALUES in BATCHES processes."""
    ok(shell(f"logstore topics create t {TIERED}"))
    for b in range(BATCHES):
        chunk = "\\n".join(VALUES[b * PER_BATCH:(b + 1) * PER_BATCH])
        produced = ok(shell(f"printf '{chunk}\\n' | logstore produce t"))
        assert produced.stderr == f"produced {PER_BATCH} records to t\n".encode()


def produce_with_api(tmp_path: Path) -> None:
    """What produce_batches does, faster: the same topic and batches through the embedded API
    on the CLI's default data directory."""
    with logstore.open(tmp_path / "logstore-data", maintenance_interval_ms=None) as log:
        log.create_topic("t", 1, {"remote.storage.enable": "true", "segment.bytes": "2000",
                                  "local.retention.bytes": "0"})
        for b in range(BATCHES):
            ts = log.clock.time_ms()
            chunk = VALUES[b * PER_BATCH:(b + 1) * PER_BATCH]
            log.append("t", 0, encode_batch([(ts, None, v.encode(), ()) for v in chunk]))
        assert len(log.partition_log("t", 0).segment_bases()) == BATCHES


def status_json(shell: Shell, *options: str) -> dict[str, object]:
    (partition,) = json.loads(ok(shell(f"logstore {' '.join(options)} tier status t "
                                       "--format json")).stdout)
    return partition  # type: ignore[no-any-return]


def tail_values(shell: Shell, *options: str) -> list[str]:
    tailed = ok(shell(f"logstore {' '.join(options)} tail t --from-beginning"))
    assert tailed.stderr == b""
    return tailed.stdout.decode().splitlines()


def objects(bucket: Path) -> list[str]:
    return sorted(str(p.relative_to(bucket)) for p in (bucket / "topics").rglob("*.log"))


# --- the scenario ------------------------------------------------------------------------------


def test_tier_run_status_and_reading_across_the_boundary(shell: Shell, store: str,
                                                         bucket: Path) -> None:
    produce_batches(shell)
    before = status_json(shell)  # no --object-store needed for status
    assert (before["remote_start_offset"], before["remote_end_offset"]) == (None, None)
    assert (before["first_local_offset"], before["log_end_offset"]) == (0, len(VALUES))
    assert before["lag_segments"] == BATCHES - 1 and before["local_segments"] == BATCHES

    ran = ok(shell(f"logstore --object-store {store} tier run --format json"))
    report = json.loads(ran.stdout)
    assert report["failed"] == 0
    assert report["segments_copied"] == BATCHES - 1
    assert report["local_segments_deleted"] == BATCHES - 1
    (partition,) = report["partitions"]
    assert partition["topic"] == "t" and partition["partition"] == 0
    assert partition["status"] == "tiered"
    assert partition["bytes_copied"] == report["bytes_copied"] > 0
    assert len(objects(bucket)) == BATCHES - 1

    after = status_json(shell)
    assert after["remote_storage_enable"] is True
    assert (after["log_start_offset"], after["remote_start_offset"],
            after["remote_end_offset"]) == (0, 0, SEALED_END)
    assert (after["first_local_offset"], after["log_end_offset"]) == (SEALED_END, len(VALUES))
    assert after["remote_objects"] == BATCHES - 1 and after["local_segments"] == 1
    assert after["remote_bytes"] == report["bytes_copied"]
    assert (after["lag_segments"], after["lag_bytes"], after["copies_in_progress"]) == (0, 0, 0)

    text = ok(shell("logstore tier status")).stdout.decode().splitlines()
    assert text[0].split() == ["TOPIC", "PARTITION", "REMOTE", "LOG_START", "REMOTE_RANGE",
                               "LOCAL_RANGE", "LOCAL_BYTES", "REMOTE_BYTES", "REMOTE_OBJECTS",
                               "COPYING", "LAG_SEGMENTS", "LAG_BYTES"]
    cells = text[1].split()
    assert cells[:6] == ["t", "0", "on", "0", f"0-{SEALED_END}", f"{SEALED_END}-{len(VALUES)}"]
    assert len(text) == 2

    # Every record, in order, across the remote/local boundary: from the option or the env.
    assert tail_values(shell, "--object-store", store) == VALUES
    assert tail_values(shell, f"--object-store={store}") == VALUES
    env_tail = ok(shell(f"LOGSTORE_OBJECT_STORE={store} logstore tail t --from-beginning"))
    assert env_tail.stdout.decode().splitlines() == VALUES
    # A read that starts in a remote segment, and one that is wholly remote.
    mid = ok(shell(f"logstore --object-store {store} tail t --partition 0 --offset 100 "
                   "--max-messages 3"))
    assert mid.stdout.decode().splitlines() == VALUES[100:103]
    # Without the store, the tiered offsets cannot be read: one error line.
    message = one_error_line(shell("logstore tail t --from-beginning"))
    assert "remote storage" in message

    # A second pass has nothing to do.
    again = ok(shell(f"LOGSTORE_OBJECT_STORE={store} logstore tier run"))
    lines = again.stdout.decode().splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITION", "STATUS", "SEGMENTS_COPIED",
                                "BYTES_COPIED", "LOCAL_SEGMENTS_DELETED", "ERROR"]
    assert lines[1].split() == ["t", "0", "up-to-date", "0", "0", "0", "-"]
    assert again.stderr.decode().startswith("1 partition (1 up-to-date): copied 0 segments")
    assert again.stderr.count(b"\n") == 1

    # The cleaner leaves a clean store alone (and never touches live segments).
    dry = ok(shell(f"logstore --object-store {store} tier clean --dry-run"))
    assert dry.stdout == b""
    assert dry.stderr == b"nothing to clean (no debris older than 1h)\n"
    clean = json.loads(ok(shell(f"logstore --object-store {store} tier clean --grace 0s "
                                "--format json")).stdout)
    assert clean == {"dry_run": False, "stale_copies": [], "unfinished_deletes": [],
                     "orphan_objects": [], "incomplete_uploads": 0, "errors": [], "total": 0}
    assert len(objects(bucket)) == BATCHES - 1
    assert tail_values(shell, "--object-store", store) == VALUES


def test_tier_clean_removes_old_orphans_only(shell: Shell, store: str, bucket: Path,
                                             tmp_path: Path) -> None:
    produce_with_api(tmp_path)
    ok(shell(f"logstore --object-store {store} tier run"))
    live = objects(bucket)
    assert len(live) == BATCHES - 1
    orphan = bucket / ORPHAN
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a crashed upload")
    half_an_hour_ago = time.time() - 1800
    os.utime(orphan, (half_an_hour_ago, half_an_hour_ago))

    # The default grace (1h) leaves it alone: it might be an upload still in progress.
    kept = ok(shell(f"logstore --object-store {store} tier clean"))
    assert kept.stdout == b""
    assert kept.stderr == b"nothing to clean (no debris older than 1h)\n"
    assert orphan.exists()

    dry = ok(shell(f"logstore --object-store {store} tier clean --grace 10m --dry-run"))
    assert dry.stdout.decode().splitlines() == [
        "KIND           OBJECT", f"orphan-object  {ORPHAN}"]
    assert dry.stderr.decode() == ("would remove 0 stale copies, 0 unfinished deletes, "
                                   "1 orphan object, 0 incomplete uploads (older than 10m)\n")
    assert orphan.exists()

    cleaned = ok(shell(f"logstore --object-store {store} tier clean --grace 1s "
                       "--format json"))
    report = json.loads(cleaned.stdout)
    assert report["orphan_objects"] == [ORPHAN] and report["total"] == 1
    assert report["dry_run"] is False and report["errors"] == []
    assert not orphan.exists()
    assert objects(bucket) == live
    assert tail_values(shell, "--object-store", store) == VALUES


# --- check and errors ---------------------------------------------------------------------------


def test_tier_check(shell: Shell, store: str, bucket: Path, tmp_path: Path) -> None:
    checked = ok(shell(f"logstore --object-store {store} tier check"))
    assert checked.stdout == f"ok: {store} is reachable and writable\n".encode()
    assert checked.stderr == b""
    assert not [p for p in bucket.rglob("*") if p.is_file()]  # the probe object is gone
    read_only = ok(shell(f"LOGSTORE_OBJECT_STORE={store} logstore tier check --read-only"))
    assert read_only.stdout == f"ok: {store} is reachable and readable\n".encode()

    missing = tmp_path / "no-such-dir"
    message = one_error_line(shell(f"logstore --object-store file://{missing} tier check"))
    assert str(missing) in message and "does not exist" in message
    message = one_error_line(shell("logstore --object-store file://relative/dir tier check"))
    assert "file:///absolute/path" in message
    message = one_error_line(shell("logstore --object-store ftp://host/x tier check"))
    assert "file://, s3:// or memory://" in message


@pytest.mark.parametrize("command", ["tier run", "tier check", "tier clean",
                                     "tier run --every 1s"])
def test_commands_that_need_a_store_say_how_to_give_one(shell: Shell, command: str) -> None:
    message = one_error_line(shell(f"logstore {command}"))
    assert "--object-store" in message and "LOGSTORE_OBJECT_STORE" in message


def test_unknown_topics_and_plain_topics(shell: Shell, store: str) -> None:
    ok(shell("logstore topics create plain --partitions 2"))
    unknown = "error: unknown topic 'nosuch'"
    assert one_error_line(shell("logstore tier status nosuch")) == unknown
    assert one_error_line(shell(f"logstore --object-store {store} tier run --topic nosuch")) \
        == unknown
    assert one_error_line(shell(f"logstore --object-store {store} tier run --topic nosuch "
                                "--every 1s")) == unknown
    nothing = ok(shell(f"logstore --object-store {store} tier run"))
    assert nothing.stdout.decode().split() == ["TOPIC", "PARTITION", "STATUS", "SEGMENTS_COPIED",
                                               "BYTES_COPIED", "LOCAL_SEGMENTS_DELETED", "ERROR"]
    assert nothing.stderr == b"no topic to tier (remote.storage.enable=true selects them)\n"
    statuses = json.loads(ok(shell("logstore tier status --format json")).stdout)
    assert [(s["topic"], s["partition"], s["remote_storage_enable"], s["remote_start_offset"])
            for s in statuses] == [("plain", 0, False, None), ("plain", 1, False, None)]
    rows = ok(shell("logstore tier status")).stdout.decode().splitlines()[1:]
    assert [row.split()[:6] for row in rows] == [["plain", "0", "off", "0", "-", "0-0"],
                                                  ["plain", "1", "off", "0", "-", "0-0"]]


def test_bad_grace_and_interval_are_usage_errors(shell: Shell, store: str) -> None:
    message = one_error_line(shell(f"logstore --object-store {store} tier clean --grace soon"),
                             code=2)
    assert "--grace" in message and "invalid duration" in message
    message = one_error_line(shell(f"logstore --object-store {store} tier run --every 0s"),
                             code=2)
    assert "--every" in message
    # Longer than a thread can wait: refused before the first run, not after it.
    message = one_error_line(
        shell(f"logstore --object-store {store} tier run --every 100000w"), code=2)
    assert "--every" in message and f"at most {int(threading.TIMEOUT_MAX):,} s" in message


def test_a_failed_partition_is_reported_and_exits_1(shell: Shell, store: str,
                                                    bucket: Path, tmp_path: Path) -> None:
    produce_with_api(tmp_path)
    (bucket / "topics").mkdir()
    (bucket / "topics" / "t").write_bytes(b"")  # a file where the topic's folder must go
    failed = shell(f"logstore --object-store {store} tier run")
    assert failed.returncode == 1
    row = failed.stdout.decode().splitlines()[1].split(maxsplit=6)
    assert row[:6] == ["t", "0", "failed", "0", "0", "0"]
    assert "clashes" in row[6]
    err = failed.stderr.decode().splitlines()
    assert err == [("1 partition (1 failed): copied 0 segments (0 bytes), deleted 0 local "
                   f"segments in {err[0].rsplit(' in ', 1)[1]}"),
                   "error: 1 partition failed to tier (see ERROR; the next run retries)"]
    # Nothing was lost locally, and once the store is fixed the next run tiers it all.
    (bucket / "topics" / "t").unlink()
    assert json.loads(ok(shell(f"logstore --object-store {store} tier run --format json"))
                      .stdout)["segments_copied"] == BATCHES - 1
    assert tail_values(shell, "--object-store", store) == VALUES


# --- in process: progress bar -------------------------------------------------------------------


@pytest.fixture
def tiered_api(api: logstore.Log) -> logstore.Log:
    """Topic t (tiered) with two sealed segments and an active one, through the embedded API."""
    api.create_topic("t", 1, {"remote.storage.enable": "true", "local.retention.bytes": "0"})
    append_sealed(api, 0)
    append_sealed(api, 1)
    return api


def append_sealed(log: logstore.Log, n: int) -> None:
    ts = log.clock.time_ms()
    log.append("t", 0, encode_batch([(ts, None, b"v%d-%d" % (n, i), ()) for i in range(10)]))
    log.partition_log("t", 0).roll()


def test_progress_bar_only_on_a_terminal(run, tiered_api, store: str, monkeypatch) -> None:
    quiet = run("--object-store", store, "tier", "run", "--format", "json")
    assert quiet.exit_code == 0, quiet.stderr
    assert json.loads(quiet.stdout)["segments_copied"] == 2
    assert quiet.stderr == ""
    append_sealed(tiered_api, 2)
    monkeypatch.setattr(output, "stderr_is_tty", lambda: True)
    shown = run("--object-store", store, "tier", "run")
    assert shown.exit_code == 0, shown.stderr
    assert "tiering" in shown.stderr and "tiering" not in shown.stdout
    assert shown.stdout.splitlines()[1].split()[:4] == ["t", "0", "tiered", "1"]


# --- --every under signals ---------------------------------------------------------------------




@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_every_tiers_until_a_signal_and_exits_0(spawn, tiered_api, line_reader, store: str,
                                                signum: int) -> None:
    proc = spawn("--data-dir", "data", "--object-store", store, "tier", "run", "--every", "0.5",
                 "--format", "json")
    lines = line_reader(proc.stdout)
    first = json.loads(lines.get(timeout=30))  # one JSON object per line, per run
    assert [(p["partition"], p["status"], p["segments_copied"])
            for p in first["partitions"]] == [(0, "tiered", 2)]
    # The scheduler keeps going: a segment sealed later is tiered by a later run.
    append_sealed(tiered_api, 2)
    while json.loads(lines.get(timeout=30))["segments_copied"] != 1:
        pass
    status = tiered_api.tier_status("t")[0]
    assert (status.remote_start_offset, status.remote_end_offset) == (0, 30)
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""


def test_every_in_text_prints_a_summary_per_run(spawn, tiered_api, line_reader,
                                                store: str) -> None:
    proc = spawn("--data-dir", "data", "--object-store", store, "tier", "run", "--every",
                 "0.2")
    lines = line_reader(proc.stdout)
    headers = 0
    while headers < 2:
        if lines.get(timeout=30).startswith(b"TOPIC"):
            headers += 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None
    summaries = proc.stderr.read().decode().splitlines()
    assert len(summaries) >= 2 and all("1 partition (" in line for line in summaries)
    assert "copied 2 segments" in summaries[0] and "1 up-to-date" in summaries[1]
