"""Many partitions in one process at a small ``ulimit -n``: the storage engine's file budget.

One child process, with ``RLIMIT_NOFILE`` lowered to ``--ulimit`` (soft and hard), creates one
topic of ``--partitions`` partitions, produces ``--records`` records of 100 B to every partition
through ``log.producer()`` (one send per record, keyless, explicit partition), then consumes them
all with one consumer assigned every partition, and checks that every record arrived exactly
once. Reported: the time of each phase, the peak RSS, the most file descriptors the process held
(sampled from ``/proc/self/fd``), and how many idle files the budget closed.

    python -m bench.partitions                       # 10,000 partitions at ulimit -n 1024
    python -m bench.partitions --quick               # 2,000 partitions
    python -m bench.partitions --partitions 20000 --ulimit 1024 --records 5

Prints a table and writes JSON (default ``bench/results/partitions-<date>.json``).
Durability is the default (``fsync``) unless ``--durability os``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def child(args: argparse.Namespace) -> dict[str, object]:
    """The measured process (run with ``--child``)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.ulimit, args.ulimit))
    import logstore
    from logstore import TopicPartition

    peak_fds = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_fds
        while not stop.wait(0.05):
            peak_fds = max(peak_fds, len(os.listdir("/proc/self/fd")))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    value = b"v" * 100
    phases: dict[str, float] = {}
    with logstore.open(args.dir, maintenance_interval_ms=None) as log:
        started = time.perf_counter()
        log.create_topic("many", partitions=args.partitions,
                         config={"durability": args.durability})
        phases["create_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with log.producer() as producer:
            for _ in range(args.records):
                for partition in range(args.partitions):
                    producer.send("many", value=value, partition=partition)
            producer.flush()
        phases["produce_s"] = time.perf_counter() - started
        started = time.perf_counter()
        counts = [0] * args.partitions
        expected = args.records * args.partitions
        with log.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TopicPartition("many", p) for p in range(args.partitions)])
            received = 0
            while received < expected:
                records = consumer.poll(timeout_ms=5000)
                if not records:
                    raise SystemExit(f"consumer stalled at {received} of {expected} records")
                for record in records:
                    counts[record.partition] += 1
                received += len(records)
        phases["consume_s"] = time.perf_counter() - started
        if counts != [args.records] * args.partitions:
            raise SystemExit("records were lost or duplicated")
        evictions = log._manager.budget.evictions
        budget = log._manager.budget.max_open_files
    stop.set()
    sampler.join()
    return {
        **phases,
        "records": expected,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_fds": peak_fds,
        "file_budget": budget,
        "budget_evictions": evictions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument("--records", type=int, default=10, help="records per partition")
    parser.add_argument("--ulimit", type=int, default=1024)
    parser.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.partitions is None:
        args.partitions = 2_000 if args.quick else 10_000
    if args.child:
        print(json.dumps(child(args)))
        return 0
    with tempfile.TemporaryDirectory(prefix="logstore-partitions-") as tmp:
        command = [sys.executable, "-m", "bench.partitions", "--child", "--dir", tmp,
                   "--partitions", str(args.partitions), "--records", str(args.records),
                   "--ulimit", str(args.ulimit), "--durability", args.durability]
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              cwd=Path(__file__).parent.parent)
    if done.returncode != 0:
        print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.stdout,
              file=sys.stderr)
        return 1
    result = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
                   f"{platform.python_version()}",
        "partitions": args.partitions,
        "records_per_partition": args.records,
        "ulimit_n": args.ulimit,
        "durability": args.durability,
        **json.loads(done.stdout.strip().splitlines()[-1]),
    }
    out = args.out or RESULTS / f"partitions-{result['date']}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['partitions']:,} partitions x {result['records_per_partition']} records "
          f"at ulimit -n {result['ulimit_n']} (durability {result['durability']}):")
    for key in ("create_s", "produce_s", "consume_s"):
        print(f"  {key[:-2]:<8} {result[key]:8.1f} s")
    print(f"  peak RSS {result['peak_rss_mib']:8.0f} MiB; peak descriptors {result['peak_fds']} "
          f"(file budget {result['file_budget']}, {result['budget_evictions']:,} idle files "
          "closed)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
