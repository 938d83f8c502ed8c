"""Transactional produce throughput next to plain produce, in one run.

For transactions of 1, 100 and 10,000 records (100-byte values, one partition, durability
fsync by default), measures records/s and transactions/s of ``with producer.transaction():``
loops, and compares them with idempotent and non-idempotent produce of the same records.
A transaction costs a coordinator round trip at its start (AddPartitionsToTxn, one metadata
write), a flush, and the commit (three metadata writes and one marker append per partition).

    python bench/transactions.py
    python bench/transactions.py --durability os --out results.json
    python bench/transactions.py --metadata-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Prints a table and writes JSON (default bench/results/transactions-<date>.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import logstore

VALUE = os.urandom(100)
CASES = ((1, 1_000), (100, 50_000), (10_000, 200_000))  # (records per transaction, total)


def plain(log: logstore.Log, topic: str, records: int, *, idempotent: bool) -> float:
    with log.producer(linger_ms=5, enable_idempotence=idempotent) as producer:
        started = time.perf_counter()
        for _ in range(records):
            producer.send(topic, VALUE, partition=0)
        producer.flush()
        return time.perf_counter() - started


def transactional(log: logstore.Log, topic: str, per_txn: int, records: int) -> float:
    with log.producer(transactional_id=f"bench-{per_txn}", linger_ms=5) as producer:
        producer.init_transactions()
        started = time.perf_counter()
        for _ in range(records // per_txn):
            with producer.transaction():
                for _ in range(per_txn):
                    producer.send(topic, VALUE, partition=0)
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    parser.add_argument("--metadata-url", default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply record counts")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="logstore-txn-bench-"))
    rows = []
    try:
        with logstore.open(base, metadata_url=args.metadata_url,
                           maintenance_interval_ms=None) as log:
            def topic(name: str) -> str:
                log.create_topic(name, config={"durability": args.durability})
                return name

            total = int(200_000 * args.scale)
            for label, idempotent in (("plain", False), ("idempotent", True)):
                seconds = plain(log, topic(label), total, idempotent=idempotent)
                rows.append({"case": label, "records_per_txn": None, "records": total,
                             "seconds": seconds, "records_per_s": total / seconds,
                             "txns_per_s": None})
            for per_txn, records in CASES:
                records = max(per_txn, int(records * args.scale))
                seconds = transactional(log, topic(f"txn-{per_txn}"), per_txn, records)
                rows.append({"case": f"transactions of {per_txn}", "records_per_txn": per_txn,
                             "records": records, "seconds": seconds,
                             "records_per_s": records / seconds,
                             "txns_per_s": records / per_txn / seconds})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    baseline = rows[1]["records_per_s"]
    print("| case | records | records/s | transactions/s | vs idempotent |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        txns = f"{row['txns_per_s']:,.0f}" if row["txns_per_s"] else "-"
        print(f"| {row['case']} | {row['records']:,} | {row['records_per_s']:,.0f} | {txns} | "
              f"{row['records_per_s'] / baseline:.2f}x |")
    out = args.out or Path(__file__).parent / "results" / (
        f"transactions-{dt.date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "transactions",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/transactions.py", *sys.argv[1:]]),
        "durability": args.durability,
        "metadata": "postgresql" if args.metadata_url else "sqlite",
        "value_bytes": len(VALUE),
        "rows": rows,
    }, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
