"""Micro-benchmark of the record codec and the key partitioner (a script, not a test).

Prints records/s to build and to decode batches of 100-byte values with 8-byte keys (1,000 and
10,000 records per batch, codecs none and zstd), and murmur2 keys/s. Each figure is the best of
several rounds, so it measures the code rather than scheduler noise. The garbage collector
stays enabled (decoding allocates one tracked tuple per record, so it costs real time) unless
``--no-gc`` is given.

    /work/venv/bin/python bench/records_micro.py [--rounds N] [--no-gc] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable

from logstore.client.partitioner import murmur2
from logstore.records import BatchBuilder, Compression, decode_batch

VALUE_BYTES = 100
KEY_BYTES = 8
TIMESTAMP_MS = 1_700_000_000_000


def _best_rate(work: Callable[[], int], rounds: int, min_seconds: float = 0.2) -> float:
    """Items per second of the fastest round; each round repeats ``work`` for ``min_seconds``."""
    best = 0.0
    for _ in range(rounds):
        items = 0
        start = time.perf_counter()
        while True:
            items += work()
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, items / elapsed)
    return best


def _records(count: int) -> list[tuple[bytes, bytes]]:
    # Values are partly random so zstd has realistic work (neither incompressible nor trivial).
    return [
        (i.to_bytes(KEY_BYTES, "big"), os.urandom(VALUE_BYTES // 2) + b"x" * (VALUE_BYTES // 2))
        for i in range(count)
    ]


def bench_build(count: int, codec: Compression, rounds: int) -> float:
    records = _records(count)

    def work() -> int:
        builder = BatchBuilder(compression=codec)
        append = builder.append
        for key, value in records:
            append(TIMESTAMP_MS, key, value)
        builder.build()
        return count

    return _best_rate(work, rounds)


def bench_decode(count: int, codec: Compression, rounds: int) -> float:
    builder = BatchBuilder(compression=codec)
    for key, value in _records(count):
        builder.append(TIMESTAMP_MS, key, value)
    batch = builder.build()

    def work() -> int:
        return len(decode_batch(batch, topic="bench", partition=0)[1])

    return _best_rate(work, rounds)


def bench_murmur2(rounds: int) -> float:
    keys = [os.urandom(n) for n in (8, 16, 36, 64) for _ in range(2_500)]

    def work() -> int:
        for key in keys:
            murmur2(key)
        return len(keys)

    return _best_rate(work, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic GC")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.no_gc:
        gc.disable()

    results: dict[str, float] = {}
    print(
        f"python {platform.python_version()} on {platform.machine()}, best of {args.rounds}, "
        f"gc {'off' if args.no_gc else 'on'}"
    )
    for codec in (Compression.NONE, Compression.ZSTD):
        for count in (1_000, 10_000):
            for name, fn in (("build", bench_build), ("decode", bench_decode)):
                rate = fn(count, codec, args.rounds)
                label = f"{name} {codec.codec_name} x{count}"
                results[label] = rate
                print(f"{label:<24} {rate:>12,.0f} records/s")
    rate = bench_murmur2(args.rounds)
    results["murmur2"] = rate
    print(f"{'murmur2 (8-64 B keys)':<24} {rate:>12,.0f} keys/s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
