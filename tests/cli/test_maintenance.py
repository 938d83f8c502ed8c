"""``logstore maintenance``: one retention pass."""

from __future__ import annotations

import json


def test_retention_deletes_segments(run, api, produce) -> None:
    # One batch per segment; keep at most ~2 segments' worth of bytes.
    api.create_topic("r", 1, {"segment.bytes": "100", "retention.bytes": "150"})
    api.create_topic("untouched")
    for i in range(6):
        produce(api, "r", [b"value-%d" % i])
    before = api.describe_topic("r").partitions[0]
    assert before.segment_count == 6

    result = run("maintenance", "--format", "json")
    assert result.exit_code == 0, result.stderr
    reports = {(r["topic"], r["partition"]): r for r in json.loads(result.stdout)}
    assert set(reports) == {("r", 0), ("untouched", 0)}
    report = reports[("r", 0)]
    # Described by a fresh process's view (the CLI's): the `api` log's cached segment list
    # does not notice segments deleted by another Log.
    (after,) = json.loads(run("topics", "describe", "r", "--format", "json").stdout)["partitions"]
    assert report["segments_deleted"] == before.segment_count - after["segment_count"] > 0
    assert report["bytes_deleted"] == before.size_bytes - after["size_bytes"] > 0
    assert report["log_start_offset"] == after["log_start_offset"] > 0
    assert reports[("untouched", 0)]["segments_deleted"] == 0

    again = run("maintenance", "--topic", "r")
    assert again.exit_code == 0
    header, row = again.stdout.splitlines()
    assert header.split() == ["TOPIC", "PARTITION", "SEGMENTS_DELETED", "BYTES_DELETED",
                              "LOG_START_OFFSET"]
    assert row.split() == ["r", "0", "0", "0", str(after["log_start_offset"])]


def test_unknown_topic(run) -> None:
    result = run("maintenance", "--topic", "nosuch")
    assert result.exit_code == 1
    assert result.stderr == "error: unknown topic 'nosuch'\n"
