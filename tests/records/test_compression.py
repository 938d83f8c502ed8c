"""Compression codecs: Kafka's formats, bounded decompression, corrupt input handling."""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
import zlib

import lz4.frame
import pytest
import snappy
import zstandard
from kafka import codec as kafka_codec

from logstore.errors import CorruptRecordError, InvalidArgumentError, UnsupportedCompressionError
from logstore.records.compression import Compression, compress, decompress

CODECS = [c for c in Compression if c is not Compression.NONE]
GIB = 1 << 30
SAMPLES = [b"", b"a", b"hello world " * 5000, os.urandom(70_000)]


def test_from_name() -> None:
    assert Compression.from_name("zstd") is Compression.ZSTD
    assert Compression.from_name("none") is Compression.NONE
    assert Compression.from_name("GZIP") is Compression.GZIP
    assert Compression.from_name("snappy") is Compression.SNAPPY
    assert Compression.from_name("lz4") is Compression.LZ4
    assert [c.codec_name for c in Compression] == ["none", "gzip", "snappy", "lz4", "zstd"]
    for bad in ("brotli", "", "producer"):
        with pytest.raises(InvalidArgumentError):
            Compression.from_name(bad)


@pytest.mark.parametrize("codec", list(Compression))
@pytest.mark.parametrize("data", SAMPLES, ids=["empty", "one", "text", "random"])
def test_round_trip_exact_budget(codec: Compression, data: bytes) -> None:
    packed = compress(codec, data)
    assert decompress(codec, packed, max_bytes=len(data)) == data
    assert decompress(codec, memoryview(packed), max_bytes=len(data)) == data
    if data:
        with pytest.raises(CorruptRecordError):
            decompress(codec, packed, max_bytes=len(data) - 1)


