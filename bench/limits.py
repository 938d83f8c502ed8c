"""The machine's own limits, measured in the benchmark's directory in the same run.

* Sequential write bandwidth with fsync: 1 MiB writes of ``size`` bytes to a new file and one
  fsync at the end, timed to the end of the fsync (what the device sustains; the limit the
  systems' produce bandwidth is compared with).
* Sequential write bandwidth without fsync: the same writes without the fsync (what the page
  cache absorbs; an upper bound for ``durability=os`` bursts, not a sustained rate).
* fsync latency: 4 KiB appends to a file, each followed by fdatasync (the floor of a durable
  acknowledgement; SQLite and Redis use fdatasync on Linux).

With ``fio`` on PATH (``tool="auto"`` or ``"fio"``) the three are fio jobs (psync/sync engine,
buffered I/O, ``end_fsync=1``, ``fdatasync=1``); otherwise (or with ``tool="python"``) a
Python equivalent with ``os.write``/``os.fsync``/``os.fdatasync``. The result says which.

Each bandwidth is measured ``repeats`` times (alternating) and the median is the limit: on a
virtual disk the same job has been seen to run at 0.5 and at 2.9 GB/s a minute apart, as the
host's cache absorbs or flushes. Every sample is kept in the result.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.latency import LatencySummary, summarize

CHUNK_BYTES = 1 << 20
SYNC_WRITE_BYTES = 4096


@dataclass(frozen=True)
class Limits:
    """The measured limits (bandwidths in bytes/s)."""

    tool: str
    directory: str
    size_bytes: int
    seq_write_fsync_bytes_per_s: float  # the median of the samples
    seq_write_buffered_bytes_per_s: float
    fsync_latency: LatencySummary
    seq_write_fsync_samples: list[float]
    seq_write_buffered_samples: list[float]


def measure(directory: Path, *, size_bytes: int, fsync_seconds: float, repeats: int = 3,
            tool: str = "auto") -> Limits:
    """Measure the limits with ``tool`` (``auto``, ``fio`` or ``python``)."""
    if tool not in ("auto", "fio", "python"):
        raise ValueError(f"unknown tool {tool!r}")
    fio = shutil.which("fio")
    if tool == "fio" and fio is None:
        raise RuntimeError("fio is not on PATH")
    count = max(1, size_bytes // CHUNK_BYTES)
    work = Path(tempfile.mkdtemp(prefix="bench-limits-", dir=directory))
    try:
        if fio is not None and tool != "python":
            probe: _Probe = _Fio(fio, work, count)
        else:
            probe = _Python(work, count)
        durable: list[float] = []
        buffered: list[float] = []
        for _ in range(max(1, repeats)):
            durable.append(probe.sequential(fsync=True))
            buffered.append(probe.sequential(fsync=False))
        latency = probe.fsync_latency(fsync_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Limits(probe.name, str(directory), count * CHUNK_BYTES, statistics.median(durable),
                  statistics.median(buffered), latency, durable, buffered)


class _Probe(Protocol):
    name: str

    def sequential(self, *, fsync: bool) -> float:
        """Bytes/s of sequential 1 MiB writes (with one fsync at the end, timed, if asked)."""

    def fsync_latency(self, seconds: float) -> LatencySummary:
        """Latency of 4 KiB appends each followed by fdatasync, for ``seconds``."""


class _Python:
    name = "python (os.write, os.fsync, os.fdatasync)"

    def __init__(self, work: Path, count: int) -> None:
        self._work = work
        self._count = count
        self._chunk = os.urandom(CHUNK_BYTES)

    def sequential(self, *, fsync: bool) -> float:
        path = self._work / "sequential.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            started = time.perf_counter()
            for _ in range(self._count):
                os.write(fd, self._chunk)
            if fsync:
                os.fsync(fd)
            elapsed = time.perf_counter() - started
        finally:
            os.close(fd)
            path.unlink()  # unlinking drops unwritten pages: they cannot slow the next test
        return self._count * CHUNK_BYTES / elapsed

    def fsync_latency(self, seconds: float) -> LatencySummary:
        path = self._work / "sync.bin"
        block = os.urandom(SYNC_WRITE_BYTES)
        samples: list[int] = []
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            end = time.monotonic_ns() + int(seconds * 1e9)
            while True:
                started = time.monotonic_ns()
                if started >= end:
                    break
                os.write(fd, block)
                os.fdatasync(fd)
                samples.append(time.monotonic_ns() - started)
        finally:
            os.close(fd)
            path.unlink()
        summary = summarize(samples)
        assert summary is not None
        return summary


class _Fio:
    def __init__(self, fio: str, work: Path, count: int) -> None:
        self._fio = fio
        self._work = work
        self._count = count
        version = subprocess.run([fio, "--version"], capture_output=True, text=True,
                                 check=True).stdout
        self.name = f"{version.strip()} (psync/sync engines, buffered I/O)"

    def sequential(self, *, fsync: bool) -> float:
        options = ["--rw=write", "--bs=1M", f"--size={self._count}M", "--ioengine=psync"]
        # Without fsync the file's dirty pages are dropped when _job unlinks it, so they do not
        # slow the next measurement down.
        job = self._job("sequential", [*options, "--end_fsync=1"] if fsync else options)
        return float(job["write"]["bw_bytes"])

    def fsync_latency(self, seconds: float) -> LatencySummary:
        job = self._job("fsync", [
            "--rw=write", f"--bs={SYNC_WRITE_BYTES}", "--size=256M", "--ioengine=sync",
            "--fdatasync=1", f"--runtime={max(1, round(seconds))}", "--time_based"])
        latency = job["sync"]["lat_ns"]
        percentiles = latency["percentile"]
        max_ms = latency["max"] / 1e6
        # fio's percentiles are histogram bucket bounds, which can lie above the maximum.
        return LatencySummary(
            count=int(job["write"]["total_ios"]),
            p50_ms=min(percentiles["50.000000"] / 1e6, max_ms),
            p99_ms=min(percentiles["99.000000"] / 1e6, max_ms),
            p999_ms=min(percentiles["99.900000"] / 1e6, max_ms),
            max_ms=max_ms,
        )

    def _job(self, name: str, options: list[str]) -> dict[str, Any]:
        path = self._work / f"{name}.bin"
        try:
            result = subprocess.run(
                [self._fio, f"--name={name}", f"--filename={path}", "--output-format=json",
                 *options], capture_output=True, text=True, check=True)
        finally:
            path.unlink(missing_ok=True)
        job: dict[str, Any] = json.loads(result.stdout[result.stdout.index("{"):])["jobs"][0]
        return job
