"""``python -m bench.tiering``: the options, the four parts in order, the JSON document
(``bench/results/tiering-<date>[-quick].json``) and the tables printed."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from logstore.backends.object_store import MiB

import bench.tiering
import logstore
from bench import REPOSITORY_ROOT
from bench.compaction import git_describe
from bench.extras import TEST_INSTALL, Need, require
from bench.systems.logstore_clients import CONSUMER_OPTIONS
from bench.tiering.latency import produce_latency
from bench.tiering.puts import DEFAULT_MULTIPART_BYTES, puts_rows
from bench.tiering.reads import FETCH_MAX_BYTES, memory_reads, produce_data, s3_reads
from bench.tiering.report import profile_text, tables

MODES: dict[str, dict[str, Any]] = {
    "full": {"mb": 256, "segment_bytes": 16 * MiB, "latency_seconds": 20.0, "latency_rounds": 2},
    "quick": {"mb": 32, "segment_bytes": 4 * MiB, "latency_seconds": 5.0, "latency_rounds": 1},
}


def source_digests() -> dict[str, str]:
    """Short SHA-256 of the sources this benchmark exercises (others edit them meanwhile: a
    result is tied to these)."""
    import hashlib

    root = REPOSITORY_ROOT
    files = sorted((root / "logstore" / "tier").glob("*.py"))
    files += [root / "logstore" / "log" / name for name in ("tiering.py", "read.py", "append.py")]
    files += [root / "logstore" / "embedded.py"]
    files += [root / "backends" / name for name in ("memory_store.py", "s3_store.py",
                                                    "object_store.py", "sql_manifest.py")]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
            for f in files if f.exists()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.tiering",
                                     description=bench.tiering.__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="32 MB, 4 MiB segments, 5 s latency runs (under 2 minutes)")
    parser.add_argument("--mb", type=int, help="MB of values to produce (256; --quick 32)")
    parser.add_argument("--value-bytes", type=int, default=1024)
    parser.add_argument("--batch-bytes", type=int, default=16384,
                        help="producer batch_size for the read data (16384, Kafka's default)")
    parser.add_argument("--segment-bytes", type=int,
                        help="segment.bytes of the read data (16 MiB; --quick 4 MiB)")
    parser.add_argument("--get-latency-ms", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="records/s (latency runs)")
    parser.add_argument("--latency-seconds", type=float, help="length of each latency run "
                        "(20; --quick 5)")
    parser.add_argument("--latency-rounds", type=int,
                        help="times each latency configuration runs, interleaved (2; --quick 1)")
    parser.add_argument("--latency-segment-bytes", type=int, default=256 * 1024)
    parser.add_argument("--tier-interval-ms", type=int, default=200)
    parser.add_argument("--slow-first-byte-ms", type=float, default=500.0)
    parser.add_argument("--slow-bytes-per-s", type=float, default=5_000_000.0)
    parser.add_argument("--moto-in-process", action="store_true",
                        help="run moto's server as a thread of this process (as the tests do)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("s3", "memory", "latency"),
                        help="parts to leave out")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one remote fetch pass per store (not timed runs)")
    parser.add_argument("--dir", type=Path, help="where data goes (default: the temp dir)")
    parser.add_argument("--out", type=Path, help="JSON output path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if "s3" not in args.skip:  # checked first: the S3 part comes after producing the data
        require([Need("moto.server", "for the S3 part (or --skip s3)")],
                program="python -m bench.tiering", install=TEST_INSTALL)
    from logstore.records.speedups import accelerated

    mode = "quick" if args.quick else "full"
    defaults = MODES[mode]
    args.mb = args.mb or defaults["mb"]
    args.segment_bytes = args.segment_bytes or defaults["segment_bytes"]
    args.latency_seconds = args.latency_seconds or defaults["latency_seconds"]
    args.latency_rounds = args.latency_rounds or defaults["latency_rounds"]
    started_all = time.monotonic()
    load_before = list(os.getloadavg())
    sources_before = source_digests()
    base = Path(tempfile.mkdtemp(prefix="logstore-tiering-bench-", dir=args.dir))
    print(f"data in {base}", file=sys.stderr, flush=True)
    doc: dict[str, Any] = {}
    try:
        print(f"producing {args.mb} MB ...", file=sys.stderr, flush=True)
        produced = produce_data(base / "data", args)
        print(f"  {produced['seconds']:.1f} s, {produced['payload_mb_per_s']:,.1f} MB/s, "
              f"{produced['sealed_segments']} segments", file=sys.stderr, flush=True)
        if "s3" in args.skip:
            s3: dict[str, Any] = {"skipped": "--skip s3"}
        else:
            print("S3 (moto): local reads, tiering, remote reads ...", file=sys.stderr,
                  flush=True)
            s3 = s3_reads(base, base / "data", produced, args)
        if "memory" in args.skip:
            memory: dict[str, Any] = {"skipped": "--skip memory"}
        else:
            print("memory store: tiering, remote reads with GET latency ...", file=sys.stderr,
                  flush=True)
            memory = memory_reads(base, base / "data", produced, args)
        shutil.rmtree(base / "data", ignore_errors=True)
        latency: list[dict[str, Any]] = []
        if "latency" not in args.skip:
            print("produce latency ...", file=sys.stderr, flush=True)
            latency = produce_latency(base, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    doc = {
        "benchmark": "tiering",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.tiering", *(argv or sys.argv[1:])]),
        "mode": mode,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} "
                   f"{platform.release()}",
        "accelerated": accelerated(),
        "logstore_path": str(Path(logstore.__file__).resolve().parent),
        "git": git_describe(),
        "commit": subprocess.run(["git", "-C", str(REPOSITORY_ROOT), "rev-parse", "HEAD"],
                                 capture_output=True, text=True, check=False).stdout.strip(),
        "elapsed_s": time.monotonic() - started_all,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "sources": sources_before,
        "sources_changed_during_run": sorted(
            k for k, v in source_digests().items() if sources_before.get(k) != v),
        "settings": {
            "mb": args.mb, "value_bytes": args.value_bytes, "batch_bytes": args.batch_bytes,
            "segment_bytes": args.segment_bytes, "fetch_max_bytes": FETCH_MAX_BYTES,
            "get_latency_ms": args.get_latency_ms, "rate": args.rate,
            "latency_seconds": args.latency_seconds, "latency_rounds": args.latency_rounds,
            "latency_segment_bytes": args.latency_segment_bytes,
            "tier_interval_ms": args.tier_interval_ms,
            "slow_store": {"first_byte_ms": args.slow_first_byte_ms,
                           "bytes_per_s": args.slow_bytes_per_s, "operations": "all"},
            "consumer_options": CONSUMER_OPTIONS,
            "multipart_threshold_bytes": DEFAULT_MULTIPART_BYTES,
            "part_size_bytes": DEFAULT_MULTIPART_BYTES,
        },
        "produce": produced,
        "s3": s3,
        "memory": memory,
        "latency": latency,
    }
    doc["puts"] = puts_rows(doc, args)
    out = args.out or REPOSITORY_ROOT / "bench" / "results" / (
        f"tiering-{dt.date.today().isoformat()}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print()
    print(tables(doc))
    for name, part in (("S3 over moto", s3), ("memory store, no latency", memory)):
        if "profile" in part:
            print()
            print(profile_text(name, part["profile"]))
    if doc["sources_changed_during_run"]:
        print(f"WARNING: these sources changed during the run: "
              f"{', '.join(doc['sources_changed_during_run'])}")
    print(f"\nwritten to {out}")
    return 0
