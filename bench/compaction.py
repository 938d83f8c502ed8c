"""Log compaction (``Log.compact()``) throughput, memory and rounds, on one big partition.

Writes ``--records`` keyed records (keys drawn uniformly at random, seeded, from ``--keys``
distinct keys; ``--value-bytes`` values) into partition 0 of a topic with
``cleanup.policy=compact``, ``segment.bytes=--segment-bytes`` and ``durability=os``, then rolls
the active segment so every record is in a sealed, cleanable segment. The log is then copied,
and each copy is compacted ONCE by ``log.compact(topic, 0)`` in a fresh subprocess, so that
process's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) is the compaction's (plus the
interpreter, the imports and the open log, shown separately as the RSS before it starts):

* ``main``:  an offset map of ``--memory-bytes`` (default 64 MiB, the job's default: room for
  every key, so one round);
* ``spill``: a small map (``--spill-memory-bytes``, default room for 20,000 keys) that fills
  before the dirty section ends, so the cleaner works in several rounds.

How the records are written (the fastest honest path measured): batches of ``--batch-records``
records, each encoded in one C call (``logstore.records.builder.encode_records`` +
``build_batch``, the same bytes as ``encode_batch``), appended one batch per call with
``Log.append`` (every record validated, one SQLite commit per batch; topic ``durability=os``:
synchronous=NORMAL, no fsync per commit). The cleaner's own rewrites always fsync.

Each compacted copy is checked by reading it all back with ``Log.fetch`` + ``iter_records``
(CRCs verified): the surviving records are exactly the latest record of each distinct key
written, with the value written at that offset.

    python -m bench.compaction --quick            # 1,000,000 records, 16 MiB segments
    python -m bench.compaction                    # 10,000,000 records, 64 MiB segments
    python -m bench.compaction --quick --profile  # also cProfile'd runs (main and spill)

Run from the repository root. Prints a markdown table and writes JSON to
``bench/results/compaction-<date>[-quick].json`` (``--out`` to change). Data goes to a temp
dir (``--dir``), removed at the end unless ``--keep``. The cleaner reads data this run just
wrote, so reads are mostly served from the page cache. The table also says how much CPU the
rest of the machine used during each compaction (other processes, and the kernel writing back
dirty pages): on a shared machine, timings are only as good as that figure allows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from bench import REPOSITORY_ROOT, drop_repository_root
from bench.resources import machine_busy_cpu_s

drop_repository_root()

from logstore.compaction.offset_map import (  # noqa: E402 - after drop_repository_root()
    LOAD_FACTOR_DENOMINATOR,
    LOAD_FACTOR_NUMERATOR,
    SLOT_BYTES,
)

TOPIC = "compaction-bench"


def map_capacity(memory_bytes: int) -> int:
    """How many keys an offset map of ``memory_bytes`` holds (``OffsetMap.capacity``)."""
    return memory_bytes // SLOT_BYTES * LOAD_FACTOR_NUMERATOR // LOAD_FACTOR_DENOMINATOR


def map_bytes_for(keys: int) -> int:
    """The smallest offset-map size (``memory_bytes``) with room for ``keys`` keys."""
    slots = -(-keys * LOAD_FACTOR_DENOMINATOR // LOAD_FACTOR_NUMERATOR)
    while map_capacity(slots * SLOT_BYTES) < keys:
        slots += 1
    return slots * SLOT_BYTES


# --- producing -------------------------------------------------------------------------------


def key_of(index: int) -> bytes:
    return b"key-%08d" % index


def produce(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write the records; return the figures and ``last``: the latest offset of every key
    (-1 for keys never drawn)."""
    import logstore
    from logstore.records.builder import build_batch, encode_records

    if args.value_bytes < 8:
        raise SystemExit("--value-bytes must be at least 8 (the value starts with its offset)")
    keys = [key_of(i) for i in range(args.keys)]
    population = range(args.keys)
    last = array("q", [-1]) * args.keys
    filler = os.urandom(4096 + args.value_bytes)
    pads = [filler[i * 61:i * 61 + args.value_bytes - 8] for i in range(64)]
    rng = random.Random(args.seed)
    choices = rng.choices
    config = {"cleanup.policy": "compact", "segment.bytes": str(args.segment_bytes),
              "durability": "os", "min.cleanable.dirty.ratio": "0.5"}
    with logstore.open(directory, maintenance_interval_ms=None) as log:
        log.create_topic(TOPIC, partitions=1, config=config)
        append = log.append
        started = time.perf_counter()
        offset = 0
        next_report = started + 10
        while offset < args.records:
            count = min(args.batch_records, args.records - offset)
            drawn = choices(population, k=count)
            now = int(time.time() * 1000)
            # value: its own offset (checked after compaction), then random filler
            records = [(now, keys[k], (offset + j).to_bytes(8, "big") + pads[j & 63], ())
                       for j, k in enumerate(drawn)]
            section, max_ts = encode_records(records, now)
            result = append(TOPIC, 0, build_batch(section, count, base_timestamp_ms=now,
                                                  max_timestamp_ms=max_ts))
            if result.base_offset != offset:
                raise RuntimeError(f"batch appended at {result.base_offset}, expected {offset}")
            for j, k in enumerate(drawn):
                last[k] = offset + j
            offset += count
            if time.perf_counter() >= next_report:
                next_report += 10
                print(f"  produced {offset:,} of {args.records:,}", file=sys.stderr, flush=True)
        produce_s = time.perf_counter() - started
        started = time.perf_counter()
        log.partition_log(TOPIC, 0).roll()
        roll_s = time.perf_counter() - started
        described = log.describe_topic(TOPIC).partitions[0]
    return {
        "records": args.records,
        "seconds": produce_s,
        "roll_seconds": roll_s,
        "records_per_s": args.records / produce_s,
        "payload_mb_per_s": args.records * (12 + args.value_bytes) / produce_s / 1e6,
        "partition_bytes": described.size_bytes,
        "segments": described.segment_count,
        "sealed_segments": described.segment_count - 1,
        "distinct_keys": sum(1 for x in last if x >= 0),
        "last": last,
    }


