"""Mutated real request frames against a live broker over raw sockets.

Seeds are frames confluent-kafka and kafka-python sent through a recording proxy, and frames
built with kio for every API version the broker serves (``bench/fuzz_frames.py``; the same
harness fuzzes a million frames in ``bench/fuzz_broker.py``). Each mutated frame (bit flips,
truncation, length and count fields set to huge or negative values, extra bytes, a lying size)
must get an answer or close its own connection -- or leave the broker waiting for the rest of a
frame or a long poll, while a fresh connection is still answered -- and memory must stay flat.

Regressions found by fuzzing: kio's native reader sized arrays from the count a frame declared
and aborted the process when the allocation failed (``logstore/protocol/bounds.py``).
"""

from __future__ import annotations

import importlib.util
import random
import re
import resource
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from logstore.broker import Broker, BrokerConfig
from logstore.protocol import bounds
from logstore.protocol.codec import decode_request, is_flexible
from logstore.protocol.frames import FrameError, parse_request_header, read_fixed


def _load_bench() -> None:
    """Import the repository's ``bench`` package (not installed) without putting the repository
    root on sys.path (as tests/bench/conftest.py does)."""
    if "bench" in sys.modules:
        return
    path = Path(__file__).resolve().parents[2] / "bench"
    spec = importlib.util.spec_from_file_location("bench", path / "__init__.py",
                                                  submodule_search_locations=[str(path)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module
    spec.loader.exec_module(module)


_load_bench()
from bench.fuzz_broker import (  # noqa: E402 - bench is loaded above
    broker_answers,
    capture_seeds,
    exchange,
    probe_frame,
    served_seeds,
)
from bench.fuzz_frames import FUZZ_TOPIC, mutate  # noqa: E402

LOGSTORE_BIN = Path(sys.executable).parent / "logstore"
#: How long a test waits for the probe's answer before calling the frame a wait.
TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    return capture_seeds(seconds_per_client=1.5) + served_seeds()


@pytest.fixture(scope="module")
def fuzz_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    path = tmp_path_factory.mktemp("fuzz") / "data"
    with logstore.open(path, maintenance_interval_ms=None) as log:
        log.create_topic(FUZZ_TOPIC, 1, {"durability": "os"})
        broker = Broker(log, config=BrokerConfig(listen_port=0, auto_create_topics=False))
        broker.start()
        try:
            assert broker.address is not None
            yield broker.address
        finally:
            broker.stop()


def send_one(address: tuple[str, int], data: bytes, correlation_id: int) -> str:
    """One mutated frame on a fresh connection: its outcome (see ``bench.fuzz_broker``)."""
    with socket.create_connection(address, timeout=TIMEOUT_S) as sock:
        outcome = exchange(sock, data, correlation_id)
    if outcome == "waited":
        # A long poll, or the broker waiting for the rest of a frame whose size lied: fine, as
        # long as everyone else is still served.
        assert broker_answers(address, 30.0), "the broker stopped answering"
    return outcome


def test_the_seeds_cover_clients_and_every_served_api(seeds: list[bytes]) -> None:
    from logstore.broker.dispatch import Dispatcher
    from logstore.broker.handlers import register_all

    dispatcher = Dispatcher()
    register_all(dispatcher)
    sent = {read_fixed(frame)[:2] for frame in seeds}
    for api_key, versions in dispatcher.supported().items():
        for version in range(versions.min_version, versions.max_version + 1):
            assert (api_key, version) in sent
    assert any(frame[8:10] != b"\x00\x04" for frame in seeds)  # some not ours ("fuzz")


def test_valid_frames_pass_the_bounds_check(seeds: list[bytes]) -> None:
    for frame in seeds:
        api_key, version, _ = read_fixed(frame)
        try:
            flexible = version >= 3 if api_key == 18 else is_flexible(api_key, version)
        except Exception:  # noqa: S112 - a version kio does not know: nothing to check
            continue
        header = parse_request_header(frame, flexible=flexible)
        decode_request(api_key, version, frame, header.body_offset)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(choice=st.integers(min_value=0), rng=st.randoms(use_true_random=False))
def test_a_mutated_frame_gets_an_answer_or_closes_its_connection(
        fuzz_broker: tuple[str, int], seeds: list[bytes], choice: int,
        rng: random.Random) -> None:
    data = mutate(seeds[choice % len(seeds)], rng)
    assert send_one(fuzz_broker, data, 0x5EED) in ("answered", "closed", "waited")


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow
def test_memory_stays_flat_over_thousands_of_mutated_frames(fuzz_broker, seeds) -> None:
    rng = random.Random(12)
    outcomes: dict[str, int] = {}

    def round_of(count: int) -> None:
        sock: socket.socket | None = None
        for n in range(count):
            if sock is None:
                sock = socket.create_connection(fuzz_broker, timeout=TIMEOUT_S)
            outcome = exchange(sock, mutate(rng.choice(seeds), rng), n)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome != "answered":
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    round_of(1000)  # warm-up: caches, the first partitions and producer ids, allocator arenas
    before = rss_bytes()
    round_of(1000)
    middle = rss_bytes()
    round_of(1000)
    after = rss_bytes()
    assert outcomes.get("answered", 0) > 0 and outcomes.get("closed", 0) > 0, outcomes
    assert set(outcomes) <= {"answered", "closed", "waited"}, outcomes
    # Generous bounds (RSS is noisy); a leak of even a few KiB per frame would exceed them.
    assert middle - before < 24 * 1024 * 1024, (before, middle)
    assert after - middle < 24 * 1024 * 1024, (middle, after)
    assert broker_answers(fuzz_broker, 30.0)


# --- regressions -------------------------------------------------------------------------

def _metadata_frame(version: int, topics_count: bytes, correlation_id: int = 9) -> bytes:
    header = struct.pack(">hhih", 3, version, correlation_id, 4) + b"evil"
    if version >= 9:
        header += b"\x00"  # flexible request header: no tagged fields
    payload = header + topics_count
    return struct.pack(">i", len(payload)) + payload


HUGE_COUNTS = [
    pytest.param(1, struct.pack(">i", 0x7FFFFFFF), id="int32-count-2^31"),
    pytest.param(12, b"\xff\xff\xff\xff\x0f", id="varint-count-2^32"),
    pytest.param(12, b"\xff\xff\xff\xff\x7f", id="varint-count-2^35"),
]


@pytest.mark.parametrize(("version", "count"), HUGE_COUNTS)
def test_a_huge_declared_count_is_refused_before_kio_reads_it(version: int, count: bytes) -> None:
    frame = _metadata_frame(version, count)[4:]
    header = parse_request_header(frame, flexible=version >= 9)
    with pytest.raises(FrameError, match="elements"):
        decode_request(3, version, frame, header.body_offset)


@pytest.mark.slow
def test_a_huge_declared_count_closes_one_connection_not_the_broker(tmp_path: Path) -> None:
    """Against ``logstore serve`` with 4 GiB of address space (a small machine): kio used to ask
    for 16 to 256 GiB for these frames and abort the broker."""
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    proc = subprocess.Popen([str(LOGSTORE_BIN), "--data-dir", str(tmp_path / "d"), "serve",
                             "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit_memory)
    assert proc.stderr is not None
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stderr.readline()
            assert line, proc.communicate()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert found is not None, line
        port = int(found.group(1))
        for param in HUGE_COUNTS:
            version, count = param.values
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                assert exchange(sock, _metadata_frame(version, count), 77) == "closed"
            assert proc.poll() is None, proc.communicate()
            assert broker_answers(("127.0.0.1", port), 30.0)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "memory allocation" not in err


def test_a_request_of_more_array_elements_than_the_limit_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(bounds, "MAX_ARRAY_ELEMENTS", 10)

    def metadata_v1(topics: int) -> bytes:
        body = struct.pack(">i", topics) + b"\x00\x01t" * topics  # names "t"
        return _metadata_frame(1, body)[4:]

    header_offset = parse_request_header(metadata_v1(10), flexible=False).body_offset
    assert len(decode_request(3, 1, metadata_v1(10), header_offset).topics) == 10
    with pytest.raises(FrameError, match="more than 10 array elements"):
        decode_request(3, 1, metadata_v1(11), header_offset)


def test_a_tagged_field_that_does_not_fill_its_size_is_refused() -> None:
    # Fetch v12's tagged field 0 (cluster_id, a compact string "ab"), declared 5 bytes long
    # but 3 long: kio would read on from the middle of the declared bytes.
    body = bytearray()
    body += struct.pack(">iiiibii", -1, 10, 1, 1024, 0, 0, -1)
    body += b"\x01"  # no topics
    body += b"\x01"  # no forgotten topics
    body += b"\x01"  # rack id ""
    good = bytes(body) + b"\x01\x00\x03\x03ab"
    bad = bytes(body) + b"\x01\x00\x05\x03ab\x00\x00"
    header = struct.pack(">hhih", 1, 12, 1, 1) + b"x" + b"\x00"
    assert decode_request(1, 12, header + good, len(header)).cluster_id == "ab"
    with pytest.raises(FrameError, match="does not fill its size"):
        decode_request(1, 12, header + bad, len(header))


def test_probe_frames_are_valid_api_versions_requests(fuzz_broker) -> None:
    with socket.create_connection(fuzz_broker, timeout=30) as sock:
        assert exchange(sock, probe_frame(5), 6) == "answered"