def test_formats_are_the_ones_kafka_writes() -> None:
    data = b"kafka " * 20_000
    assert compress(Compression.GZIP, data)[:2] == b"\x1f\x8b"
    xerial = compress(Compression.SNAPPY, data)
    assert xerial[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    # 120,000 bytes in 32 KiB blocks, as snappy-java's SnappyOutputStream frames them.
    pos, blocks = 16, 0
    while pos < len(xerial):
        (length,) = struct.unpack_from(">i", xerial, pos)
        pos += 4 + length
        blocks += 1
    assert (pos, blocks) == (len(xerial), 4)
    frame = compress(Compression.LZ4, data)
    assert frame[:4] == b"\x04\x22\x4d\x18"
    # FLG: version 1, independent blocks, no checksums, no content size; BD: 64 KiB blocks.
    assert frame[4] == 0b0110_0000 and frame[5] == 0x40
    assert compress(Compression.ZSTD, data)[:4] == b"\x28\xb5\x2f\xfd"


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_reads_our_output_and_we_read_its(codec: Compression) -> None:
    data = b"interop " * 10_000 + os.urandom(1000)
    ours = compress(codec, data)
    encode, decode = {
        Compression.GZIP: (kafka_codec.gzip_encode, kafka_codec.gzip_decode),
        Compression.SNAPPY: (kafka_codec.snappy_encode, kafka_codec.snappy_decode),
        Compression.LZ4: (kafka_codec.lz4_encode, kafka_codec.lz4_decode),
        Compression.ZSTD: (kafka_codec.zstd_encode, kafka_codec.zstd_decode),
    }[codec]
    assert decode(ours) == data
    assert decompress(codec, encode(data), max_bytes=len(data)) == data


def test_raw_snappy_and_multi_member_streams_are_accepted() -> None:
    data = b"abc" * 1000
    assert decompress(Compression.SNAPPY, snappy.compress(data), max_bytes=3000) == data
    gz = compress(Compression.GZIP, data)
    assert decompress(Compression.GZIP, gz + gz, max_bytes=6000) == data * 2
    zs = compress(Compression.ZSTD, data)
    assert decompress(Compression.ZSTD, zs + zs, max_bytes=6000) == data * 2
    lz = compress(Compression.LZ4, data)
    assert decompress(Compression.LZ4, lz + lz, max_bytes=6000) == data * 2
    linked = lz4.frame.compress(data, block_linked=True)
    assert decompress(Compression.LZ4, linked, max_bytes=3000) == data


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_and_garbage_input_raise_corrupt(codec: Compression) -> None:
    data = b"some records " * 3000 + os.urandom(3000)
    packed = compress(codec, data)
    cuts = sorted({0, 1, 5, 16, 17, len(packed) // 2, len(packed) - 1})
    for cut in cuts:
        try:
            out = decompress(codec, packed[:cut], max_bytes=1 << 20)
        except CorruptRecordError:
            continue
        # Only a xerial snappy stream cut exactly at a block boundary is indistinguishable
        # from a shorter stream; it must then decode to a prefix.
        assert codec is Compression.SNAPPY and data.startswith(out)
    for garbage in (b"\x00" * 50, os.urandom(64), b"\x82SNAPPY\x00" + os.urandom(40)):
        with pytest.raises(CorruptRecordError):
            decompress(codec, garbage, max_bytes=1 << 20)
    if codec is not Compression.SNAPPY:  # xerial streams have no end marker
        with pytest.raises(CorruptRecordError):
            decompress(codec, packed + b"trailing garbage", max_bytes=1 << 20)


def test_unknown_codecs() -> None:
    for codec in (5, 6, 7, -1):
        with pytest.raises(CorruptRecordError):
            decompress(codec, b"xx", max_bytes=10)
        with pytest.raises(UnsupportedCompressionError):
            compress(codec, b"xx")
    with pytest.raises(InvalidArgumentError):
        decompress(Compression.GZIP, b"", max_bytes=-1)


# --- decompression bombs: each expands to >= 1 GiB from a small payload ------------------------


def _gzip_bomb(mib: int = 1024) -> bytes:
    """One gzip member of ``mib`` MiB (1 GiB) of zeros, ~1 MiB, built without compressing 1 GiB.

    After a full flush deflate restarts from an empty window, so every flushed MiB of zeros
    compresses to the same bytes: compress one MiB and repeat it.
    """
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    chunk = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, (mib << 20) & 0xFFFFFFFF)
    return header + chunk * mib + deflater.flush() + trailer


def _zstd_bomb() -> bytes:
    """A hand-made zstd frame of 8192 RLE blocks of 128 KiB: 1 GiB from 32 KiB."""
    magic = b"\x28\xb5\x2f\xfd"
    header = bytes([0x00, (17 - 10) << 3])  # FHD: no FCS/checksum; window 2**17
    block = 128 * 1024
    rle = (block << 3) | (1 << 1)  # block type 1 = RLE; the last block sets bit 0
    blocks = (rle.to_bytes(3, "little") + b"\x00") * 8191
    return magic + header + blocks + (rle | 1).to_bytes(3, "little") + b"\x00"


def _lz4_bomb(blocks: int = 16384) -> bytes:
    """One lz4 frame repeating an independent block of 64 KiB zeros 16384 times (1 GiB)."""
    frame = lz4.frame.compress(
        bytes(64 * 1024),
        block_linked=False,
        store_size=False,
        content_checksum=False,
        block_size=lz4.frame.BLOCKSIZE_MAX64KB,
    )
    header, block, end_mark = frame[:7], frame[7:-4], frame[-4:]
    return header + block * blocks + end_mark


def _snappy_bomb() -> bytes:
    """xerial blocks of 4 MiB zeros: 64 MiB really; the 1 GiB case is the declared-size one."""
    block = snappy.compress(bytes(4 << 20))
    framed = struct.pack(">i", len(block)) + block
    return b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + framed * 16


def test_bombs_really_expand_to_one_gib() -> None:
    reader = zstandard.ZstdDecompressor().stream_reader(_zstd_bomb())
    total = 0
    while chunk := reader.read(1 << 24):
        total += len(chunk)
    assert total == GIB
    # The gzip construction, checked (CRC and size trailer included) at a size that is quick.
    assert zlib.decompress(_gzip_bomb(mib=16), 31) == bytes(16 << 20)
    assert lz4.frame.decompress(_lz4_bomb(blocks=256)) == bytes(16 << 20)


@pytest.mark.parametrize(
    ("codec", "bomb"),
    [
        (Compression.GZIP, _gzip_bomb),
        (Compression.ZSTD, _zstd_bomb),
        (Compression.LZ4, _lz4_bomb),
        (Compression.SNAPPY, _snappy_bomb),
        # A raw snappy block whose length prefix claims 1 GiB.
        (Compression.SNAPPY, lambda: b"\x80\x80\x80\x80\x04" + b"\x00" * 100),
        # The same inside xerial framing.
        (
            Compression.SNAPPY,
            lambda: (
                b"\x82SNAPPY\x00"
                + struct.pack(">iii", 1, 1, 105)
                + b"\x80\x80\x80\x80\x04"
                + b"\x00" * 100
            ),
        ),
    ],
    ids=["gzip", "zstd", "lz4", "snappy-xerial", "snappy-raw-declared", "snappy-xerial-declared"],
)
def test_decompression_bombs_stop_at_the_budget(codec: Compression, bomb) -> None:
    payload = bomb()
    max_bytes = 1 << 20
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(CorruptRecordError):
            decompress(codec, payload, max_bytes=max_bytes)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    # The output budget plus bounded codec buffers (one block, one chunk), nowhere near 1 GiB.
    assert peak < 16 * max_bytes + len(payload)


def test_zstd_streamed_frames_and_lying_content_sizes() -> None:
    data = b"zstd-jni streams frames without a content size " * 2000
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    assert zstandard.frame_content_size(streamed) == -1
    assert decompress(Compression.ZSTD, streamed, max_bytes=len(data)) == data
    with pytest.raises(CorruptRecordError):
        decompress(Compression.ZSTD, streamed, max_bytes=len(data) - 1)
    sized = bytearray(compress(Compression.ZSTD, data))
    # Frame header: magic (4), FHD (1), window descriptor (1, absent in single-segment frames),
    # then the content size; FHD's top two bits select a 4-byte field for this size.
    fhd = sized[4]
    assert fhd >> 6 == 2 and zstandard.frame_content_size(bytes(sized)) == len(data)
    fcs_at = 5 + (0 if fhd & 0x20 else 1)
    for lie in (len(data) - 1, len(data) + 1):
        sized[fcs_at : fcs_at + 4] = lie.to_bytes(4, "little")
        assert zstandard.frame_content_size(bytes(sized)) == lie
        with pytest.raises(CorruptRecordError):
            decompress(Compression.ZSTD, bytes(sized), max_bytes=1 << 20)