# --- compacting (in a child process) ---------------------------------------------------------


def _vm_rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _write_bytes() -> int | None:
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    counters = dict(line.split(": ") for line in text.splitlines() if ": " in line)
    return int(counters["write_bytes"]) - int(counters["cancelled_write_bytes"])


def child_main(args: argparse.Namespace) -> int:
    """Compact ``args.child`` once; print one JSON line of figures on stdout."""
    import logstore.compaction.job

    import logstore

    log = logstore.open(args.child, maintenance_interval_ms=None)
    before_desc = log.describe_topic(TOPIC).partitions[0]
    read = {"bytes": 0, "total": 0}
    next_print = [time.monotonic() + 10]

    def progress(done: int, total: int) -> None:
        read["bytes"], read["total"] = done, total
        if time.monotonic() >= next_print[0]:
            next_print[0] += 10
            print(f"  compaction read {done / 1e6:,.0f} MB (first-round estimate "
                  f"{total / 1e6:,.0f} MB)", file=sys.stderr, flush=True)

    rss_before = _vm_rss_bytes()
    maxrss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    written0 = _write_bytes()
    profiler = None
    if args.profile_out:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    report = log.compact(TOPIC, 0, memory_bytes=args.memory_bytes, progress=progress)
    wall_s = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile_out)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    written1 = _write_bytes()
    after_desc = log.describe_topic(TOPIC).partitions[0]
    log.close()
    partition = report.partitions[0]
    out = {
        "memory_bytes": args.memory_bytes,
        "map_capacity_keys": map_capacity(args.memory_bytes),
        "wall_s": wall_s,
        "cpu_user_s": usage1.ru_utime - usage0.ru_utime,
        "cpu_system_s": usage1.ru_stime - usage0.ru_stime,
        "rss_before_bytes": rss_before,
        "maxrss_before_bytes": maxrss_before_kib * 1024,
        "peak_rss_bytes": usage1.ru_maxrss * 1024,  # Linux: KiB
        "disk_write_bytes": (None if written0 is None or written1 is None
                             else written1 - written0),
        "cleaner_read_bytes": read["bytes"],
        "partition_bytes_before": before_desc.size_bytes,
        "partition_bytes_after": after_desc.size_bytes,
        "segments_before": before_desc.segment_count,
        "segments_after": after_desc.segment_count,
        "report": partition.to_dict(),
    }
    print(json.dumps(out), flush=True)
    return 0


def run_compaction(directory: Path, memory_bytes: int, *, profile_out: Path | None = None,
                   ) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.compaction", "--child", str(directory),
               "--memory-bytes", str(memory_bytes)]
    if profile_out is not None:
        command += ["--profile-out", str(profile_out)]
    busy0, times0 = machine_busy_cpu_s(), os.times()
    done = subprocess.run(command, cwd=REPOSITORY_ROOT, stdout=subprocess.PIPE, text=True,
                          check=False)
    busy1, times1 = machine_busy_cpu_s(), os.times()
    if done.returncode != 0:
        raise RuntimeError(f"the compaction subprocess failed ({done.returncode}): {command}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    child_cpu = (times1.children_user + times1.children_system
                 - times0.children_user - times0.children_system)
    # CPU the rest of the machine used meanwhile (a shared machine makes timings noisy).
    result["other_cpu_s"] = (None if busy0 is None or busy1 is None
                             else max(0.0, busy1 - busy0 - child_cpu))
    result["child_elapsed_s"] = times1.elapsed - times0.elapsed
    return result


