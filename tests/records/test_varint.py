"""Zigzag varints: Kafka's exact encodings, int64 round trips, rejection of bad bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.record.util import decode_varint as kafka_decode_varint
from kafka.record.util import encode_varint as kafka_encode_varint

from logstore.errors import CorruptRecordError, InvalidArgumentError
from logstore.records.varint import (
    INT64_MAX,
    INT64_MIN,
    SMALL_LIMIT,
    decode_varint,
    encode_varint,
    size_of_varint,
)

# Values and encodings from Kafka's ByteUtilsTest (zigzag varint / varlong).
KNOWN = [
    (0, b"\x00"),
    (-1, b"\x01"),
    (1, b"\x02"),
    (-2, b"\x03"),
    (63, b"\x7e"),
    (-64, b"\x7f"),
    (64, b"\x80\x01"),
    (-65, b"\x81\x01"),
    (8191, b"\xfe\x7f"),
    (-8192, b"\xff\x7f"),
    (8192, b"\x80\x80\x01"),
    (-8193, b"\x81\x80\x01"),
    (1048575, b"\xfe\xff\x7f"),
    (-1048576, b"\xff\xff\x7f"),
    (1048576, b"\x80\x80\x80\x01"),
    (2**31 - 1, b"\xfe\xff\xff\xff\x0f"),
    (-(2**31), b"\xff\xff\xff\xff\x0f"),
    (INT64_MAX, b"\xfe" + b"\xff" * 8 + b"\x01"),
    (INT64_MIN, b"\xff" * 9 + b"\x01"),
]


@pytest.mark.parametrize(("value", "encoded"), KNOWN)
def test_known_kafka_encodings(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(encoded, 0) == (value, len(encoded))
    assert size_of_varint(value) == len(encoded)


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_round_trip_across_int64(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) == size_of_varint(value) <= 10
    assert decode_varint(b"junk" + encoded + b"tail", 4) == (value, 4 + len(encoded))
    assert decode_varint(memoryview(encoded), 0) == (value, len(encoded))
    out = bytearray()
    kafka_encode_varint(value, out.append)
    assert bytes(out) == encoded
    assert kafka_decode_varint(encoded, 0) == (value, len(encoded))


def test_table_boundaries_match_slow_path() -> None:
    for value in (SMALL_LIMIT - 1, SMALL_LIMIT, -SMALL_LIMIT, -SMALL_LIMIT - 1):
        encoded = encode_varint(value)
        assert decode_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize("bad", [INT64_MAX + 1, INT64_MIN - 1, 2**100])
def test_encode_rejects_values_outside_int64(bad: int) -> None:
    with pytest.raises(InvalidArgumentError):
        encode_varint(bad)


@pytest.mark.parametrize("bad", [1.5, "1", None, True])
def test_encode_rejects_non_ints(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        encode_varint(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80",
        b"\xff\xff",
        b"\x80" * 10,  # ten continuation bytes and no end
        b"\x80" * 10 + b"\x00",  # eleven bytes: over-long
        b"\xff" * 10 + b"\x7f",
        b"\xff" * 9 + b"\x02",  # 10th byte above bit 63: outside int64
        b"\xff" * 9 + b"\x7f",
    ],
)
def test_decode_rejects_truncated_overlong_and_out_of_range(data: bytes) -> None:
    with pytest.raises(CorruptRecordError):
        decode_varint(data, 0)


def test_decode_rejects_positions_outside_the_buffer() -> None:
    with pytest.raises(CorruptRecordError):
        decode_varint(b"\x02", 1)
    with pytest.raises(CorruptRecordError):
        decode_varint(b"\x02", -1)


def test_ten_byte_encoding_is_accepted() -> None:
    # A non-canonical but in-range 10-byte encoding of 0 (Java's readVarlong accepts it).
    assert decode_varint(b"\x80" * 9 + b"\x00", 0) == (0, 10)
