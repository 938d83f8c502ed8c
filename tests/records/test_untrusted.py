"""Untrusted bytes: every input decodes or raises CorruptRecordError, quickly and boundedly."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logstore.errors import CorruptRecordError
from logstore.records import BatchBuilder, Compression, decode_batch, iter_records
from logstore.records import header as h
from logstore.records.varint import encode_varint

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def _sample_batch(codec: int = 0, count: int = 4) -> bytes:
    builder = BatchBuilder(compression=codec, producer_id=3, producer_epoch=0, base_sequence=0)
    for i in range(count):
        builder.append(
            1_000 + 70 * i,
            b"key-%d" % i if i % 2 else None,
            b"value-%d" % i * (i + 1),
            [("h\u00e9", b"x"), ("n", None)] if i % 3 == 0 else (),
        )
    return builder.build()


def _decode_or_corrupt(data: bytes, **kwargs: object) -> None:
    """Run every decoding entry point; only CorruptRecordError may escape."""
    for verify in (True, False):
        with contextlib.suppress(CorruptRecordError):
            decode_batch(data, verify_crc=verify, max_uncompressed_bytes=1 << 16, **kwargs)
        for partial in (True, False):
            try:
                for _ in iter_records(
                    data,
                    allow_partial_tail=partial,
                    verify_crc=verify,
                    max_uncompressed_bytes=1 << 16,
                ):
                    pass
            except CorruptRecordError:
                pass


@pytest.mark.parametrize("codec", list(Compression))
def test_truncation_at_every_cut_point(codec: int) -> None:
    raw = _sample_batch(codec)
    for cut in range(len(raw)):
        with pytest.raises(CorruptRecordError):
            decode_batch(raw[:cut])
        assert list(iter_records(raw[:cut])) == []
        if cut:
            with pytest.raises(CorruptRecordError):
                list(iter_records(raw[:cut], allow_partial_tail=False))


@pytest.mark.parametrize("codec", list(Compression))
def test_truncated_records_section_in_a_well_framed_batch(
    codec: int, make_batch: Callable[..., bytes]
) -> None:
    """Header, length and CRC are right; only the (compressed) records section is short."""
    raw = _sample_batch(codec)
    header = h.parse_header(raw)
    section = raw[h.RECORDS_OFFSET :]
    for cut in range(len(section)):
        batch = make_batch(section[:cut], header.record_count, codec=codec, compress_section=False)
        with pytest.raises(CorruptRecordError):
            decode_batch(batch)


def test_every_single_bit_flip() -> None:
    raw = _sample_batch(Compression.NONE, count=3)
    outside_crc = set(range(h.BASE_OFFSET_OFFSET, h.LENGTH_OFFSET)) | set(
        range(h.PARTITION_LEADER_EPOCH_OFFSET, h.MAGIC_OFFSET)
    )
    expected = decode_batch(raw)[1]
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            data = bytes(flipped)
            if i == h.BASE_OFFSET_OFFSET and bit == 7:
                # The sign bit of baseOffset: a negative base offset is rejected as corrupt.
                with pytest.raises(CorruptRecordError, match="negative base offset"):
                    decode_batch(data)
            elif i in outside_crc:
                # baseOffset and partitionLeaderEpoch are not covered by the CRC: the log
                # patches them. The records still decode, with shifted offsets at most.
                records = decode_batch(data)[1]
                assert [(r.key, r.value) for r in records] == [(r.key, r.value) for r in expected]
            else:
                with pytest.raises(CorruptRecordError):
                    decode_batch(data)
            _decode_or_corrupt(data)


def _rec(*fields: bytes, length: int | None = None) -> bytes:
    body = b"".join(fields)
    return encode_varint(len(body) if length is None else length) + body


V = encode_varint
GOOD = _rec(b"\x00", V(0), V(0), V(1), b"k", V(1), b"v", V(0))

MALFORMED = {
    "key past end": [_rec(b"\x00", V(0), V(0), V(500), b"k", V(1), b"v", V(0))],
    "value past end": [_rec(b"\x00", V(0), V(0), V(1), b"k", V(2**31 - 1), b"v", V(0))],
    "key length -2": [_rec(b"\x00", V(0), V(0), V(-2), V(1), b"v", V(0))],
    "value length -5": [_rec(b"\x00", V(0), V(0), V(-1), V(-5), V(0))],
    "length prefix too long": [_rec(b"\x00", V(0), V(0), V(-1), V(-1), V(0), length=7)],
    "length prefix too short": [_rec(b"\x00", V(0), V(0), V(1), b"k", V(1), b"v", V(0), length=6)],
    "length prefix negative": [_rec(b"\x00", V(0), V(0), V(-1), V(-1), V(0), length=-1)],
    "length prefix huge": [_rec(b"\x00", V(0), V(0), V(-1), V(-1), V(0), length=2**62)],
    "header count huge": [_rec(b"\x00", V(0), V(0), V(-1), V(-1), V(2**31 - 1), V(1), b"a")],
    "header count negative": [_rec(b"\x00", V(0), V(0), V(-1), V(-1), V(-1))],
    "header key not utf-8": [
        _rec(b"\x00", V(0), V(0), V(-1), V(-1), V(1), V(2), b"\xc3\x28", V(-1))
    ],
    "header key null": [_rec(b"\x00", V(0), V(0), V(-1), V(-1), V(1), V(-1), V(-1))],
    "header value -2": [_rec(b"\x00", V(0), V(0), V(-1), V(-1), V(1), V(1), b"a", V(-2))],
    "header value past end": [_rec(b"\x00", V(0), V(0), V(-1), V(-1), V(1), V(1), b"a", V(9))],
    "over-long timestamp varint": [_rec(b"\x00", b"\x80" * 10 + b"\x00", V(0), V(-1), V(-1), V(0))],
    "over-long length varint": [b"\x80" * 11 + b"\x00" + b"\x00" * 20],
    "over-long key length varint": [_rec(b"\x00", V(0), V(0), b"\xff" * 11, V(-1), V(0))],
    "offset delta repeats": [GOOD, GOOD],
    "offset delta decreases": [_rec(b"\x00", V(0), V(1), V(-1), V(-1), V(0)), GOOD],
    "offset delta negative": [_rec(b"\x00", V(0), V(-1), V(-1), V(-1), V(0))],
    "offset delta past lastOffsetDelta": [_rec(b"\x00", V(0), V(3), V(-1), V(-1), V(0))],
    "trailing garbage": [GOOD, b"\x00"],
}


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.ZSTD])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_records(case: str, codec: int, make_batch: Callable[..., bytes]) -> None:
    records = MALFORMED[case]
    count = 1 if case == "trailing garbage" else len(records)
    batch = make_batch(b"".join(records), count, codec=codec)
    with pytest.raises(CorruptRecordError):
        decode_batch(batch)
    # The same bytes are fine once the defect is the only difference from a good batch.
    assert len(decode_batch(make_batch(GOOD, 1, codec=codec))[1]) == 1


@pytest.mark.parametrize(
    ("count", "last_offset_delta"),
    [(2, 1), (0, 0), (2**31 - 1, 2**31 - 1), (5, 1)],
    ids=["one-too-many", "one-too-few", "huge", "more-than-offsets"],
)
def test_record_count_mismatches(
    count: int, last_offset_delta: int, make_batch: Callable[..., bytes]
) -> None:
    batch = make_batch(GOOD, count, last_offset_delta=last_offset_delta)
    started = time.perf_counter()
    with pytest.raises(CorruptRecordError):
        decode_batch(batch)
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize("codec_bits", [5, 6, 7])
def test_unknown_codec_in_attributes(codec_bits: int, make_batch: Callable[..., bytes]) -> None:
    batch = make_batch(GOOD, 1, attributes=codec_bits, compress_section=False)
    with pytest.raises(CorruptRecordError):
        decode_batch(batch)


@pytest.mark.parametrize("codec", [c for c in Compression if c])
def test_garbage_compressed_section(codec: int, make_batch: Callable[..., bytes]) -> None:
    with pytest.raises(CorruptRecordError):
        decode_batch(make_batch(b"\x00\x01garbage" * 10, 1, codec=codec, compress_section=False))


def test_decompression_bomb_inside_a_batch(make_batch: Callable[..., bytes]) -> None:
    block = 128 * 1024
    rle = (block << 3) | 2  # zstd RLE block header; the last one also sets bit 0
    frame = (
        b"\x28\xb5\x2f\xfd"
        + bytes([0x00, 7 << 3])
        + (rle.to_bytes(3, "little") + b"\x00") * 8191
        + (rle | 1).to_bytes(3, "little")
        + b"\x00"
    )  # 1 GiB of zeros
    batch = make_batch(frame, 1, codec=Compression.ZSTD, compress_section=False)
    started = time.perf_counter()
    with pytest.raises(CorruptRecordError):
        decode_batch(batch, max_uncompressed_bytes=1 << 20)
    assert time.perf_counter() - started < 1.0


# --- fuzzing -------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_corrupt(data)
    _decode_or_corrupt(_sample_batch()[: h.RECORDS_OFFSET] + data)


@FUZZ
@given(
    section=st.binary(max_size=200),
    count=st.integers(min_value=0, max_value=50) | st.integers(min_value=-5, max_value=2**31 - 1),
    codec=st.sampled_from(list(Compression)),
)
def test_fuzz_records_section_behind_a_valid_header(
    section: bytes, count: int, codec: int, make_batch: Callable[..., bytes]
) -> None:
    _decode_or_corrupt(make_batch(section, count, codec=codec, last_offset_delta=max(count, 0)))
    _decode_or_corrupt(make_batch(section, count, codec=codec, compress_section=False))


_interesting_ints = st.sampled_from(
    [0, 1, -1, -2, 2, 5, 6, 7, 63, 64, 127, 128, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
) | st.integers(-300, 300)
# Pieces a records section is made of, valid or not: varints, raw bytes, over-long varints.
_pieces = st.one_of(
    _interesting_ints.map(encode_varint),
    st.binary(max_size=12),
    st.integers(10, 14).map(lambda n: b"\x80" * n + b"\x01"),
)


@FUZZ
@given(
    records=st.lists(st.lists(_pieces, max_size=10), max_size=6),
    count=st.integers(0, 8),
    codec=st.sampled_from([Compression.NONE, Compression.LZ4]),
    prefix_lengths=st.booleans(),
)
def test_fuzz_structured_records_section(
    records: list[list[bytes]],
    count: int,
    codec: int,
    prefix_lengths: bool,
    make_batch: Callable[..., bytes],
) -> None:
    """Sections assembled from varint-shaped pieces get past the first field far more often."""
    if prefix_lengths:  # right length prefixes, so the fields inside are what is tested
        section = b"".join(encode_varint(len(b"".join(r))) + b"".join(r) for r in records)
    else:
        section = b"".join(b"".join(r) for r in records)
    _decode_or_corrupt(make_batch(section, count, codec=codec, last_offset_delta=count + 3))


def _mutate(data: bytearray, edits: list[tuple[str, int, int]]) -> None:
    for op, index, byte in edits:
        index %= len(data) + 1
        if op == "set" and index < len(data):
            data[index] = byte
        elif op == "insert":
            data.insert(index, byte)
        elif op == "delete" and index < len(data):
            del data[index]


@settings(FUZZ, max_examples=500)
@given(
    codec=st.sampled_from(list(Compression)),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete"]), st.integers(0, 10**6), st.integers(0, 255)
        ),
        min_size=1,
        max_size=6,
    ),
    reframe=st.booleans(),
)
def test_fuzz_mutated_valid_batches(codec: int, edits: list, reframe: bool) -> None:
    data = bytearray(_sample_batch(codec))
    _mutate(data, edits)
    if reframe and len(data) >= h.HEADER_SIZE:
        # Fix batchLength and the CRC so the mutation reaches the decoder, not the CRC check.
        fields = list(h.HEADER.unpack_from(data))
        fields[1] = len(data) - h.LOG_OVERHEAD
        h.HEADER.pack_into(data, 0, *fields)
        with contextlib.suppress(CorruptRecordError):  # the mutated header may be invalid
            h.write_crc(data)
    _decode_or_corrupt(bytes(data))
