"""Embedded produce and consume throughput, next to this disk's sequential write bandwidth.

Runs every combination of value size (100 B, 1 KiB), partition count (1, 8) and topic
durability (fsync, os) in one process: produce N records through ``Producer.send`` (keyless,
sticky partitioner) and flush, then consume them all from the beginning with ``Consumer.poll``.
The disk's sequential write bandwidth (1 MiB writes, one fsync at the end) is measured in the
same run, so 1 KiB produce can be stated as a fraction of it.

    python bench/produce_consume.py                # full run (about a minute)
    python bench/produce_consume.py --quick        # fewer records
    python bench/produce_consume.py --out results.json

Prints a table and writes JSON (default ``bench/results/produce_consume-<date>.json``).
Consumption reads data the run just wrote, so it is mostly served from the page cache.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import logstore
from logstore.records.speedups import accelerated

VALUE_SIZES = (100, 1024)
PARTITIONS = (1, 8)
DURABILITIES = ("fsync", "os")
TARGET_PRODUCE_100B = 1_000_000
TARGET_CONSUME_100B = 2_000_000


def disk_write_bandwidth(directory: Path, total_bytes: int) -> float:
    """Bytes/s of sequential 1 MiB writes followed by one fsync."""
    chunk = os.urandom(1 << 20)
    path = directory / "bandwidth.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        started = time.perf_counter()
        for _ in range(total_bytes // len(chunk)):
            os.write(fd, chunk)
        os.fsync(fd)
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
        path.unlink()
    return total_bytes / elapsed


def run_case(directory: Path, *, value_size: int, partitions: int, durability: str,
             records: int) -> dict[str, object]:
    topic = f"bench-{value_size}-{partitions}-{durability}"
    value = os.urandom(value_size)
    with logstore.open(directory, maintenance_interval_ms=None) as log:
        log.create_topic(topic, partitions=partitions, config={"durability": durability})
        with log.producer(linger_ms=5, batch_size=1 << 20) as producer:
            started = time.perf_counter()
            send = producer.send
            for _ in range(records):
                send(topic, value)
            producer.flush()
            produce_s = time.perf_counter() - started
        consumer = log.consumer(auto_offset_reset="earliest", max_poll_records=100_000)
        consumer.assign([logstore.TopicPartition(topic, p) for p in range(partitions)])
        consumed = 0
        started = time.perf_counter()
        while consumed < records:
            batch = consumer.poll(timeout_ms=5000)
            if not batch:
                raise RuntimeError(f"consumer stalled at {consumed} of {records} records")
            consumed += len(batch)
        consume_s = time.perf_counter() - started
        consumer.close()
        disk_bytes = sum(p.size_bytes for p in log.describe_topic(topic).partitions)
        log.delete_topic(topic)
    payload = records * value_size
    return {
        "value_bytes": value_size,
        "partitions": partitions,
        "durability": durability,
        "records": records,
        "produce_records_per_s": records / produce_s,
        "produce_mb_per_s": payload / produce_s / 1e6,
        "consume_records_per_s": records / consume_s,
        "consume_mb_per_s": payload / consume_s / 1e6,
        "stored_bytes": disk_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer records per case")
    parser.add_argument("--records-100b", type=int, default=None)
    parser.add_argument("--records-1k", type=int, default=None)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)
    counts = {100: args.records_100b or (200_000 if args.quick else 1_000_000),
              1024: args.records_1k or (50_000 if args.quick else 250_000)}
    base = Path(tempfile.mkdtemp(prefix="logstore-bench-", dir=args.dir))
    try:
        bandwidth = disk_write_bandwidth(base, (256 if args.quick else 1024) << 20)
        cases = []
        for value_size in VALUE_SIZES:
            for partitions in PARTITIONS:
                for durability in DURABILITIES:
                    case = run_case(base / "data", value_size=value_size, partitions=partitions,
                                    durability=durability, records=counts[value_size])
                    case["produce_fraction_of_disk"] = (
                        case["produce_mb_per_s"] * 1e6 / bandwidth  # type: ignore[operator]
                    )
                    cases.append(case)
                    print(_row(case), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result = {
        "benchmark": "produce_consume",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python bench/produce_consume.py" + (" --quick" if args.quick else ""),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "accelerated": accelerated(),
        "disk_write_mb_per_s": bandwidth / 1e6,
        "targets": {"produce_100b_records_per_s": TARGET_PRODUCE_100B,
                    "consume_100b_records_per_s": TARGET_CONSUME_100B,
                    "produce_1k_fraction_of_disk": 0.5},
        "cases": cases,
    }
    out = args.out or Path(__file__).parent / "results" / (
        f"produce_consume-{dt.date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table(result))
    print(f"\nwritten to {out}")
    return 0


def _row(case: dict[str, object]) -> str:
    return (f"{case['value_bytes']:>5} B  {case['partitions']} part  {case['durability']:<5}  "
            f"produce {case['produce_records_per_s']:>11,.0f} rec/s "
            f"{case['produce_mb_per_s']:>7.1f} MB/s   consume "
            f"{case['consume_records_per_s']:>11,.0f} rec/s {case['consume_mb_per_s']:>7.1f} MB/s")


def table(result: dict[str, object]) -> str:
    """A markdown table of a result (also used for the README)."""
    lines = [
        (f"Disk sequential write: {result['disk_write_mb_per_s']:.0f} MB/s; "
        f"C accelerator: {'on' if result['accelerated'] else 'off'}; {result['machine']}, "
        f"Python {result['python']}."),
        "",
        ("| value | partitions | durability | produce rec/s | produce MB/s | % of disk "
        "| consume rec/s | consume MB/s |"),
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in result["cases"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {c['value_bytes']} B | {c['partitions']} | {c['durability']} "
            f"| {c['produce_records_per_s']:,.0f} | {c['produce_mb_per_s']:.1f} "
            f"| {100 * c['produce_fraction_of_disk']:.0f}% "
            f"| {c['consume_records_per_s']:,.0f} | {c['consume_mb_per_s']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
