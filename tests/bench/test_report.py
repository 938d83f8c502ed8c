"""The results document: derived figures, targets, and the markdown built from its JSON."""

from __future__ import annotations

import json
from typing import Any

from bench.latency import LatencySummary
from bench.limits import Limits
from bench.report import markdown, run_record
from bench.targets import evaluate
from bench.workloads import BACKLOG, FIXED_RATE, MAX_RATE, Phase, RunResult, RunSpec

LIMITS = Limits("python", "/tmp", 2**30, 400e6, 4e9, LatencySummary(100, 0.2, 0.5, 1.0, 2.0),
                [400e6], [4e9])
SYSTEMS = [("logstore-embedded (fsync)", "fsync"), ("redis-streams (always)", "fsync"),
           ("nats-jetstream", "os")]


def _runs(system: str, durability: str, produce_per_s: float, value_bytes: int,
          ack_p99_ms: float) -> list[dict[str, Any]]:
    records = int(produce_per_s)
    payload = records * value_bytes
    common = {"partitions": 1, "value_bytes": value_bytes}
    latency = LatencySummary(1000, 1.0, ack_p99_ms, ack_p99_ms + 1, ack_p99_ms + 2)
    results = [
        RunResult(RunSpec(MAX_RATE, duration_s=1.0, **common), produced=records, produce_s=1.0,
                  consumed=records, consume_s=1.0, ack=latency, e2e=latency,
                  phases=[Phase("run", payload, 2.0, 2 * payload)]),
        RunResult(RunSpec(FIXED_RATE, duration_s=1.0, rate_per_s=records / 2, **common),
                  produced=records // 2, produce_s=1.0, consumed=records // 2, consume_s=1.0,
                  ack=latency, e2e=latency, phases=[Phase("run", payload // 2, 1.0, payload)]),
        RunResult(RunSpec(BACKLOG, duration_s=1.0, records=records, **common), produced=records,
                  produce_s=1.0, consumed=records, consume_s=0.5,
                  phases=[Phase("produce", payload, 1.0, 3 * payload),
                          Phase("consume", payload, 0.5, 0)]),
    ]
    return [run_record(system, durability, r, LIMITS) for r in results]


def _doc(runs: list[dict[str, Any]]) -> dict[str, Any]:
    doc = {
        "date": "2026-11-26T10:00:00+00:00", "command": "python -m bench", "mode": "full",
        "elapsed_s": 600.0, "other_cpu_s": 60.0,
        "machine": {"cpus": 2, "memory_gib": 24.0, "platform": "Linux", "python": "3.11.7",
                    "logstore": "0.1.0", "accelerated": True, "load_before": [0.1, 0, 0],
                    "load_after": [0.5, 0, 0]},
        "settings": {"partitions": [1], "value_sizes": [100, 1024], "duration_s": 1.0,
                     "fixed_duration_s": 1.0, "backlog_max_bytes": 10**9,
                     "samples_per_s": 5000.0},
        "limits": json.loads(json.dumps(LIMITS.__dict__, default=lambda o: o.__dict__)),
        "systems": [{"name": n, "durability": d, "config": "cfg", "skipped": None}
                    for n, d in SYSTEMS] + [{"name": "redis-streams (everysec)",
                                             "durability": "os", "config": "",
                                             "skipped": "no server"}],
        "runs": runs,
    }
    return json.loads(json.dumps(doc))  # exactly what a saved file holds


def test_derived_figures() -> None:
    top, _, backlog = _runs("logstore-embedded (fsync)", "fsync", 200_000, 1024, 3.0)
    assert top["produce_mb_per_s"] == 200_000 * 1024 / 1e6
    assert top["fraction_of_disk"] == 200_000 * 1024 / 400e6
    produce, consume = backlog["phases"]
    assert produce["write_amplification"] == 3.0 and consume["write_amplification"] == 0.0
    assert produce["cpu_s_per_gb"] == 1.0 / (200_000 * 1024 / 1e9)
    assert backlog["consume_records_per_s"] == 400_000


def test_targets_compare_matched_durability_and_flag_misses() -> None:
    runs = (_runs("logstore-embedded (fsync)", "fsync", 600_000, 100, 3.0)
            + _runs("logstore-embedded (fsync)", "fsync", 200_000, 1024, 7.0)
            + _runs("redis-streams (always)", "fsync", 100_000, 100, 1.0)
            + _runs("nats-jetstream", "os", 50_000, 100, 1.0))
    rows = {(r["target"], r["subject"]): r for r in evaluate(_doc(runs))}
    redis = rows[("100 B produce >= 5x redis-streams",
                  "logstore-embedded (fsync) vs redis-streams (always), 1 partition(s)")]
    assert redis["measured"] == 6.0 and redis["met"] is True
    nats = rows[("100 B produce >= 10x nats-jetstream",
                 "logstore-embedded (os) vs nats-jetstream, 1 partition(s)")]
    assert nats["met"] is None  # logstore (os) did not run: no matched comparison
    disk = rows[("1 KiB produce >= 50% of sequential write bandwidth",
                 "logstore-embedded (fsync), 1 partition(s)")]
    assert disk["met"] is True and round(disk["measured"], 3) == 0.512
    ack = rows[("durable produce ack p99 <= 5 ms at 50% of max rate",
                "logstore-embedded (fsync), 1 partition(s), 1 KiB")]
    assert ack["measured"] == 7.0 and ack["met"] is False
    e2e = rows[("durable end-to-end p99 <= 10 ms at 50% of max rate",
                "logstore-embedded (fsync), 1 partition(s), 100 B")]
    assert e2e["met"] is True
    assert not any("redis-streams (everysec)" in subject for _, subject in rows)  # skipped


def test_broker_targets_compare_its_process_cpu_with_the_embedded_path() -> None:
    embedded = _runs("logstore-embedded (fsync)", "fsync", 600_000, 100, 3.0)
    broker = _runs("logstore-broker (confluent)", "fsync", 400_000, 100, 12.0)
    backlog = broker[2]
    payload = backlog["phases"][0]["payload_bytes"]
    # The broker process used 3 of the produce phase's 5 CPU seconds.
    backlog["phases"][0].update(cpu_s=5.0, server_cpu_s=3.0,
                                cpu_s_per_gb=5.0 / (payload / 1e9),
                                server_cpu_s_per_gb=3.0 / (payload / 1e9))
    doc = _doc(embedded + broker)
    doc["systems"].append({"name": "logstore-broker (confluent)", "durability": "fsync",
                           "config": "", "skipped": None})
    rows = {(r["target"], r["subject"]): r for r in evaluate(doc)}
    subject = "logstore-broker (confluent), 1 partition(s), 100 B"
    produce = rows[("broker produce >= 500,000 rec/s", subject)]
    assert produce["measured"] == 400_000 and produce["met"] is False
    consume = rows[("broker consume >= 1,000,000 rec/s (backlog)", subject)]
    assert consume["measured"] == 800_000 and consume["met"] is False
    versus = "logstore-broker (confluent) vs logstore-embedded (fsync), 1 partition(s), 100 B"
    cpu = rows[("broker CPU/GB (produce) <= 2x embedded", versus)]
    # Embedded: 1 CPU s for 600,000 records; broker: 3 CPU s for 400,000 records.
    assert round(cpu["measured"], 6) == 4.5 and cpu["met"] is False
    assert rows[("broker CPU/GB (consume) <= 2x embedded", versus)]["met"] is None  # no share
    ack = rows[("broker produce ack p99 <= 10 ms at 50% of max rate", subject)]
    assert ack["measured"] == 12.0 and ack["met"] is False
    # The embedded targets' 5 ms latency goal is not applied to the broker.
    assert not any(s.startswith("logstore-broker") and t.startswith("durable")
                   for t, s in rows)


def test_markdown_has_every_table_and_marks_failures_and_skips() -> None:
    runs = _runs("logstore-embedded (fsync)", "fsync", 600_000, 100, 3.0)
    failed = run_record("redis-streams (always)", "fsync", RunResult(
        RunSpec(MAX_RATE, partitions=1, value_bytes=100, duration_s=1.0),
        error="ConnectionError: refused"), LIMITS)
    text = markdown(_doc([*runs, failed]))
    for heading in ("## Machine limits", "## Systems", "## Throughput",
                    "## Latency at 50% of the max rate", "## Targets"):
        assert heading in text
    assert "| logstore-embedded (fsync) | 1 | 100 B | 600,000 | 60.0 | 15% |" in text
    assert "failed: ConnectionError: refused" in text
    assert "skipped: no server" in text
    assert "| 400 MB/s | 4,000 MB/s | 0.20 / 0.50 / 1.00 / 2.00 ms |" in text


def test_every_table_row_has_as_many_cells_as_its_header() -> None:
    runs = _runs("logstore-embedded (fsync)", "fsync", 600_000, 100, 3.0)
    failed = [run_record("redis-streams (always)", "fsync", RunResult(
        RunSpec(kind, partitions=1, value_bytes=100, duration_s=1.0,
                rate_per_s=1.0 if kind == FIXED_RATE else None,
                records=1 if kind == BACKLOG else None),
        error="boom"), LIMITS) for kind in (MAX_RATE, FIXED_RATE, BACKLOG)]
    tables: list[list[str]] = []
    for line in markdown(_doc([*runs, *failed])).splitlines():
        if line.startswith("|"):
            if not tables or not tables[-1]:
                tables.append([])
            tables[-1].append(line)
        elif tables and tables[-1]:
            tables.append([])
    for table in filter(None, tables):
        widths = {line.count(" | ") for line in table if not line.startswith("|--")}
        assert len(widths) == 1, table
