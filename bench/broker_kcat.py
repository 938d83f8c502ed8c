"""The broker's own capacity, measured with a C client: kcat (librdkafka) produces and consumes
through ``logstore serve``, so the figures are the broker's, not a Python client's.

``python -m bench`` measures the broker with confluent-kafka's Python client, which on this
machine tops out at about 300,000 records/s consuming 100 B records even from its local queue
(its ``consume()`` builds a Python ``Message`` per record): that caps the consume figure there
whatever the broker does. Here kcat writes the records from a file (``-P -l``, ``linger.ms=5``,
``acks=all``) and reads them back to the end (``-C -e``, printing offsets only), with the broker
a ``logstore serve`` subprocess over a data directory with the default ``fsync`` durability.

    python -m bench.broker_kcat                     # 2,000,000 records of 100 B, then 1 KiB
    python -m bench.broker_kcat --records 500000 --sizes 100

Reported per value size: records/s of each phase (kcat's start-up included), and the broker
process's CPU seconds (utime + stime) per GB of values. Consume is measured for
``read_uncommitted`` and ``read_committed`` (librdkafka's default). Prints a table and writes
JSON (default ``bench/results/broker-kcat-<date>.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a script: find the ``bench`` package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench

bench.drop_repository_root()

import logstore  # noqa: E402 - after drop_repository_root()

RESULTS = Path(__file__).parent / "results"
START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 600.0


def _cpu_s(pid: int) -> float:
    """A process's utime + stime, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_broker(data: Path, bootstrap: str, cwd: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", "from logstore.cli.main import main; main()",
         "--data-dir", str(data), "serve", "--listen", bootstrap, "--no-auto-create-topics"],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host, port = bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: logstore serve exited with {process.returncode}")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"bench: logstore serve did not listen within {START_TIMEOUT_S:.0f} s")


def measure(records: int, size: int, workdir: Path) -> dict[str, float]:
    """One value size: produce ``records`` with kcat, then consume them twice."""
    data = workdir / f"data-{size}"
    with logstore.open(data, maintenance_interval_ms=None) as log:
        log.create_topic("kcat", partitions=1)
    values = workdir / f"values-{size}.txt"
    line = b"v" * size + b"\n"  # kcat -l sends each line without its newline
    with values.open("wb") as f:
        f.write(line * records)
    value_bytes = records * size
    bootstrap = f"127.0.0.1:{_free_port()}"
    broker = _start_broker(data, bootstrap, workdir)
    result: dict[str, float] = {"value_bytes": size, "records": records}
    try:
        started, cpu = time.perf_counter(), _cpu_s(broker.pid)
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "kcat", "-p", "0", "-X", "linger.ms=5",
                        "-X", "acks=all", "-l", str(values)],
                       check=True, timeout=RUN_TIMEOUT_S, capture_output=True)
        elapsed, cpu = time.perf_counter() - started, _cpu_s(broker.pid) - cpu
        result["produce_records_per_s"] = records / elapsed
        result["produce_broker_cpu_s_per_gb"] = cpu / (value_bytes / 1e9)
        for isolation in ("read_uncommitted", "read_committed"):
            started, cpu = time.perf_counter(), _cpu_s(broker.pid)
            out = subprocess.run(
                ["kcat", "-C", "-b", bootstrap, "-t", "kcat", "-o", "beginning", "-e", "-q",
                 "-X", f"isolation.level={isolation}", "-f", "%o\n"],
                check=True, timeout=RUN_TIMEOUT_S, capture_output=True).stdout
            elapsed, cpu = time.perf_counter() - started, _cpu_s(broker.pid) - cpu
            got = out.count(b"\n")
            if got != records:
                raise SystemExit(f"bench: kcat read {got} records of {records} ({isolation})")
            result[f"consume_{isolation}_records_per_s"] = records / elapsed
            result[f"consume_{isolation}_broker_cpu_s_per_gb"] = cpu / (value_bytes / 1e9)
    finally:
        broker.terminate()
        broker.wait(timeout=30)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.broker_kcat", description=__doc__.split("\n\n")[0],
        epilog="example: python -m bench.broker_kcat --records 500000 --sizes 100")
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1024],
                        help="value sizes in bytes (default: 100 1024)")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file (default: bench/results/broker-kcat-DATE.json)")
    args = parser.parse_args(argv)
    if shutil.which("kcat") is None:
        print("bench: kcat is not installed (Debian: apt-get install kcat)", file=sys.stderr)
        return 2
    if args.records < 1 or any(size < 1 for size in args.sizes):
        print("bench: --records must be at least 1 and --sizes at least 1", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-broker-kcat-") as tmp:
        for size in args.sizes:
            rows.append(measure(args.records, size, Path(tmp)))
    print("| value | produce rec/s | consume rec/s (uncommitted) | consume rec/s (committed) "
          "| broker CPU s/GB produce | consume |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['value_bytes']:.0f} B | {row['produce_records_per_s']:,.0f} "
              f"| {row['consume_read_uncommitted_records_per_s']:,.0f} "
              f"| {row['consume_read_committed_records_per_s']:,.0f} "
              f"| {row['produce_broker_cpu_s_per_gb']:.1f} "
              f"| {row['consume_read_uncommitted_broker_cpu_s_per_gb']:.1f} |")
    path = args.json or RESULTS / f"broker-kcat-{dt.date.today().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows}, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
