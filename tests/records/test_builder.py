"""BatchBuilder: header fields, sizes, argument validation, estimate_record_size."""

from __future__ import annotations

import pytest

from logstore.errors import IllegalStateError, InvalidArgumentError
from logstore.records import (
    HEADER_SIZE,
    BatchBuilder,
    Compression,
    decode_batch,
    encode_batch,
    estimate_record_size,
    validate_batch,
)
from logstore.records.header import CONTROL_MASK, TRANSACTIONAL_MASK


def test_header_fields_of_a_built_batch() -> None:
    builder = BatchBuilder(
        compression=Compression.LZ4,
        producer_id=9,
        producer_epoch=2,
        base_sequence=40,
        is_transactional=True,
        partition_leader_epoch=5,
        base_offset=300,
    )
    assert [builder.append(ts, b"k", b"v") for ts in (500, 400, 900, 600)] == [0, 1, 2, 3]
    header = validate_batch(builder.build())
    assert header.base_offset == 300
    assert header.partition_leader_epoch == 5
    assert header.last_offset_delta == 3 and header.record_count == 4
    assert header.base_timestamp == 500  # the first record's, not the smallest
    assert header.max_timestamp == 900
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (9, 2, 40)
    assert header.attributes == Compression.LZ4 | TRANSACTIONAL_MASK
    assert not header.attributes & CONTROL_MASK


def test_defaults_are_a_plain_producer_batch() -> None:
    header, records = decode_batch(encode_batch([(1, None, b"v", ())]))
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (-1, -1, -1)
    assert header.partition_leader_epoch == -1 and header.attributes == 0
    assert [r.value for r in records] == [b"v"]


def test_explicit_base_timestamp() -> None:
    builder = BatchBuilder(base_timestamp_ms=10_000)
    builder.append(9_000, None, b"a")
    builder.append(12_000, None, b"b")
    header, records = decode_batch(builder.build())
    assert (header.base_timestamp, header.max_timestamp) == (10_000, 12_000)
    assert [r.timestamp_ms for r in records] == [9_000, 12_000]


@pytest.mark.parametrize("codec", list(Compression))
def test_size_in_bytes_is_exact_uncompressed_size(codec: Compression) -> None:
    builder = BatchBuilder(compression=codec)
    assert builder.size_in_bytes == HEADER_SIZE and builder.record_count == 0
    plain = BatchBuilder()
    records = [
        (0, None, None, ()),
        (-(2**40), b"k" * 200, b"v" * 20_000, (("h", None), ("\u2603", b"x" * 70))),
        (2**50, bytearray(b"key"), memoryview(b"value"), ()),
    ]
    for ts, key, value, headers in records:
        builder.append(ts, key, value, headers)
        plain.append(ts, key, value, headers)
        assert builder.size_in_bytes == len(plain.build())
    assert builder.record_count == 3


def test_build_is_repeatable_and_appending_continues() -> None:
    builder = BatchBuilder()
    builder.append(1, b"a", b"b")
    first = builder.build()
    assert builder.build() == first
    builder.append(2, b"c", b"d")
    header, records = decode_batch(builder.build())
    assert header.record_count == 2 and [r.offset for r in records] == [0, 1]


def test_build_without_records_is_illegal() -> None:
    with pytest.raises(IllegalStateError):
        BatchBuilder().build()
    with pytest.raises(IllegalStateError):
        encode_batch([])


def test_appended_buffers_are_copied() -> None:
    key, value = bytearray(b"key"), bytearray(b"value")
    builder = BatchBuilder()
    builder.append(1, key, value, [("h", bytearray(b"hv"))])
    key[:] = b"XXX"
    value[:] = b"YYYYY"
    (record,) = decode_batch(builder.build())[1]
    assert (record.key, record.value, record.headers) == (b"key", b"value", (("h", b"hv"),))


@pytest.mark.parametrize(
    "args",
    [
        (1.5, b"k", b"v", ()),
        ("1", b"k", b"v", ()),
        (2**63, b"k", b"v", ()),
        (1, "key", b"v", ()),
        (1, b"k", 42, ()),
        (1, b"k", b"v", [("h",)]),
        (1, b"k", b"v", [(b"bytes-key", b"v")]),
        (1, b"k", b"v", [("h", "str value")]),
        (1, b"k", b"v", [("\ud800", b"v")]),  # a lone surrogate cannot be UTF-8
    ],
)
def test_invalid_appends_raise_and_leave_the_builder_unchanged(args: tuple) -> None:
    builder = BatchBuilder()
    builder.append(5, b"ok", b"ok")
    before = (builder.size_in_bytes, builder.record_count, builder.build())
    with pytest.raises(InvalidArgumentError):
        builder.append(*args)
    assert (builder.size_in_bytes, builder.record_count, builder.build()) == before


def test_timestamp_delta_overflow_is_rejected() -> None:
    builder = BatchBuilder()
    builder.append(-(2**63), None, None)
    with pytest.raises(InvalidArgumentError):
        builder.append(2**63 - 1, None, None)  # delta 2**64 - 1 does not fit a varlong


@pytest.mark.parametrize(
    "kwargs",
    [
        {"compression": 9},
        {"producer_epoch": 2**15},
        {"base_sequence": 2**31},
        {"partition_leader_epoch": -(2**31) - 1},
        {"producer_id": 2**63},
        {"base_offset": "0"},
        {"base_timestamp_ms": 1.0},
    ],
)
def test_invalid_builder_arguments(kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        BatchBuilder(**kwargs)


@pytest.mark.parametrize(
    ("key", "value", "headers"),
    [
        (None, None, ()),
        (b"", b"", ()),
        (b"k" * 100, b"v" * 100_000, (("a", b"b"), ("null", None))),
        (memoryview(b"abc"), bytearray(300), ()),
    ],
)
def test_estimate_record_size_bounds_the_real_size(key, value, headers) -> None:
    estimate = estimate_record_size(key, value, headers)
    for ts, position in ((0, 0), (2**62, 0), (-(2**62), 5000)):
        builder = BatchBuilder(base_timestamp_ms=0)
        for _ in range(position):
            builder.append(0, None, None)
        before = builder.size_in_bytes
        builder.append(ts, key, value, headers)
        actual = builder.size_in_bytes - before
        assert actual <= estimate
    # Tight: at most the worst-case varint overhead above the real size.
    assert estimate - actual <= 21
