"""Fixtures of the CLI tests: an in-process runner, the embedded API on the same data
directory, and real subprocesses of the installed ``logstore`` console script."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest
from click.testing import CliRunner, Result
from logstore.cli.main import cli

import logstore
from logstore import ConsumerRecord, TopicPartition

LOGSTORE_BIN = Path(sys.executable).parent / "logstore"

Run = Callable[..., Result]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(data_dir: Path) -> Run:
    """``run("topics", "list", input=b"...")``: the CLI in-process on ``data_dir``."""
    runner = CliRunner()

    def invoke(*args: str, input: bytes | str | None = None,
               env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, ["--data-dir", str(data_dir), *args], input=input, env=env,
                             catch_exceptions=False)

    return invoke


@pytest.fixture
def api(data_dir: Path) -> Iterator[logstore.Log]:
    """The embedded API on the CLI's data directory (to set up and check what the CLI did)."""
    # metadata_max_age_ms=0: see what the CLI changed at once, not after the cache ages.
    opened = logstore.open(data_dir, maintenance_interval_ms=None, metadata_max_age_ms=0)
    yield opened
    opened.close()


def _produce(log: logstore.Log, topic: str, values: Sequence[bytes], *, key: bytes | None = None,
            partition: int | None = 0, timestamp_ms: int | None = None,
            separate_batches: bool = False) -> None:
    """Produce ``values`` and wait for them (each in its own batch if ``separate_batches``)."""
    with log.producer(linger_ms=0 if separate_batches else 5) as producer:
        futures = []
        for value in values:
            futures.append(producer.send(topic, value=value, key=key, partition=partition,
                                         timestamp_ms=timestamp_ms))
            if separate_batches:
                futures[-1].result(10)
        producer.flush()
        for future in futures:
            future.result(10)


@pytest.fixture
def produce() -> Callable[..., None]:
    """``produce(log, topic, [b"a", b"b"], ...)``: send records and wait for them."""
    return _produce


def _consume(log: logstore.Log, topic: str, partition: int = 0) -> list[ConsumerRecord]:
    """Every record of one partition, from its log start to its high watermark."""
    tp = TopicPartition(topic, partition)
    with log.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        records: list[ConsumerRecord] = []
        while consumer.position(tp) < end:
            records += consumer.poll(timeout_ms=1000)
    return records


@pytest.fixture
def consume() -> Callable[..., list[ConsumerRecord]]:
    """``consume(log, topic, partition=0)``: every record of one partition."""
    return _consume


def subprocess_env() -> dict[str, str]:
    """The environment of real ``logstore`` processes: the venv's bin first on PATH, and no
    LOGSTORE_* variables leaking in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTORE_")}
    env["PATH"] = f"{LOGSTORE_BIN.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def shell(tmp_path: Path) -> Callable[[str], subprocess.CompletedProcess[bytes]]:
    """Run a bash command line in ``tmp_path`` (where ``logstore`` uses ./logstore-data)."""
    if not LOGSTORE_BIN.exists():
        pytest.fail(f"the logstore console script is not installed at {LOGSTORE_BIN}")

    def sh(command: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["bash", "-c", command], cwd=tmp_path, env=subprocess_env(),
                              capture_output=True, timeout=timeout, check=False)

    return sh


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``logstore ARGS...`` in ``tmp_path`` with piped stdout/stderr; killed at teardown
    if the test left it running."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([str(LOGSTORE_BIN), *args], cwd=tmp_path, env=subprocess_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def line_reader() -> Callable[[IO[bytes] | None], queue.Queue[bytes]]:
    """``line_reader(pipe)``: the lines of a pipe, read by a thread into a queue (so waiting
    for one can time out)."""

    def start(stream: IO[bytes] | None) -> queue.Queue[bytes]:
        if stream is None:
            raise ValueError("the process has no such pipe")
        lines: queue.Queue[bytes] = queue.Queue()

        def read() -> None:
            for line in stream:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        return lines

    return start


@pytest.fixture
def serve_process() -> Iterator[Callable[..., tuple[subprocess.Popen[str], int]]]:
    """``serve_process(data_dir, *args)``: a ``logstore serve`` process on a free loopback port,
    returned once it logs that it listens, with that port (stderr stays readable for the
    test; processes still running at the end are killed)."""
    started: list[subprocess.Popen[str]] = []

    def start(data_dir: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "logstore"), "--data-dir",
                                 str(data_dir), "serve", "--listen", "127.0.0.1:0", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                return proc, int(found.group(1))
        proc.kill()
        raise AssertionError(f"the broker did not start: {proc.communicate()}")

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
