"""Fuzz a broker with mutated real request frames and report how it held up.

    python bench/fuzz_broker.py                       # 1,000,000 frames at a `logstore serve`
    python bench/fuzz_broker.py --frames 20000 --lanes 8 --seconds 120 --in-process

Seeds (``bench/fuzz_frames.py``): frames captured from confluent-kafka and kafka-python talking to
a broker through a recording proxy, and frames built with kio for every API and version the
broker serves. Each lane (a thread with its own connection) sends one mutated frame, then a valid
ApiVersions v0 probe, and reads until the probe's answer comes back (**answered**: the
connection is alive and in step), the broker closes the connection (**closed**), or
``--timeout-s`` passes (**waited**: a long poll or a frame the broker is still waiting the rest
of; the lane then closes its connection and checks on a fresh one that the broker still answers
ApiVersions -- if it does not, that is a **hang**). Anything else (a response frame that does
not parse, a refused connection) is reported by name. The broker runs as a ``logstore serve``
subprocess (default; its peak RSS is VmHWM) or in-process (``--in-process``), with
auto-create off and a seed topic with ``durability=os``.

Prints the count, the outcomes, frames per second and the broker's RSS (start, end, peak); exits
1 if the broker died or hung.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: find the ``bench`` package, then measure the installed
    # logstore rather than the repository's source folder (see bench.drop_repository_root)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench

bench.drop_repository_root()

from bench.fuzz_frames import (  # noqa: E402 - after drop_repository_root()
    FUZZ_TOPIC,
    RecordingProxy,
    built_seeds,
    drive_clients,
    mutate,
)

_SIZE = struct.Struct(">i")
#: Responses larger than this are not read (the fuzz topic holds little).
_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def probe_frame(correlation_id: int) -> bytes:
    """A valid ApiVersions v0 request frame (size included)."""
    payload = struct.pack(">hhih", 18, 0, correlation_id, 5) + b"probe"
    return _SIZE.pack(len(payload)) + payload


def _read_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(min(count - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def exchange(sock: socket.socket, data: bytes, correlation_id: int) -> str:
    """Send ``data`` then a probe; "answered", "closed", "waited" or "bad-response"."""
    try:
        sock.sendall(data + probe_frame(correlation_id))
        while True:
            head = _read_exactly(sock, 4)
            if head is None:
                return "closed"
            (size,) = _SIZE.unpack(head)
            if size < 4 or size > _MAX_RESPONSE_BYTES:
                return "bad-response"
            payload = _read_exactly(sock, size)
            if payload is None:
                return "closed"
            if _SIZE.unpack_from(payload, 0)[0] == correlation_id:
                return "answered"
    except TimeoutError:
        return "waited"
    except (ConnectionResetError, BrokenPipeError):
        return "closed"


def broker_answers(address: tuple[str, int], timeout_s: float) -> bool:
    """Whether a fresh connection gets ApiVersions answered."""
    try:
        with socket.create_connection(address, timeout=timeout_s) as sock:
            return exchange(sock, b"", 0x7FFF0000) == "answered"
    except OSError:
        return False


@dataclasses.dataclass
class Tally:
    """Outcomes of all lanes (thread-safe)."""

    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    frames: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    failed: threading.Event = dataclasses.field(default_factory=threading.Event)

    def add(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            self.frames += 1


def run_lane(address: tuple[str, int], seeds: list[bytes], rng: random.Random, quota: int,
             deadline: float, timeout_s: float, tally: Tally, lane: int) -> None:
    """Send up to ``quota`` mutated frames on one connection (reconnecting after closes)."""
    sock: socket.socket | None = None
    correlation = lane << 20
    try:
        for _ in range(quota):
            if time.monotonic() > deadline or tally.failed.is_set():
                return
            if sock is None:
                try:
                    sock = socket.create_connection(address, timeout=timeout_s)
                except OSError:
                    tally.add("connect-failed")
                    tally.failed.set()
                    return
            correlation = (correlation + 1) & 0x7FFFFFFF
            outcome = exchange(sock, mutate(rng.choice(seeds), rng), correlation)
            if outcome != "answered":
                sock.close()
                sock = None
            if outcome == "waited" and not broker_answers(address, 30.0):
                outcome = "hang"
                tally.failed.set()
            tally.add(outcome)
    finally:
        if sock is not None:
            sock.close()


def fuzz(address: tuple[str, int], seeds: list[bytes], *, frames: int, lanes: int,
         seconds: float, timeout_s: float, seed: int, rss: Rss | None = None,
         progress_s: float = 0.0) -> Tally:
    """Run ``lanes`` threads sharing ``frames``, for at most ``seconds`` (printing progress and
    the broker's RSS every ``progress_s`` if set)."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=run_lane, args=(
            address, seeds, random.Random(seed * 1000 + lane), frames // lanes
            + (1 if lane < frames % lanes else 0), deadline, timeout_s, tally, lane),
            daemon=True)
        for lane in range(lanes)]
    for thread in threads:
        thread.start()
    started = last_report = time.monotonic()
    for thread in threads:
        while thread.is_alive():
            thread.join(1.0)
            if rss is not None:
                rss.sample()
            if progress_s and time.monotonic() - last_report >= progress_s:
                last_report = time.monotonic()
                print(f"  {tally.frames:>10,} frames, {tally.frames / (last_report - started):,.0f}"
                      f"/s{f', broker RSS {rss.last / 2**20:.0f} MiB' if rss else ''}",
                      flush=True)
    return tally


