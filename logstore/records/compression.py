"""Compression codecs of RecordBatch v2, byte-compatible with what Kafka's Java client writes.

The records section of a batch (everything after the 61-byte header) is compressed as a whole.
Formats, as Kafka writes them (``org.apache.kafka.common.compress``)::

    gzip    RFC 1952 gzip stream (java.util.zip.GZIPOutputStream). Readers accept several
            concatenated members, as GZIPInputStream does.
    snappy  snappy-java's "xerial" stream framing:
                magic    8 bytes  b"\\x82SNAPPY\\x00"
                version  int32 BE (1)
                compat   int32 BE (1)
                blocks   repeated: int32 BE compressed length, raw snappy block
            Each raw snappy block starts with its uncompressed length as an unsigned
            (non-zigzag) base-128 varint of at most 5 bytes. Writers frame 32 KiB blocks like
            snappy-java; readers also accept a bare raw snappy block (some non-Java clients).
    lz4     LZ4 frame format (magic 0x184D2204) with independent 64 KiB blocks, no content size
            and no content checksum: exactly Kafka's Lz4BlockOutputStream, whose reader rejects
            linked blocks.
    zstd    Zstandard frame(s) (zstd-jni's ZstdOutputStream). Readers accept several frames.

Decompression is bounded: the caller passes ``max_bytes`` and no codec ever produces (or
allocates buffers for) much more than that before :class:`CorruptRecordError` is raised, so a
tiny "decompression bomb" cannot exhaust memory. Every exception of the compression libraries
is translated into :class:`CorruptRecordError`. All functions are stateless and thread-safe.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Callable

import lz4.frame as _lz4f
import snappy as _snappy
import zstandard as _zstd

from logstore.errors import CorruptRecordError, InvalidArgumentError, UnsupportedCompressionError

Buffer = bytes | bytearray | memoryview


class Compression(enum.IntEnum):
    """The compression codec id stored in bits 0-2 of a batch's attributes."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def from_name(cls, name: str) -> Compression:
        """Map a Kafka ``compression.type`` name (``none``, ``gzip``, ...) to the codec."""
        try:
            return cls[name.strip().upper()]
        except (KeyError, AttributeError):
            raise InvalidArgumentError(
                f"unknown compression type {name!r}; expected one of "
                + ", ".join(c.name.lower() for c in cls)
            ) from None

    @property
    def codec_name(self) -> str:
        """The Kafka ``compression.type`` name of this codec."""
        return self.name.lower()


# --- gzip ------------------------------------------------------------------------------------

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip container only, as Kafka writes and reads
_GZIP_LEVEL = 6  # java.util.zip.Deflater.DEFAULT_COMPRESSION is level 6


def _gzip_compress(data: Buffer) -> bytes:
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(data) + compressor.flush()


def _gzip_decompress(data: Buffer, max_bytes: int) -> bytes:
    out: list[bytes] = []
    total = 0
    pending: Buffer = data
    while True:  # one iteration per gzip member
        inflater = zlib.decompressobj(_GZIP_WBITS)
        while not inflater.eof:
            # Ask for at most one byte more than allowed: seeing that byte proves the bomb.
            chunk = inflater.decompress(pending, max_bytes - total + 1)
            pending = inflater.unconsumed_tail
            total += len(chunk)
            if total > max_bytes:
                raise _too_large("gzip", max_bytes)
            if not chunk and not pending and not inflater.eof:
                raise CorruptRecordError("truncated gzip stream")
            out.append(chunk)
        pending = inflater.unused_data
        if not pending:
            return b"".join(out)


# --- snappy ----------------------------------------------------------------------------------

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")  # magic, version, compatible version
_XERIAL_VERSION = 1
_XERIAL_BLOCK_LENGTH = struct.Struct(">i")
_XERIAL_BLOCK_SIZE = 32 * 1024  # snappy-java SnappyOutputStream's default block size
_SNAPPY_MAX_LENGTH_BYTES = 5  # the uncompressed length is a uint32 varint


