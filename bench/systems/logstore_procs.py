"""logstore with the producer and the consumer in two separate OS processes sharing the data
directory (SQLite locking makes the appends safe; the consumer is woken across processes by
the partition's inotify doorbell). See ``logstore_worker`` for the processes' protocol.

This process creates and deletes the topics; the workers' CPU and disk figures are their own
measurements around their loops (interpreter start-up and imports excluded).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from array import array
from pathlib import Path
from typing import Any

import logstore
from bench import REPOSITORY_ROOT
from bench.driver import MODES, ConsumeOutcome, ProduceOutcome, collect
from bench.resources import Meter, Usage
from bench.systems.logstore_clients import describe_options
from bench.workloads import BACKLOG, Phase, RunResult, RunSpec

WORKER = "bench.systems.logstore_worker"
_topics = itertools.count()


class LogstoreProcesses:
    """:class:`bench.systems.System`: producer and consumer processes, one data directory."""

    def __init__(self, durability: str, base_dir: Path | None) -> None:
        self.durability = durability
        self.name = f"logstore-processes ({durability})"
        self.config = (
            f"topic durability={durability}; producer and consumer in two processes "
            f"(`python -m {WORKER}`) on one data directory; producer as embedded: "
            f"{describe_options()}"
        )
        self._base_dir = base_dir
        self._dir: Path | None = None
        self._log: logstore.Log | None = None

    def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="bench-logstore-procs-", dir=self._base_dir))
        self._log = logstore.open(self._dir / "data", maintenance_interval_ms=None)

    def stop(self) -> None:
        if self._log is not None:
            self._log.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def run(self, spec: RunSpec) -> RunResult:
        assert self._log is not None and self._dir is not None
        topic = f"bench-{next(_topics)}"
        self._log.create_topic(topic, spec.partitions, config={"durability": self.durability})
        try:
            return self._run(spec, topic)
        finally:
            self._log.delete_topic(topic)

    def _run(self, spec: RunSpec, topic: str) -> RunResult:
        assert self._dir is not None
        return run_workers(spec, topic, {"client": "embedded",
                                         "data_dir": str(self._dir / "data")}, self._dir)


def run_workers(spec: RunSpec, topic: str, client_job: dict[str, Any], work_dir: Path,
                server_pids: list[int] | None = None) -> RunResult:
    """One run with the producer and the consumer in two worker processes
    (``logstore_worker``); ``client_job`` says what they are clients of. CPU: what the workers
    measured of themselves plus the ``server_pids``' share, which is reported as the servers'."""
    timeout_s = max(10.0, 2 * spec.duration_s)
    common = {**client_job, "topic": topic, "spec": spec.__dict__, "timeout_s": timeout_s}
    producer_job = {**common, "role": "produce", "mode": MODES[spec.kind],
                    "samples_path": str(work_dir / f"{topic}.ack")}
    consumer_job = {**common, "role": "consume", "measure_e2e": spec.kind != BACKLOG,
                    "samples_path": str(work_dir / f"{topic}.e2e")}
    wait_s = 3 * spec.duration_s + 120
    producer_err = work_dir / f"{topic}.produce.err"
    consumer_err = work_dir / f"{topic}.consume.err"
    # The workers measure themselves; the meter gives the servers' CPU and the CPU others
    # used meanwhile.
    meter = Meter(server_pids)
    meter.start()
    if spec.kind == BACKLOG:
        produced = _finish(_spawn(producer_job, producer_err), producer_err, wait_s)
        produce_usage = meter.stop()
        meter.start()
        consumer = _spawn(consumer_job, consumer_err)
        _await_ready(consumer, consumer_err)
        _send_total(consumer, consumer_err, produced["records"])
        consumed = _finish(consumer, consumer_err, wait_s)
        consume_usage = meter.stop()
    else:
        consumer = _spawn(consumer_job, consumer_err)
        _await_ready(consumer, consumer_err)
        try:
            produced = _finish(_spawn(producer_job, producer_err), producer_err, wait_s)
        except BaseException:
            _kill(consumer)
            raise
        _send_total(consumer, consumer_err, produced["records"])
        consumed = _finish(consumer, consumer_err, wait_s)
        produce_usage = consume_usage = meter.stop()
    produce_outcome = ProduceOutcome(
        produced["records"], produced["started_ns"], produced["finished_ns"],
        _samples(producer_job["samples_path"]), produced["failed_acks"],
        produced["behind_schedule"])
    consume_outcome = ConsumeOutcome(
        consumed["records"], consumed["started_ns"], consumed["last_ns"],
        _samples(consumer_job["samples_path"]), consumed["timed_out"])
    payload_bytes = produced["records"] * spec.value_bytes
    if spec.kind == BACKLOG:
        phases = [_phase("produce", payload_bytes, [produced], produce_usage),
                  _phase("consume", payload_bytes, [consumed], consume_usage)]
    else:
        phases = [_phase("run", payload_bytes, [produced, consumed], produce_usage)]
    return collect(spec, produce_outcome, consume_outcome, phases)


def _phase(name: str, payload_bytes: int, workers: list[dict[str, Any]],
           usage: Usage) -> Phase:
    """The workers' own CPU and writes plus what the meter saw of the servers (and of this
    process, which only waits)."""
    server_cpu_s = usage.server_cpu_s or 0.0
    written = [w["disk_write_bytes"] for w in workers] + [usage.disk_write_bytes]
    return Phase(name, payload_bytes, sum(w["cpu_s"] for w in workers) + server_cpu_s,
                 None if None in written else sum(w for w in written if w is not None),
                 usage.other_cpu_s, usage.wall_s, usage.server_cpu_s)


def _spawn(job: dict[str, Any], stderr_path: Path) -> subprocess.Popen[str]:
    with open(stderr_path, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", WORKER, json.dumps(job)], cwd=REPOSITORY_ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )


def _await_ready(process: subprocess.Popen[str], stderr_path: Path) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        _kill(process)
        raise RuntimeError(f"the consumer process did not start: {_last_line(stderr_path)}")


def _send_total(process: subprocess.Popen[str], stderr_path: Path, total: int) -> None:
    assert process.stdin is not None
    try:
        process.stdin.write(f"total {total}\n")
        process.stdin.close()
    except BrokenPipeError:
        process.wait()
        raise RuntimeError(f"the consumer process exited early (exit {process.returncode}): "
                           f"{_last_line(stderr_path)}") from None


def _finish(process: subprocess.Popen[str], stderr_path: Path, timeout_s: float) -> dict[str, Any]:
    """Wait for a worker (killing it after ``timeout_s``) and return its JSON result."""
    assert process.stdout is not None
    timer = threading.Timer(timeout_s, process.kill)
    timer.start()
    try:
        out = process.stdout.read()
        process.wait()
    finally:
        timer.cancel()
    lines = out.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"a worker process failed (exit {process.returncode}): "
                           f"{_last_line(stderr_path)}")
    result: dict[str, Any] = json.loads(lines[-1])
    if result["logstore_file"] != logstore.__file__:
        raise RuntimeError(f"a worker process imported {result['logstore_file']}, not "
                           f"{logstore.__file__}")
    return result


def _last_line(path: Path) -> str:
    lines = path.read_text().strip().splitlines()
    return lines[-1] if lines else "no output"


def _kill(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()


def _samples(path: str) -> array:
    samples = array("q")
    with open(path, "rb") as f:
        samples.frombytes(f.read())
    return samples
