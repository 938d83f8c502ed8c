"""Micro-benchmark of the log cleaner's offset map (a script, not a test).

Prints puts/s and gets/s of the C and the pure-Python map (logstore.compaction.offset_map) for
``--keys`` distinct 16-byte keys (default 1,000,000) in a ``--memory-bytes`` table (default
32 MiB: 1,398,101 slots, capacity 1,258,291, so 1M keys end at 72% of the slots), one call per
key (``put``/``get``) and in batches of 1,000 (``put_many``/``get_many``). Each round starts
from an empty map (``clear()``), puts every key, then gets every key; each figure is the best
round.

    /work/venv/bin/python bench/offset_map_micro.py [--keys N] [--memory-bytes B] [--rounds N]
                                                    [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

from logstore.compaction.offset_map import COffsetMap, OffsetMap, PyOffsetMap

BATCH = 1_000
SECRET = bytes(range(16))


def _timed(work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def bench(make: Callable[[], OffsetMap], keys: list[bytes], rounds: int) -> dict[str, float]:
    """Best-of-``rounds`` rates (items/s) of one implementation."""
    m = make()
    offsets = list(range(len(keys)))
    batches = [(keys[i : i + BATCH], offsets[i : i + BATCH]) for i in range(0, len(keys), BATCH)]
    best = {"put": 0.0, "get": 0.0, "put_many": 0.0, "get_many": 0.0}

    def put_each() -> None:
        put = m.put
        for key, offset in zip(keys, offsets, strict=True):
            put(key, offset)

    def get_each() -> None:
        get = m.get
        for key in keys:
            get(key)

    def put_batches() -> None:
        for batch_keys, batch_offsets in batches:
            m.put_many(batch_keys, batch_offsets)

    def get_batches() -> None:
        for batch_keys, _ in batches:
            m.get_many(batch_keys)

    for _ in range(rounds):
        for put_name, put_work, get_name, get_work in (
            ("put", put_each, "get", get_each),
            ("put_many", put_batches, "get_many", get_batches),
        ):
            m.clear()
            best[put_name] = max(best[put_name], len(keys) / _timed(put_work))
            if len(m) != len(keys):
                raise SystemExit(f"only {len(m)} of {len(keys)} keys fit: raise --memory-bytes")
            best[get_name] = max(best[get_name], len(keys) / _timed(get_work))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--memory-bytes", type=int, default=32 << 20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    keys = [i.to_bytes(8, "big") + b"-bench-k" for i in range(args.keys)]
    implementations: list[tuple[str, Callable[[], OffsetMap]]] = [
        ("python", lambda: PyOffsetMap(args.memory_bytes, SECRET))
    ]
    if COffsetMap is not None:
        c_map = COffsetMap
        implementations.insert(0, ("c", lambda: c_map(args.memory_bytes, SECRET)))  # type: ignore[call-arg]
    else:
        print("the C offset map is not built (or LOGSTORE_PURE_PYTHON is set): Python only")

    print(
        f"python {platform.python_version()} on {platform.machine()}, {args.keys:,} keys of "
        f"16 B, {args.memory_bytes:,} B table, best of {args.rounds}"
    )
    results: dict[str, dict[str, float]] = {}
    for name, make in implementations:
        results[name] = rates = bench(make, keys, args.rounds)
        for op, rate in rates.items():
            unit = "puts/s" if op.startswith("put") else "gets/s"
            print(f"{name:<7} {op:<9} {rate:>14,.0f} {unit}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
