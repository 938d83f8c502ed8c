"""Benchmark logstore against its peers and against the machine's own limits.

Run from the repository root (``bench`` is not installed with logstore; the logstore measured
is the installed one), with the ``bench`` extra installed (``pip install '.[bench]'``: checked
before anything runs; ``--no-plots`` and ``--systems`` do without parts of it):

    python -m bench --quick      # a smoke run, under 2 minutes: short runs, 100 B and 1 KiB
    python -m bench              # the full run (about 25 minutes on 2 cores)

It measures the disk's limits, then runs every workload of ``bench.workloads`` on every system
(``--systems``), interleaving the systems cell by cell so they see the same machine, and
writes ``bench/results/<date>.json``, ``<date>.md`` and ``<date>-*.png`` (``--quick``:
``<date>-quick.*``; with ``--systems``, ``--sizes``, ``--partitions`` or durations:
``<date>[-quick]-partial.*``); a complete full run also writes ``bench/results/latest.md``.
``--from-json FILE`` renders the markdown and plots of a saved run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import drop_repository_root

# `python -m bench` from the repository root puts the root first on sys.path, where the
# repository's logstore/ folder would shadow the installed package (see drop_repository_root):
# drop it before importing logstore.
drop_repository_root()

import logstore  # noqa: E402 - after drop_repository_root()
from bench import REPOSITORY_ROOT, limits, report  # noqa: E402 - after drop_repository_root()
from bench.extras import BENCH_INSTALL, Need, require  # noqa: E402 - after drop_repository_root()
from bench.systems import System, SystemUnavailable  # noqa: E402 - after drop_repository_root()
from bench.systems.registry import (  # noqa: E402 - after drop_repository_root()
    CLIENT_LIBRARIES,
    NAMES,
    create,
)
from bench.workloads import (  # noqa: E402 - after drop_repository_root()
    BACKLOG,
    FIXED_RATE,
    MAX_RATE,
    PARTITION_COUNTS,
    VALUE_SIZES,
    Cell,
    RunResult,
    RunSpec,
    backlog_records_for,
    cells,
    fixed_rate_for,
    size_label,
)

MODES: dict[str, dict[str, Any]] = {
    "full": {"duration_s": 5.0, "fixed_duration_s": 10.0, "backlog_mb": 1000,
             "value_sizes": VALUE_SIZES, "partitions": PARTITION_COUNTS,
             "limits_mib": 1024, "fsync_seconds": 3.0},
    "quick": {"duration_s": 0.5, "fixed_duration_s": 1.0, "backlog_mb": 50,
              "value_sizes": (100, 1024), "partitions": PARTITION_COUNTS,
              "limits_mib": 256, "fsync_seconds": 1.0},
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Before anything runs: a missing library would otherwise end the run minutes in.
    require(_needs(args), program="python -m bench", install=BENCH_INSTALL)
    out_dir: Path = args.out_dir
    if args.from_json:
        try:
            doc = _load_saved_run(args.from_json)
        except SavedRunError as exc:
            print(f"error: --from-json {args.from_json}: {exc}", file=sys.stderr)
            return 2
        _render(doc, out_dir, args.from_json.stem, latest=False, plots=not args.no_plots)
        return 0
    mode = "quick" if args.quick else "full"
    settings, partial = _settings(mode, args)
    names = _system_names(args)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        _parser().error(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    base_dir = args.dir or Path(tempfile.gettempdir())
    started = time.monotonic()
    machine = _machine(args.label)
    accelerator = "on" if machine["accelerated"] else "off"
    print(f"logstore {machine['logstore']} (C accelerator {accelerator}), {machine['cpus']} CPUs, "
          f"load average {machine['load_before'][0]:.2f}", flush=True)
    limit = limits.measure(base_dir, size_bytes=settings["limits_mib"] << 20,
                           fsync_seconds=settings["fsync_seconds"], tool=args.limits_tool)
    print(f"limits ({limit.tool}): sequential write {limit.seq_write_fsync_bytes_per_s / 1e6:,.0f} "
          f"MB/s with fsync, {limit.seq_write_buffered_bytes_per_s / 1e6:,.0f} MB/s without; "
          f"fsync p50 {limit.fsync_latency.p50_ms:.2f} ms, p99 {limit.fsync_latency.p99_ms:.2f} ms",
          flush=True)
    systems, described = _start([
        create(name, base_dir, redis_url=args.redis_url, nats_url=args.nats_url)
        for name in names])
    runs = _run_all(systems, settings, args.samples_per_s, limit)
    machine["load_after"] = list(os.getloadavg())
    doc = {
        "benchmark": "logstore bench (issue 7)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *map(shlex.quote, argv or sys.argv[1:])]),
        "mode": mode,
        "elapsed_s": time.monotonic() - started,
        "machine": machine,
        "settings": {**settings, "backlog_max_bytes": settings["backlog_mb"] * 1_000_000,
                     "samples_per_s": args.samples_per_s,
                     "value_sizes": list(settings["value_sizes"]),
                     "partitions": list(settings["partitions"])},
        "limits": dataclasses.asdict(limit),
        "systems": described,
        "runs": runs,
        "other_cpu_s": sum(p["other_cpu_s"] or 0.0 for r in runs for p in r["phases"]),
    }
    stem = dt.date.today().isoformat() + ("-quick" if mode == "quick" else "")
    stem += "-partial" if partial else ""
    _render(doc, out_dir, stem, latest=mode == "full" and not partial, plots=not args.no_plots)
    return 0


class SavedRunError(Exception):
    """A ``--from-json`` file that is not a readable saved run (the message says why)."""


# What main() writes and the report reads at the top level of a saved run.
_SAVED_RUN_KEYS = ("date", "command", "mode", "elapsed_s", "machine", "settings", "limits",
                   "systems", "runs")


def _load_saved_run(path: Path) -> dict[str, Any]:
    """The results document saved by an earlier run; raises SavedRunError for a file that is
    missing, unreadable, not JSON, or not such a document (e.g. another benchmark's JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SavedRunError("no such file") from None
    except IsADirectoryError:
        raise SavedRunError("is a directory, not a results file") from None
    except OSError as exc:
        raise SavedRunError(f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SavedRunError("not a text file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SavedRunError(
            f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    absent = [key for key in _SAVED_RUN_KEYS if key not in doc] if isinstance(doc, dict) else []
    if not isinstance(doc, dict) or absent:
        lacking = f" (it has no {', '.join(map(repr, absent))})" if absent else ""
        raise SavedRunError(f"not the results of a python -m bench run{lacking}")
    return doc


def _system_names(args: argparse.Namespace) -> list[str]:
    return args.systems.split(",") if args.systems else list(NAMES)


def _needs(args: argparse.Namespace) -> list[Need]:
    """The optional libraries (the ``bench`` extra) this run will import."""
    needs = [] if args.no_plots else [Need("matplotlib", "for the plots (or --no-plots)")]
    if not args.from_json:
        users: dict[str, list[str]] = {}
        for name in _system_names(args):
            if name in CLIENT_LIBRARIES:
                users.setdefault(CLIENT_LIBRARIES[name], []).append(name)
        needs += [Need(module, f"for {', '.join(names)} (or --systems without them)")
                  for module, names in users.items()]
    return needs


def _settings(mode: str, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """The mode's settings with the command line's overrides, and whether there were any (a
    partial run does not replace the day's results or latest.md)."""
    settings = dict(MODES[mode])
    partial = bool(args.systems)
    for key in ("duration_s", "fixed_duration_s"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
            partial = True
    if args.sizes:
        settings["value_sizes"] = tuple(args.sizes)
        partial = True
    if args.partitions:
        settings["partitions"] = tuple(args.partitions)
        partial = True
    return settings, partial


def _run_all(systems: list[System], settings: dict[str, Any], samples_per_s: float,
             limit: limits.Limits) -> list[dict[str, Any]]:
    """Every cell on every system (cell by cell, so the systems see the same machine), then
    stop the systems."""
    runs: list[dict[str, Any]] = []
    try:
        plan = cells(settings["partitions"], settings["value_sizes"],
                     duration_s=settings["duration_s"],
                     fixed_duration_s=settings["fixed_duration_s"],
                     backlog_max_bytes=settings["backlog_mb"] * 1_000_000)
        for cell in plan:
            for system in systems:
                for result in _cell(system, cell, samples_per_s):
                    runs.append(report.run_record(system.name, system.durability, result, limit))
                    print(_progress(system.name, result), flush=True)
    finally:
        for system in systems:
            system.stop()
    return runs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< 2 minutes)")
    parser.add_argument("--systems", help=f"comma-separated, of: {', '.join(NAMES)} (default all)")
    parser.add_argument("--sizes", type=int, nargs="+", help="value sizes in bytes")
    parser.add_argument("--partitions", type=int, nargs="+", help="partition counts")
    parser.add_argument("--duration-s", type=float, help="length of max-rate runs")
    parser.add_argument("--fixed-duration-s", type=float, help="length of fixed-rate runs")
    parser.add_argument("--samples-per-s", type=float, default=5000.0,
                        help="records timed per second (default 5000)")
    parser.add_argument("--limits-tool", choices=("auto", "fio", "python"), default="auto",
                        help="how to measure the disk (auto: fio if on PATH)")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379",
                        help="the Redis server to use (and reconfigure, restoring it after) "
                             "when redis-server is not on PATH to start an own one")
    parser.add_argument("--dir", type=Path, help="where data goes (default: the temp dir)")
    parser.add_argument("--out-dir", type=Path, default=REPOSITORY_ROOT / "bench" / "results")
    parser.add_argument("--label", help="what was measured, for the report (e.g. a commit)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--from-json", type=Path, help="render a saved results file again")
    return parser


def _machine(label: str | None) -> dict[str, Any]:
    from logstore.records.speedups import accelerated

    package = Path(logstore.__file__).resolve().parent
    if package.is_relative_to(REPOSITORY_ROOT):
        described = subprocess.run(
            ["git", "-C", str(REPOSITORY_ROOT), "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=False).stdout.strip() or "unknown commit"
        source = f"this repository's working tree, {described}"
    else:
        source = f"installed in {package.parent}"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": os.cpu_count(),
        "memory_gib": memory / 2**30,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "logstore": logstore.__version__,
        "logstore_path": str(package),
        "logstore_source": source + (f"; {label}" if label else ""),
        "accelerated": accelerated(),
        "load_before": list(os.getloadavg()),
    }


def _start(candidates: list[System]) -> tuple[list[System], list[dict[str, Any]]]:
    """Start every system; a system that cannot run is skipped with one line."""
    started: list[System] = []
    described: list[dict[str, Any]] = []
    for system in candidates:
        try:
            system.start()
        except SystemUnavailable as exc:
            print(f"skipping {system.name}: {exc}", flush=True)
            described.append({"name": system.name, "durability": system.durability,
                              "config": "", "skipped": str(exc)})
            continue
        started.append(system)
        described.append({"name": system.name, "durability": system.durability,
                          "config": system.config, "skipped": None})
    return started, described


def _cell(system: System, cell: Cell, samples_per_s: float) -> list[RunResult]:
    """The three runs of one cell; a failed run is recorded with its error."""
    common = {"partitions": cell.partitions, "value_bytes": cell.value_bytes,
              "samples_per_s": samples_per_s}
    top = _attempt(system, RunSpec(MAX_RATE, duration_s=cell.duration_s, **common))
    results = [top]
    rate = fixed_rate_for(top)
    records = backlog_records_for(top, cell)
    if rate is not None:
        results.append(_attempt(system, RunSpec(FIXED_RATE, duration_s=cell.fixed_duration_s,
                                                rate_per_s=rate, **common)))
    if records is not None:
        results.append(_attempt(system, RunSpec(BACKLOG, duration_s=cell.duration_s,
                                                records=records, **common)))
    return results


def _attempt(system: System, spec: RunSpec) -> RunResult:
    try:
        return system.run(spec)
    except Exception as exc:  # noqa: BLE001 - one failed run must not end the benchmark
        traceback.print_exc()
        return RunResult(spec=spec, error=f"{type(exc).__name__}: {exc}")


def _progress(name: str, result: RunResult) -> str:
    spec = result.spec
    head = f"{name:28} {spec.kind:10} {spec.partitions:>2}p {size_label(spec.value_bytes):>6}"
    if result.error:
        return f"{head}  FAILED: {result.error}"
    produce = result.produced / result.produce_s if result.produce_s else 0.0
    consume = result.consumed / result.consume_s if result.consume_s else 0.0
    text = f"{head}  produce {produce:>10,.0f} rec/s  consume {consume:>10,.0f} rec/s"
    if spec.kind != BACKLOG and result.ack and result.e2e:
        text += f"  ack p99 {result.ack.p99_ms:8.2f} ms  e2e p99 {result.e2e.p99_ms:8.2f} ms"
    return text + (" (behind schedule)" if result.behind_schedule else "")


def _render(doc: dict[str, Any], out_dir: Path, stem: str, *, latest: bool,
            plots: bool) -> None:
    if plots:
        from bench.plots import write_all

        doc["plots"] = [str(p.name) for p in write_all(doc, out_dir, stem)]
    paths = report.write(doc, out_dir, stem, latest=latest)
    print()
    print(report.targets_table(doc))
    for path in [*paths, *(out_dir / p for p in doc.get("plots", []))]:
        print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
