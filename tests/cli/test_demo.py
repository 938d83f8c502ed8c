"""``logstore demo``: produce and read back 1,000 events, re-runnable."""

from __future__ import annotations

import json
from pathlib import Path

from logstore.cli import demo as demo_module


def test_demo_runs_twice(run, data_dir: Path, api) -> None:
    for attempt in (1, 2):
        result = run("demo")
        assert result.exit_code == 0, result.stderr
        out = result.stdout
        assert f"data dir:       {data_dir.absolute()}" in out
        assert "topic:          demo-events (3 partitions)" in out
        assert "produced:       1000 records" in out
        assert "consumed:       1000 records" in out
        assert "per-key order:  preserved for all 10 keys" in out
        (per_partition,) = [line for line in out.splitlines() if line.startswith("per partition")]
        counts = [int(part.split(": ")[1]) for part in per_partition.split(":", 1)[1].split(",")]
        assert sum(counts) == 1000
        total = sum(p.high_watermark for p in api.describe_topic("demo-events").partitions)
        assert total == 1000 * attempt  # each run appends another 1,000


def test_demo_events_are_keyed_json(run, api, consume) -> None:
    assert run("demo").exit_code == 0
    records = [r for p in range(3) for r in consume(api, "demo-events", p)]
    assert {r.key for r in records} == {b"user-%d" % i for i in range(10)}
    event = json.loads(records[0].value)
    assert {"run", "user", "seq", "event"} <= event.keys()
    assert event["user"].encode() == records[0].key


def test_demo_shows_a_progress_bar_only_on_a_terminal(run, monkeypatch) -> None:
    assert "producing" not in run("demo").stderr
    monkeypatch.setattr("logstore.cli.output.stderr_is_tty", lambda: True)
    assert "producing" in run("demo").stderr


def test_demo_reports_broken_order(run, monkeypatch) -> None:
    original = demo_module._event

    def shuffled(run_id: str, index: int, keys: int) -> tuple[bytes, bytes]:
        # Swap the seq numbers of user-0's first two events.
        swapped = {0: 10, 10: 0}.get(index, index)
        key, _ = original(run_id, index, keys)
        return key, original(run_id, swapped, keys)[1]

    monkeypatch.setattr(demo_module, "_event", shuffled)
    result = run("demo")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: check failed")
    assert "user-0: got seq 1, expected 0" in result.stderr
