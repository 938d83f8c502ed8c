"""Part 4: durable produce acknowledgement latency with no remote storage, with remote storage
on a fast memory store, and on a slow one (every operation waits), with the background tierer
running. The fixed-rate loop is ``bench.driver.produce`` (coordinated omission corrected)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from logstore.backends.memory_store import MemoryObjectStore

import logstore
from bench.driver import produce as produce_at_fixed_rate
from bench.latency import summarize
from bench.payload import Payload
from bench.resources import Meter
from bench.systems import LATENCY
from bench.systems.logstore_clients import LogstoreProducer
from bench.tiering import TOPIC
from bench.workloads import FIXED_RATE, RunSpec

LATENCY_CASES: tuple[tuple[str, str | None], ...] = (
    ("no remote storage", None),
    ("remote storage, fast memory store", "fast"),
    ("remote storage, slow memory store", "slow"),
)


def produce_latency(base: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every configuration ``args.latency_rounds`` times, interleaved (ABCABC), so that a
    machine shared with other work hurts them alike."""
    spec = RunSpec(FIXED_RATE, partitions=1, value_bytes=100, duration_s=args.latency_seconds,
                   rate_per_s=args.rate, samples_per_s=max(5000.0, args.rate))
    out = []
    for round_ in range(1, args.latency_rounds + 1):
        for i, (label, kind) in enumerate(LATENCY_CASES):
            run = _latency_run(base / f"latency-{round_}-{i}", label, kind, spec, args)
            run["round"] = round_
            out.append(run)
            _print_latency_row(run)
    return out


def _latency_run(directory: Path, label: str, kind: str | None, spec: RunSpec,
                 args: argparse.Namespace) -> dict[str, Any]:
    store = None if kind is None else MemoryObjectStore()
    config = {"segment.bytes": str(args.latency_segment_bytes), "durability": "fsync"}
    if store is not None:
        config.update({"remote.storage.enable": "true", "local.retention.bytes": "0"})
    log = logstore.open(directory, object_store=store, maintenance_interval_ms=None,
                        tier_interval_ms=args.tier_interval_ms)
    try:
        log.create_topic(TOPIC, partitions=1, config=config)
        if store is not None and kind == "slow":
            # After open (whose store check would wait too): every operation, GETs too.
            store.set_latency(None, first_byte_ms=args.slow_first_byte_ms,
                              bytes_per_s=args.slow_bytes_per_s)
        producer = LogstoreProducer(log, TOPIC, LATENCY)
        meter = Meter()
        meter.start()
        try:
            outcome = produce_at_fixed_rate(producer, Payload(100), spec)
        finally:
            producer.close()
        usage = meter.stop()
        ack = summarize(outcome.ack_ns)
        run: dict[str, Any] = {
            "label": label, "records": outcome.records,
            "seconds": (outcome.finished_ns - outcome.started_ns) / 1e9,
            "failed_acks": outcome.failed_acks, "behind_schedule": outcome.behind_schedule,
            "ack": None if ack is None else ack.__dict__, "cpu_s": usage.cpu_s,
            "other_cpu_s": usage.other_cpu_s,
        }
        status = log.tier_status(TOPIC)[0]
        run.update({
            "log_end_offset": status.log_end_offset,
            "local_segments_at_end": status.local_segments,
            "segments_rolled": status.local_segments + status.remote_objects - 1,
        })
        if store is not None:
            stats = store.stats()
            run.update({
                "segments_tiered": stats.puts, "bytes_tiered": stats.bytes_put,
                "lag_segments_at_end": status.lag_segments,
                "remote_end_offset": status.remote_end_offset,
            })
    finally:
        close_started = time.perf_counter()
        log.close()
    run["close_s"] = time.perf_counter() - close_started
    shutil.rmtree(directory, ignore_errors=True)
    return run


def _print_latency_row(run: dict[str, Any]) -> None:
    """Progress on stderr: one line per run."""
    ack = run["ack"] or {}
    print(f"  {run['round']} {run['label']:36} p50 {ack.get('p50_ms', 0):7.2f} ms  p99 "
          f"{ack.get('p99_ms', 0):7.2f} ms  max {ack.get('max_ms', 0):8.2f} ms  "
          f"tiered {run.get('segments_tiered', '-')}", file=sys.stderr, flush=True)
