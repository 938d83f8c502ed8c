"""The C accelerator against the pure-Python reference, on the same inputs.

Both must return identical results, or both raise the same exception class, for valid batches,
for valid batches with random damage and for random bytes. (The rest of this folder also runs
every test on each implementation separately.)
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logstore.client.partitioner import murmur2_py
from logstore.errors import CorruptRecordError, InvalidArgumentError
from logstore.records import speedups
from logstore.records.builder import BatchBuilder
from logstore.records.header import HEADER_SIZE, LOG_OVERHEAD, TIMESTAMP_TYPE_MASK, parse_header
from logstore.records.reader import _decode_records

from .conftest import require_speedups  # type: ignore[import-not-found]

# Raise for a deeper local run, e.g. under AddressSanitizer (see docs/architecture.md).
EXAMPLES = int(os.environ.get("LOGSTORE_FUZZ_EXAMPLES", "300"))


@pytest.fixture(autouse=True)
def implementation() -> str:
    """Overrides the folder's two-pass fixture: these tests compare both implementations
    themselves, so they run once (and need the C accelerator)."""
    require_speedups()
    return "both"


def outcome(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(*args))
    except (CorruptRecordError, InvalidArgumentError) as exc:
        return ("error", type(exc))


def decode_both(section: bytes, count: int, last_delta: int, *, base_offset: int = 5,
                base_ts: int = 1000, append_time: bool = False, max_ts: int = 2000,
                min_offset: int = 0):  # type: ignore[no-untyped-def]
    header = parse_header(_fake_header(count, last_delta, base_offset, base_ts, append_time,
                                       max_ts, len(section)) + section)
    python = outcome(_decode_records, section, 0, len(section), header, "t", 3, min_offset)
    c = outcome(
        speedups.decode_records, section, 0, len(section), count, last_delta, base_offset,
        base_ts, append_time, max_ts, "t", 3, min_offset,
    )
    return python, c


def _fake_header(count: int, last_delta: int, base_offset: int, base_ts: int, append_time: bool,
                 max_ts: int, section_len: int) -> bytes:
    from logstore.records.header import HEADER, MAGIC

    return HEADER.pack(base_offset, HEADER_SIZE - LOG_OVERHEAD + section_len, -1, MAGIC, 0,
                       TIMESTAMP_TYPE_MASK if append_time else 0, last_delta, base_ts, max_ts,
                       -1, -1, -1, count)


headers_st = st.lists(
    st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=8))), max_size=3
)
record_st = st.tuples(
    st.integers(min_value=-(2**40), max_value=2**40),  # timestamp
    st.one_of(st.none(), st.binary(max_size=40)),
    st.one_of(st.none(), st.binary(max_size=300)),
    headers_st,
)


def build(records, *, c: bool) -> bytes:  # type: ignore[no-untyped-def]
    builder = BatchBuilder()
    for ts, key, value, headers in records:
        if c:
            builder.append(ts, key, value, headers)
        else:
            builder._append_py(ts, key, value, headers)
    return builder.build()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_st, min_size=1, max_size=40))
def test_encoding_is_byte_identical(records) -> None:  # type: ignore[no-untyped-def]
    assert build(records, c=True) == build(records, c=False)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_st, min_size=1, max_size=30), st.data())
def test_decoding_agrees_on_valid_and_damaged_batches(records, data) -> None:  # type: ignore[no-untyped-def]
    batch = build(records, c=False)
    header = parse_header(batch)
    section = batch[HEADER_SIZE:]
    count, last = header.record_count, header.last_offset_delta
    min_offset = data.draw(st.integers(min_value=0, max_value=60))
    append_time = data.draw(st.booleans())
    python, c = decode_both(section, count, last, min_offset=min_offset, append_time=append_time)
    assert python[0] == "ok"
    assert python == c
    damaged = bytearray(section)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(min_value=0, max_value=max(len(damaged) - 1, 0)))
        if kind == "flip" and damaged:
            damaged[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif kind == "cut":
            del damaged[position:]
        else:
            damaged[position:position] = data.draw(st.binary(min_size=1, max_size=3))
    fake_count = data.draw(st.sampled_from([count, count + 1, max(count - 1, 0)]))
    assert decode_both(bytes(damaged), fake_count, last)[0] == decode_both(
        bytes(damaged), fake_count, last)[1]


@settings(max_examples=EXAMPLES * 5 // 3, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=30),
       st.integers(min_value=0, max_value=40))
def test_decoding_agrees_on_random_bytes(section, count, last) -> None:  # type: ignore[no-untyped-def]
    python, c = decode_both(section, count, last)
    assert python == c


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_st, min_size=1, max_size=40))
def test_whole_batch_encoding_agrees_with_record_by_record(records) -> None:  # type: ignore[no-untyped-def]
    import logstore.records.builder as builder_module

    records = [(ts, k, v, tuple(h)) for ts, k, v, h in records]
    base = records[0][0]
    c_section = builder_module.encode_records(records, base)
    python_builder = BatchBuilder(base_timestamp_ms=base)
    for record in records:
        python_builder._append_py(*record)
    assert c_section == (b"".join(python_builder._records), max(r[0] for r in records))


def test_overflowing_offsets_and_timestamps_agree() -> None:
    # A hostile batch: offsets and timestamps beyond int64 are plain Python ints in both.
    builder = BatchBuilder()
    builder.append(0, b"k", b"v")
    builder.append(2**62, b"k", b"v")
    section = builder.build()[HEADER_SIZE:]
    python, c = decode_both(section, 2, 1, base_offset=2**63 - 1, base_ts=2**63 - 1)
    assert python == c and python[0] == "ok"
    assert python[1][1].offset == 2**63 and python[1][1].timestamp_ms > 2**63


def test_encode_errors_agree() -> None:
    cases = [("text", b"v", ()), (b"k", 3, ()), (b"k", b"v", [("h", "str")]),
             (b"k", b"v", [(1, b"x")]), (b"k", b"v", [("h",)]), (b"k", b"v", [("\ud800", b"x")])]
    for key, value, headers in cases:
        c_builder, py_builder = BatchBuilder(), BatchBuilder()
        c_builder.append(1, b"first", b"x")
        py_builder._append_py(1, b"first", b"x")
        c = outcome(c_builder.append, 2, key, value, headers)
        py = outcome(py_builder._append_py, 2, key, value, headers)
        assert c == py == ("error", InvalidArgumentError), (key, value, headers)
        assert c_builder.build() == py_builder.build(), "a failed append changed the builder"


def test_murmur2_agrees() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        key = rng.randbytes(rng.randint(0, 100))
        assert speedups.murmur2(key) == murmur2_py(key)


def check_both(section: bytes, count: int, last_delta: int, base_offset: int = 5):  # type: ignore[no-untyped-def]
    from logstore.records.reader import check_records

    header = parse_header(_fake_header(count, last_delta, base_offset, 1000, False, 2000,
                                       len(section)) + section)
    python = outcome(check_records, section, 0, len(section), header)
    c = outcome(speedups.check_records, section, 0, len(section), count, last_delta)
    return python, c


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_st, min_size=1, max_size=30), st.data())
def test_checking_agrees_on_valid_and_damaged_batches(records, data) -> None:  # type: ignore[no-untyped-def]
    batch = build(records, c=False)
    header = parse_header(batch)
    section = batch[HEADER_SIZE:]
    count, last = header.record_count, header.last_offset_delta
    python, c = check_both(section, count, last)
    assert python[0] == "ok" and python == c
    keyless = [k for k, r in enumerate(records) if r[1] is None]
    assert python[1] == (-1, keyless[0] if keyless else -1)
    damaged = bytearray(section)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=max(len(damaged) - 1, 0)))
        if damaged and data.draw(st.booleans()):
            damaged[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        else:
            del damaged[position:]
    fake_count = data.draw(st.sampled_from([count, count + 1, max(count - 1, 0)]))
    python, c = check_both(bytes(damaged), fake_count, last)
    assert python == c


@settings(max_examples=EXAMPLES * 5 // 3, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=30),
       st.integers(min_value=0, max_value=40))
def test_checking_agrees_on_random_bytes(section, count, last) -> None:  # type: ignore[no-untyped-def]
    python, c = check_both(section, count, last)
    assert python == c


def test_checking_finds_offset_deltas_that_are_not_their_index() -> None:
    builder = BatchBuilder()
    builder.append(1, b"k", b"v", ())
    builder.append(1, b"k", b"v", ())
    batch = bytearray(builder.build())
    header = parse_header(bytes(batch))
    section = bytes(batch[HEADER_SIZE:])
    # Records: length, attributes, timestamp delta, offset delta (the 4th byte of each).
    second = section[0] // 2 + 1
    tweaked = bytearray(section)
    tweaked[second + 3] = 4  # zigzag 2: offset delta 2 for the second record (index 1)
    python, c = check_both(bytes(tweaked), header.record_count, 2)
    assert python == c == ("ok", (1, -1))