class Rss:
    """RSS samples of a process (/proc), and its peak as the kernel counts it (VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.first = self.read("VmRSS")
        self.last = self.first
        self.peak = self.first

    def read(self, key: str) -> int:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{self.pid}/status").read_text()
            found = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
            if found:
                return int(found.group(1)) * 1024
        return 0

    def sample(self) -> None:
        self.last = self.read("VmRSS") or self.last
        self.peak = max(self.peak, self.read("VmHWM"), self.last)


def capture_seeds(topic: str = FUZZ_TOPIC, *, seconds_per_client: float = 3.0) -> list[bytes]:
    """Frames real clients send (through a :class:`RecordingProxy` in front of an in-process
    broker on a scratch directory)."""
    import logstore
    from logstore.broker import Broker, BrokerConfig

    proxy = RecordingProxy()
    with tempfile.TemporaryDirectory() as scratch, \
            logstore.open(Path(scratch) / "capture", maintenance_interval_ms=None) as log:
        log.create_topic(topic, 1, {"durability": "os"})
        broker = Broker(log, config=BrokerConfig(listen_port=0, advertised_port=proxy.port))
        broker.start()
        try:
            assert broker.address is not None
            proxy.start(broker.address)
            drive_clients(f"127.0.0.1:{proxy.port}", topic=topic,
                          seconds_per_client=seconds_per_client)
        finally:
            proxy.close()
            broker.stop()
    return list(proxy.frames)


def served_seeds() -> list[bytes]:
    from logstore.broker.dispatch import Dispatcher
    from logstore.broker.handlers import register_all

    dispatcher = Dispatcher()
    register_all(dispatcher)
    return built_seeds(dispatcher.supported())


def prepare_data_dir(path: Path) -> None:
    import logstore

    with logstore.open(path, maintenance_interval_ms=None) as log:
        log.create_topic(FUZZ_TOPIC, 1, {"durability": "os"})


@contextlib.contextmanager
def serve_subprocess(data_dir: Path) -> Iterator[tuple[tuple[str, int], subprocess.Popen[str]]]:
    logstore_bin = Path(sys.executable).parent / "logstore"
    proc = subprocess.Popen(
        [str(logstore_bin), "--data-dir", str(data_dir), "serve", "--listen", "127.0.0.1:0",
         "--no-auto-create-topics"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    port = None
    while port is None:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"logstore serve did not start (exit {proc.wait()})")
        if found := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
            port = int(found.group(1))
    drain = threading.Thread(target=_drain, args=(proc.stderr,), daemon=True)
    drain.start()
    try:
        yield ("127.0.0.1", port), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _drain(stream: Any) -> None:
    """Read the broker's log (one line per closed connection) so its pipe never fills."""
    for _ in stream:
        pass


@contextlib.contextmanager
def serve_in_process(data_dir: Path) -> Iterator[tuple[tuple[str, int], None]]:
    import logstore
    from logstore.broker import Broker, BrokerConfig

    with logstore.open(data_dir, maintenance_interval_ms=None) as log:
        broker = Broker(log, config=BrokerConfig(listen_port=0, auto_create_topics=False))
        broker.start()
        try:
            assert broker.address is not None
            yield broker.address, None
        finally:
            broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument("--lanes", type=int, default=16, help="concurrent connections")
    parser.add_argument("--timeout-s", type=float, default=0.5,
                        help="how long a lane waits for the probe's answer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--progress-s", type=float, default=30.0,
                        help="print the count and the broker's RSS this often (0: never)")
    args = parser.parse_args(argv)

    captured = capture_seeds()
    built = served_seeds()
    seeds = captured + built
    print(f"seeds: {len(captured)} captured from clients, {len(built)} built for every served "
          f"API version", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        prepare_data_dir(data_dir)
        serve = serve_in_process if args.in_process else serve_subprocess
        with serve(data_dir) as (address, proc):
            rss = Rss(proc.pid if proc is not None else os.getpid())
            started = time.monotonic()
            tally = fuzz(address, seeds, frames=args.frames, lanes=args.lanes,
                         seconds=args.seconds, timeout_s=args.timeout_s, seed=args.seed, rss=rss,
                         progress_s=args.progress_s)
            elapsed = time.monotonic() - started
            alive = broker_answers(address, 30.0)
            rss.sample()
            died = proc is not None and proc.poll() is not None
        size = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())
    print(f"frames: {tally.frames:,} in {elapsed:.0f} s ({tally.frames / elapsed:,.0f} frames/s, "
          f"{args.lanes} lanes, seed {args.seed})")
    for outcome, count in tally.outcomes.most_common():
        print(f"  {outcome:15} {count:>10,}  {count / max(tally.frames, 1):7.2%}")
    mib = 1024 * 1024
    print(f"broker RSS: {rss.first / mib:.0f} MiB at start, {rss.last / mib:.0f} MiB at end, "
          f"peak {rss.peak / mib:.0f} MiB; data directory {size / mib:.1f} MiB")
    print(f"broker after the run: {'answers ApiVersions' if alive else 'DOES NOT ANSWER'}"
          f"{'; its process exited' if died else ''}")
    return 0 if alive and not died and not tally.failed.is_set() else 1


if __name__ == "__main__":
    raise SystemExit(main())
