"""Shared helpers of the record codec tests: hand-assembled batches and kafka-python adapters.

Every test in this folder runs twice: once on the pure-Python reference implementation and once
on the C accelerator (skipped when it is not built, unless LOGSTORE_REQUIRE_SPEEDUPS=1, as in
CI, makes a missing build a failure).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

import crc32c
import pytest

import logstore.client.partitioner as partitioner
import logstore.records.builder as builder
import logstore.records.reader as reader
from logstore.records import header as h
from logstore.records import speedups
from logstore.records.compression import Compression, compress
from logstore.records.varint import encode_varint

ALL_CODECS = list(Compression)


def require_speedups() -> None:
    """Skip (or, with LOGSTORE_REQUIRE_SPEEDUPS=1, fail) when the C accelerator is not built."""
    if speedups.accelerated():
        return
    if os.environ.get("LOGSTORE_REQUIRE_SPEEDUPS") == "1":
        pytest.fail("the C accelerator logstore.records._speedups was not built")
    pytest.skip("the C accelerator is not built (or LOGSTORE_PURE_PYTHON is set)")


@pytest.fixture(autouse=True, params=["python", "c"])
def implementation(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Run the test on one implementation of the per-record hot paths."""
    if request.param == "c":
        require_speedups()
    else:
        monkeypatch.setattr(reader, "_c_decode_records", None)
        monkeypatch.setattr(builder, "_c_encode_record", None)
        monkeypatch.setattr(partitioner, "murmur2", partitioner.murmur2_py)
    yield request.param


def assemble_batch(
    records_section: bytes,
    count: int,
    *,
    codec: int = 0,
    last_offset_delta: int | None = None,
    base_offset: int = 0,
    attributes: int = 0,
    base_timestamp: int = 1_000,
    max_timestamp: int = 1_000,
    compress_section: bool = True,
) -> bytes:
    """A batch around raw record-section bytes, with a correct batchLength and CRC.

    Lets tests hand-craft malformed records while the header stays valid, so the record
    decoder (not the framing or CRC check) is what must reject them.
    """
    payload = compress(codec, records_section) if codec and compress_section else records_section
    if last_offset_delta is None:
        last_offset_delta = max(count - 1, 0)
    buf = bytearray(
        h.HEADER.pack(
            base_offset,
            h.HEADER_SIZE - h.LOG_OVERHEAD + len(payload),
            -1,
            h.MAGIC,
            0,
            attributes | codec,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            -1,
            -1,
            -1,
            count,
        )
    )
    buf += payload
    # Not h.write_crc: that validates the header, and tests need invalid counts too.
    struct.pack_into(">I", buf, h.CRC_OFFSET, crc32c.crc32c(bytes(buf[h.ATTRIBUTES_OFFSET :])))
    return bytes(buf)


def raw_record(body_fields: list[bytes], *, length: int | None = None) -> bytes:
    """A record from already-encoded body fields, with a (possibly wrong) length prefix."""
    body = b"".join(body_fields)
    return encode_varint(len(body) if length is None else length) + body


def simple_record(offset_delta: int, key: bytes | None, value: bytes | None) -> bytes:
    """A well-formed record without headers and timestamp delta 0."""

    def blob(data: bytes | None) -> bytes:
        return b"\x01" if data is None else encode_varint(len(data)) + data

    return raw_record(
        [
            b"\x00",
            encode_varint(0),
            encode_varint(offset_delta),
            blob(key),
            blob(value),
            encode_varint(0),
        ]
    )


@pytest.fixture
def make_batch() -> Callable[..., bytes]:
    return assemble_batch


@pytest.fixture
def make_record() -> Callable[..., bytes]:
    return raw_record


@pytest.fixture
def good_record() -> Callable[..., bytes]:
    return simple_record


@pytest.fixture
def pack_int32() -> Callable[[int], bytes]:
    return struct.Struct(">i").pack