# --- checking --------------------------------------------------------------------------------


def verify(directory: Path, last: array, records: int, value_bytes: int) -> dict[str, Any]:
    """Read the compacted partition back: the survivors must be exactly the latest record of
    every key written, each with the value written at its offset."""
    import logstore
    from logstore.records.reader import iter_records

    started = time.perf_counter()
    expected = sum(1 for x in last if x >= 0)
    survivors = 0
    problems: list[str] = []
    seen = bytearray(len(last))
    with logstore.open(directory, maintenance_interval_ms=None) as log:
        position = 0
        end = log.describe_topic(TOPIC).partitions[0].log_end_offset
        if end != records:
            problems.append(f"log end offset {end}, expected {records}")
        while position < end:
            fetched = log.fetch(TOPIC, 0, position, max_bytes=4 << 20)
            moved = False
            for header, batch in iter_records(fetched.records, min_offset=position):
                for record in batch:
                    survivors += 1
                    index = int(record.key[4:])
                    if last[index] != record.offset:
                        problems.append(f"offset {record.offset}: key {record.key!r} is not its "
                                        f"key's latest (that is {last[index]})")
                    elif seen[index]:
                        problems.append(f"key {record.key!r} survives twice")
                    elif (record.value is None or len(record.value) != value_bytes
                          or int.from_bytes(record.value[:8], "big") != record.offset):
                        problems.append(f"offset {record.offset}: wrong value")
                    seen[index] = 1
                if header.last_offset + 1 > position:
                    position = header.last_offset + 1
                    moved = True
            if not moved:
                break
            if len(problems) > 10:
                break
    if survivors != expected and len(problems) <= 10:
        problems.append(f"{survivors:,} records survive, expected {expected:,} (distinct keys)")
    return {"ok": not problems, "survivors": survivors, "expected": expected,
            "problems": problems[:10], "seconds": time.perf_counter() - started}


# --- profile ---------------------------------------------------------------------------------


def profile_summary(path: Path, top: int = 20) -> dict[str, Any]:
    """The ``top`` functions of a cProfile dump by own time and by cumulative time."""
    import pstats

    entries = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, nc, tottime, cumtime, _) in entries.items():
        short = filename
        for marker in (f"{REPOSITORY_ROOT}/", "site-packages/", "/lib/python3"):
            if marker in short:
                short = short.split(marker, 1)[1]
        label = name if filename == "~" else f"{short}:{line}({name})"
        rows.append({"function": label, "calls": nc,
                     "tottime_s": tottime, "cumtime_s": cumtime})
    total = max((r["cumtime_s"] for r in rows), default=0.0)
    return {
        "total_s": total,
        "by_tottime": sorted(rows, key=lambda r: -r["tottime_s"])[:top],
        "by_cumtime": sorted(rows, key=lambda r: -r["cumtime_s"])[:top],
    }


def source_digests() -> dict[str, str]:
    """Short SHA-256 of the cleaner's sources as measured (the working tree may be changing
    under the benchmark: a result is tied to these)."""
    import hashlib

    root = REPOSITORY_ROOT
    files = sorted((root / "compaction").glob("*.py")) + sorted((root / "compaction").glob("*.c"))
    files += [root / "logstore" / "log" / name for name in ("rewrite.py", "cleanable.py",
                                                           "segment.py", "append.py")]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
            for f in files if f.exists()}