def _snappy_compress(data: Buffer) -> bytes:
    view = memoryview(data)
    parts = [_XERIAL_HEADER.pack(_XERIAL_MAGIC, _XERIAL_VERSION, _XERIAL_VERSION)]
    for start in range(0, len(view), _XERIAL_BLOCK_SIZE):
        block = _snappy.compress(bytes(view[start : start + _XERIAL_BLOCK_SIZE]))
        parts.append(_XERIAL_BLOCK_LENGTH.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_uncompressed_length(block: Buffer) -> int:
    """Read the uint32 varint that starts every raw snappy block."""
    value = 0
    for i in range(min(len(block), _SNAPPY_MAX_LENGTH_BYTES)):
        b = block[i]
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return value
    raise CorruptRecordError("snappy block has a truncated or over-long length prefix")


def _snappy_block(block: Buffer, budget: int, max_bytes: int) -> bytes:
    """Decompress one raw snappy block after checking its declared size against ``budget``."""
    declared = _snappy_uncompressed_length(block)
    if declared > budget:
        raise _too_large("snappy", max_bytes)
    try:
        out = _snappy.uncompress(bytes(block))
    except Exception as exc:  # noqa: BLE001 - any failure of the library means the block is corrupt
        raise CorruptRecordError(f"invalid snappy block: {exc!r}") from None
    if len(out) != declared:
        raise CorruptRecordError("snappy block length does not match its header")
    return bytes(out)


def _snappy_decompress(data: Buffer, max_bytes: int) -> bytes:
    view = memoryview(data)
    if len(view) < _XERIAL_HEADER.size or view[: len(_XERIAL_MAGIC)] != _XERIAL_MAGIC:
        return _snappy_block(view, max_bytes, max_bytes)
    # The version fields are not checked: snappy-java ignores them and some producers write
    # them little-endian.
    out: list[bytes] = []
    total = 0
    pos = _XERIAL_HEADER.size
    end = len(view)
    while pos < end:
        if end - pos < _XERIAL_BLOCK_LENGTH.size:
            raise CorruptRecordError("truncated xerial snappy block length")
        (length,) = _XERIAL_BLOCK_LENGTH.unpack_from(view, pos)
        pos += _XERIAL_BLOCK_LENGTH.size
        if length < 0 or length > end - pos:
            raise CorruptRecordError(f"xerial snappy block length {length} is out of bounds")
        block = _snappy_block(view[pos : pos + length], max_bytes - total, max_bytes)
        total += len(block)
        out.append(block)
        pos += length
    return b"".join(out)


# --- lz4 -------------------------------------------------------------------------------------


def _lz4_compress(data: Buffer) -> bytes:
    frame: bytes = _lz4f.compress(
        data,
        block_size=_lz4f.BLOCKSIZE_MAX64KB,
        block_linked=False,
        content_checksum=False,
        store_size=False,
    )
    return frame


# python-lz4 allocates max_length bytes up front, so ask for output in chunks of at most this.
_LZ4_OUTPUT_CHUNK = 1 << 20


def _lz4_decompress(data: Buffer, max_bytes: int) -> bytes:
    out: list[bytes] = []
    total = 0
    pending: Buffer = data
    while True:  # one iteration per frame
        decompressor = _lz4f.LZ4FrameDecompressor()
        while True:
            limit = min(max_bytes - total + 1, _LZ4_OUTPUT_CHUNK)
            chunk = decompressor.decompress(pending, max_length=limit)
            pending = b""
            total += len(chunk)
            if total > max_bytes:
                raise _too_large("lz4", max_bytes)
            out.append(chunk)
            if decompressor.eof:
                break
            if decompressor.needs_input:
                raise CorruptRecordError("truncated lz4 frame")
        pending = decompressor.unused_data
        if not pending:
            return b"".join(out)


# --- zstd ------------------------------------------------------------------------------------

_ZSTD_LEVEL = 3  # zstd's (and Kafka's) default level
_ZSTD_MAX_BLOCK = 128 * 1024  # no zstd block decodes to more than this
_ZSTD_MIN_BLOCK_BYTES = 4  # the smallest block (an RLE block) is a 3-byte header + 1 byte
# Output allowed past the budget inside one call (then rejected): keeps input steps >= 32 bytes
# when the budget is nearly used up, instead of feeding a tight budget's tail 4 bytes at a time.
_ZSTD_SLACK = 1 << 20
_ZSTD_MIN_WINDOW = 8 << 20  # windows legitimate writers use (zstd-jni level 3: <= 8 MiB)
_ZSTD_MAX_WINDOW = 1 << 27  # libzstd's default limit


def _zstd_compress(data: Buffer) -> bytes:
    return _zstd.ZstdCompressor(level=_ZSTD_LEVEL).compress(data)


def _zstd_decompress(data: Buffer, max_bytes: int) -> bytes:
    # The window buffer is allocated up front from the frame header, so cap it near max_bytes.
    window = min(max(_ZSTD_MIN_WINDOW, 1 << max(max_bytes, 1).bit_length()), _ZSTD_MAX_WINDOW)
    decompressor = _zstd.ZstdDecompressor(max_window_size=window)
    view = memoryview(data)
    end = len(view)
    if not end:
        raise CorruptRecordError("empty zstd data")
    # Fast path: a single frame declaring its size within budget decodes in one call into a
    # buffer of exactly that size; libzstd fails (rather than overrun) if the frame lies.
    declared = _zstd.frame_content_size(view)
    if 0 < declared <= max_bytes:
        try:
            out_bytes: bytes = decompressor.decompress(view, allow_extra_data=False)
            return out_bytes
        except _zstd.ZstdError:
            pass  # several frames, or corrupt: the streaming path below decides
    out: list[bytes] = []
    total = 0
    pos = 0
    while pos < end:  # one iteration per frame
        obj = decompressor.decompressobj()
        while not obj.eof:
            if pos >= end:
                raise CorruptRecordError("truncated zstd frame")
            # python-zstandard cannot cap the output of one call, so cap the input instead:
            # every 4 bytes fed complete at most one block (<= 128 KiB of output), so one call
            # produces at most the remaining budget + slack + a block or two.
            step = (max_bytes - total + _ZSTD_SLACK) * _ZSTD_MIN_BLOCK_BYTES // _ZSTD_MAX_BLOCK
            piece = view[pos : pos + step]
            pos += len(piece)
            chunk = obj.decompress(piece)
            total += len(chunk)
            if total > max_bytes:
                raise _too_large("zstd", max_bytes)
            out.append(chunk)
        # Bytes fed past the end of this frame come back as unused_data: rewind over them.
        pos -= len(obj.unused_data)
    return b"".join(out)


# --- dispatch --------------------------------------------------------------------------------


def _too_large(codec: str, max_bytes: int) -> CorruptRecordError:
    return CorruptRecordError(f"{codec} data decompresses to more than {max_bytes} bytes")


# Keyed by int: IntEnum members hash and compare like their values, so raw codec ids look up.
_COMPRESSORS: dict[int, Callable[[Buffer], bytes]] = {
    Compression.GZIP: _gzip_compress,
    Compression.SNAPPY: _snappy_compress,
    Compression.LZ4: _lz4_compress,
    Compression.ZSTD: _zstd_compress,
}

_DECOMPRESSORS: dict[int, Callable[[Buffer, int], bytes]] = {
    Compression.GZIP: _gzip_decompress,
    Compression.SNAPPY: _snappy_decompress,
    Compression.LZ4: _lz4_decompress,
    Compression.ZSTD: _zstd_decompress,
}


def compress(codec: int, data: Buffer) -> bytes:
    """Compress ``data`` with ``codec`` in the format Kafka's Java client writes.

    Raises :class:`UnsupportedCompressionError` for an unknown codec id.
    """
    if codec == Compression.NONE:
        return bytes(data)
    try:
        compressor = _COMPRESSORS[codec]
    except KeyError:
        raise UnsupportedCompressionError(f"unknown compression codec {codec!r}") from None
    return compressor(data)


def decompress(codec: int, data: Buffer, *, max_bytes: int) -> bytes:
    """Decompress ``data`` written with ``codec``, producing at most ``max_bytes`` bytes.

    Raises :class:`CorruptRecordError` if the data is not valid for the codec, is truncated,
    has trailing garbage, or would decompress to more than ``max_bytes`` bytes (checked while
    decompressing, before the excess is allocated); and for an unknown codec id, since the id
    comes from the (untrusted) batch attributes.
    """
    if max_bytes < 0:
        raise InvalidArgumentError(f"max_bytes must be >= 0, not {max_bytes}")
    if codec == Compression.NONE:
        if len(data) > max_bytes:
            raise _too_large("uncompressed", max_bytes)
        return bytes(data)
    try:
        decompressor = _DECOMPRESSORS[codec]
    except (KeyError, TypeError):
        raise CorruptRecordError(f"unknown compression codec {codec!r}") from None
    try:
        return decompressor(data, max_bytes)
    except CorruptRecordError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - zlib.error, ZstdError, lz4's RuntimeError, ...
        raise CorruptRecordError(f"invalid {Compression(codec).codec_name} data: {exc!r}") from None