def git_describe() -> str:
    done = subprocess.run(["git", "-C", str(REPOSITORY_ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


# --- output ----------------------------------------------------------------------------------


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def table(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    p = doc["produce"]
    lines = [
        (f"{s['records']:,} records of {s['keys']:,} keys (uniform random, seed {s['seed']}), "
        f"{s['value_bytes']} B values, {s['batch_records']:,} records per batch, "
        f"segment.bytes {s['segment_bytes']:,}; {doc['machine']}, Python {doc['python']}, "
        f"C accelerator {'on' if doc['accelerated'] else 'off'}, C offset map "
        f"{'on' if doc['c_offset_map'] else 'off'}; load average {doc['load_before'][0]:.2f} "
        f"before, {doc['load_after'][0]:.2f} after."),
        (f"Produce (encode_records + Log.append, durability=os): {p['seconds']:,.1f} s, "
        f"{p['records_per_s']:,.0f} records/s; {p['partition_bytes'] / 1e6:,.1f} MB on disk in "
        f"{p['sealed_segments']} sealed segments; {p['distinct_keys']:,} distinct keys."),
        "",
        "| | " + " | ".join(r["name"] for r in doc["runs"]) + " |",
        "|---|" + "---:|" * len(doc["runs"]),
    ]

    def row(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in doc["runs"]) + " |")

    row("offset map (memory_bytes / keys it holds)",
        lambda r: f"{r['memory_bytes']:,} B / {r['map_capacity_keys']:,}")
    row("input: partition on disk", lambda r: _mb(r["partition_bytes_before"]))
    row("output: partition on disk", lambda r: _mb(r["partition_bytes_after"]))
    row("report bytes_before / bytes_after (summed over rounds)",
        lambda r: f"{_mb(r['report']['bytes_before'])} / {_mb(r['report']['bytes_after'])}")
    row("segments before / after", lambda r: f"{r['segments_before']} / {r['segments_after']}")
    row("records removed", lambda r: f"{r['report']['records_removed']:,}")
    row("records surviving (verified)",
        lambda r: f"{r['verify']['survivors']:,} {'OK' if r['verify']['ok'] else 'FAILED'}")
    row("rounds", lambda r: f"{r['report']['rounds']:,}")
    row("wall time", lambda r: f"{r['wall_s']:,.1f} s")
    row("CPU user + system", lambda r: f"{r['cpu_user_s']:,.1f} + {r['cpu_system_s']:,.1f} s")
    row("throughput, input MB/s", lambda r: f"{r['input_mb_per_s']:,.1f}")
    row("throughput, input records/s", lambda r: f"{r['records_per_s']:,.0f}")
    row("other CPU busy on the machine meanwhile", lambda r: "-" if r.get("other_cpu_s") is None
        else f"{r['other_cpu_s']:,.1f} s in {r['child_elapsed_s']:,.1f} s")
    row("bytes read by the cleaner (map + filter passes)", lambda r: _mb(r["cleaner_read_bytes"]))
    row("bytes written to disk (/proc io)", lambda r: _mb(r["disk_write_bytes"]))
    row("RSS before compaction (VmRSS)", lambda r: _mib(r["rss_before_bytes"]))
    row("peak RSS (ru_maxrss)", lambda r: _mib(r["peak_rss_bytes"]))
    row("peak RSS - RSS before", lambda r: _mib(r["peak_rss_bytes"] - r["rss_before_bytes"])
        if r["rss_before_bytes"] is not None else "-")
    return "\n".join(lines)


def profile_table(name: str, summary: dict[str, Any], top: int = 12) -> str:
    lines = [(f"cProfile of the {name} compaction ({summary['rounds']} rounds; "
             f"{summary['total_s']:.1f} s under the profiler):"), ""]
    for key, label in (("by_cumtime", "cumulative"), ("by_tottime", "own (tottime)")):
        lines += [f"| top by {label} | calls | own s | cumulative s |", "|---|---:|---:|---:|"]
        for r in summary[key][:top]:
            lines.append(f"| `{r['function']}` | {r['calls']:,} | {r['tottime_s']:.2f} "
                         f"| {r['cumtime_s']:.2f} |")
        lines.append("")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.compaction",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1,000,000 records and 16 MiB segments (unless given)")
    parser.add_argument("--records", type=int, help="records to write (default 10,000,000)")
    parser.add_argument("--keys", type=int, default=100_000, help="distinct keys (100,000)")
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--batch-records", type=int, default=1000, help="records per batch")
    parser.add_argument("--segment-bytes", type=int,
                        help="segment.bytes (default 64 MiB; --quick: 16 MiB)")
    parser.add_argument("--memory-bytes", type=int, default=None,
                        help="offset map of the main run (default 64 MiB, the job's default)")
    parser.add_argument("--spill-memory-bytes", type=int, default=None,
                        help="offset map of the spill run (default: room for 20,000 keys); "
                             "0 skips the spill run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true",
                        help="also compact extra copies (main and spill) under cProfile and "
                             "print the top functions (not the timed runs)")
    parser.add_argument("--dir", type=Path, help="where data goes (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--out", type=Path, help="JSON output path")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from logstore.compaction.job import DEFAULT_MEMORY_BYTES

    if args.memory_bytes is None:
        args.memory_bytes = DEFAULT_MEMORY_BYTES
    if args.child is not None:
        return child_main(args)
    from logstore.compaction.offset_map import COffsetMap

    from logstore.records.speedups import accelerated

    args.records = args.records or (1_000_000 if args.quick else 10_000_000)
    args.segment_bytes = args.segment_bytes or ((16 if args.quick else 64) << 20)
    if args.spill_memory_bytes is None:
        args.spill_memory_bytes = map_bytes_for(20_000)
    started_all = time.monotonic()
    sources_before = source_digests()
    load_before = list(os.getloadavg())
    base = Path(tempfile.mkdtemp(prefix="logstore-compaction-bench-", dir=args.dir))
    print(f"data in {base}", file=sys.stderr, flush=True)
    try:
        print(f"producing {args.records:,} records ...", file=sys.stderr, flush=True)
        produced = produce(base / "main", args)
        last = produced.pop("last")
        print(f"  {produced['seconds']:.1f} s, {produced['records_per_s']:,.0f} records/s, "
              f"{produced['partition_bytes'] / 1e6:,.1f} MB, {produced['sealed_segments']} "
              f"sealed segments", file=sys.stderr, flush=True)
        cases: list[tuple[str, int, bool]] = [("main", args.memory_bytes, False)]
        if args.spill_memory_bytes:
            cases.append(("spill", args.spill_memory_bytes, False))
        if args.profile:
            cases += [(f"{name}-profile", memory_bytes, True)
                      for name, memory_bytes, _ in list(cases)]
        started = time.perf_counter()
        for name, _, _ in cases[1:]:
            shutil.copytree(base / "main", base / name)
        copy_s = time.perf_counter() - started
        runs = []
        profiles: dict[str, Any] = {}
        for name, memory_bytes, profiled in cases:
            print(f"compacting {name} (memory_bytes {memory_bytes:,}, "
                  f"{map_capacity(memory_bytes):,} keys) ...", file=sys.stderr, flush=True)
            prof_path = base / f"{name}.prof" if profiled else None
            result = run_compaction(base / name, memory_bytes, profile_out=prof_path)
            result["name"] = name
            result["input_mb_per_s"] = result["partition_bytes_before"] / result["wall_s"] / 1e6
            result["records_per_s"] = args.records / result["wall_s"]
            result["verify"] = verify(base / name, last, args.records, args.value_bytes)
            if result["report"]["status"] != "cleaned":
                result["verify"]["ok"] = False
                result["verify"]["problems"].insert(0, (
                    f"status {result['report']['status']}: {result['report']['reason']}"))
            print(f"  {result['wall_s']:.1f} s, {result['report']['rounds']} rounds, "
                  f"peak RSS {result['peak_rss_bytes'] / 2**20:,.0f} MiB, verified: "
                  f"{result['verify']['ok']}", file=sys.stderr, flush=True)
            if profiled:
                profile = profile_summary(prof_path)  # type: ignore[arg-type]
                profile["wall_s"] = result["wall_s"]
                profile["rounds"] = result["report"]["rounds"]
                profile["verified"] = result["verify"]["ok"]
                profiles[name.removesuffix("-profile")] = profile
            else:
                runs.append(result)
            if name != "main" and not args.keep:
                shutil.rmtree(base / name, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}", file=sys.stderr)
    doc = {
        "benchmark": "compaction",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.compaction", *(argv or sys.argv[1:])]),
        "mode": "quick" if args.quick else "full",
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "accelerated": accelerated(),
        "c_offset_map": COffsetMap is not None,
        "elapsed_s": time.monotonic() - started_all,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "git": git_describe(),
        "sources": sources_before,
        "sources_changed_during_run": sorted(
            k for k, v in source_digests().items() if sources_before.get(k) != v),
        "settings": {
            "records": args.records, "keys": args.keys, "value_bytes": args.value_bytes,
            "batch_records": args.batch_records, "segment_bytes": args.segment_bytes,
            "seed": args.seed, "durability": "os",
            "produce_path": "encode_records + build_batch, Log.append per batch",
            "min_cleanable_dirty_ratio": 0.5,
        },
        "produce": produced,
        "copy_s": copy_s,
        "runs": runs,
        "profiles": profiles,
    }
    out = args.out or REPOSITORY_ROOT / "bench" / "results" / (
        f"compaction-{dt.date.today().isoformat()}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(table(doc))
    for name, profile in profiles.items():
        print()
        print(profile_table(name, profile))
    if doc["sources_changed_during_run"]:
        print(f"WARNING: these sources changed during the run: "
              f"{', '.join(doc['sources_changed_during_run'])}")
    failed = [r["name"] for r in runs if not r["verify"]["ok"]]
    for r in runs:
        for problem in r["verify"]["problems"]:
            print(f"{r['name']}: {problem}")
    print(f"\nwritten to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
