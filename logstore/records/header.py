"""The RecordBatch v2 header: layout, parsing, validation and in-place patching.

Byte format (Kafka's RecordBatch, magic 2; all integers big-endian)::

    offset  size  field
         0     8  baseOffset            first offset of the batch (assigned by the log)
         8     4  batchLength           bytes after this field (partitionLeaderEpoch .. end)
        12     4  partitionLeaderEpoch  leader epoch at append (set by the log)
        16     1  magic                 always 2
        17     4  crc                   CRC-32C (Castagnoli) of attributes .. end of batch
        21     2  attributes            bits 0-2 compression (0 none, 1 gzip, 2 snappy, 3 lz4,
                                        4 zstd), bit 3 timestamp type (1 = LogAppendTime),
                                        bit 4 transactional, bit 5 control batch,
                                        bit 6 baseTimestamp is the delete horizon (compaction)
        23     4  lastOffsetDelta       lastOffset - baseOffset
        27     8  baseTimestamp
        35     8  maxTimestamp
        43     8  producerId            -1 when not idempotent
        51     2  producerEpoch
        53     4  baseSequence
        57     4  recordsCount
        61     -  records               (compressed as a whole when compression != 0)

The first 12 bytes (baseOffset, batchLength) are the "log overhead" shared by every Kafka message
format. baseOffset and partitionLeaderEpoch are outside the CRC, so the log patches them in place
when it assigns offsets; anything from attributes on is covered by the CRC.

Field offsets below are computed from the struct formats, never written as literals.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

import crc32c as _crc32c

from logstore.errors import CorruptRecordError

MAGIC = 2

# Prefix formats, one field at a time, so every field offset is derived from struct.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("base_offset", "q"),
    ("batch_length", "i"),
    ("partition_leader_epoch", "i"),
    ("magic", "b"),
    ("crc", "I"),
    ("attributes", "h"),
    ("last_offset_delta", "i"),
    ("base_timestamp", "q"),
    ("max_timestamp", "q"),
    ("producer_id", "q"),
    ("producer_epoch", "h"),
    ("base_sequence", "i"),
    ("record_count", "i"),
)


def _offset_of(name: str) -> int:
    prefix = ""
    for field_name, code in _FIELDS:
        if field_name == name:
            return struct.calcsize(">" + prefix)
        prefix += code
    raise KeyError(name)


HEADER = struct.Struct(">" + "".join(code for _, code in _FIELDS))
HEADER_SIZE = HEADER.size  # 61
BASE_OFFSET_OFFSET = _offset_of("base_offset")
LENGTH_OFFSET = _offset_of("batch_length")
PARTITION_LEADER_EPOCH_OFFSET = _offset_of("partition_leader_epoch")
MAGIC_OFFSET = _offset_of("magic")
CRC_OFFSET = _offset_of("crc")
ATTRIBUTES_OFFSET = _offset_of("attributes")
LAST_OFFSET_DELTA_OFFSET = _offset_of("last_offset_delta")
BASE_TIMESTAMP_OFFSET = _offset_of("base_timestamp")
MAX_TIMESTAMP_OFFSET = _offset_of("max_timestamp")
PRODUCER_ID_OFFSET = _offset_of("producer_id")
RECORD_COUNT_OFFSET = _offset_of("record_count")
RECORDS_OFFSET = HEADER_SIZE
LOG_OVERHEAD = PARTITION_LEADER_EPOCH_OFFSET  # baseOffset + batchLength = 12
# The smallest legal batchLength: the header after the log overhead, with no records.
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD

_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20
DELETE_HORIZON_MASK = 0x40

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1


class BatchHeader(NamedTuple):
    """The parsed 61-byte header of one record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        """0 = CreateTime, 1 = LogAppendTime."""
        return 1 if self.attributes & TIMESTAMP_TYPE_MASK else 0

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & DELETE_HORIZON_MASK)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size_bytes(self) -> int:
        """The whole batch, log overhead included."""
        return self.batch_length + LOG_OVERHEAD


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header of the batch starting at ``pos`` and check its framing.

    Checks that the header is complete, magic is 2, the base offset is not negative,
    batchLength covers at least the header and the whole batch lies inside ``buf``. Does not
    check the CRC (see :func:`check_crc`). Raises :class:`CorruptRecordError`.
    """
    available = len(buf) - pos
    if pos < 0 or available < HEADER_SIZE:
        raise CorruptRecordError(
            f"truncated record batch at position {pos}: {max(available, 0)} bytes, "
            f"need at least {HEADER_SIZE}"
        )
    header = BatchHeader._make(HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise CorruptRecordError(f"unsupported record batch magic {header.magic} (expected 2)")
    if header.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(f"record batch length {header.batch_length} is too small")
    if header.batch_length + LOG_OVERHEAD > available:
        raise CorruptRecordError(
            f"record batch length {header.batch_length} runs past the end of the buffer "
            f"({available - LOG_OVERHEAD} bytes left)"
        )
    if header.base_offset < 0:
        raise CorruptRecordError(f"negative base offset {header.base_offset}")
    if header.record_count < 0 or header.last_offset_delta < 0:
        raise CorruptRecordError(
            f"negative record count ({header.record_count}) or last offset delta "
            f"({header.last_offset_delta})"
        )
    return header


def compute_crc(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> int:
    """CRC-32C over attributes .. end of the batch starting at ``pos``."""
    end = pos + header.size_bytes
    view = memoryview(buf)[pos + ATTRIBUTES_OFFSET : end]
    try:
        return _crc32c.crc32c(view)
    finally:
        view.release()


def check_crc(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> None:
    """Raise :class:`CorruptRecordError` if the stored CRC does not match the bytes."""
    actual = compute_crc(buf, pos, header)
    if actual != header.crc:
        raise CorruptRecordError(
            f"record batch at offset {header.base_offset} has CRC {header.crc:#010x}, "
            f"computed {actual:#010x}"
        )


def validate_batch(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header at ``pos`` and verify framing and CRC; return the header."""
    header = parse_header(buf, pos)
    check_crc(buf, pos, header)
    return header


def iter_headers(
    buf: bytes | bytearray | memoryview, *, allow_partial_tail: bool = False
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each batch of concatenated batches in ``buf``.

    With ``allow_partial_tail`` a truncated last batch ends the iteration silently (a fetch may
    cut the last batch at max_bytes); otherwise it raises :class:`CorruptRecordError`.
    CRCs are not checked here.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        if allow_partial_tail:
            if end - pos < LOG_OVERHEAD:
                return
            (length,) = _INT32.unpack_from(buf, pos + LENGTH_OFFSET)
            if length >= MIN_BATCH_LENGTH and pos + LOG_OVERHEAD + length > end:
                return
        header = parse_header(buf, pos)
        yield pos, header
        pos += header.size_bytes


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Patch baseOffset of the batch at ``pos`` (outside the CRC, so no CRC update)."""
    _INT64.pack_into(buf, pos + BASE_OFFSET_OFFSET, base_offset)


def set_partition_leader_epoch(buf: bytearray | memoryview, pos: int, epoch: int) -> None:
    """Patch partitionLeaderEpoch of the batch at ``pos`` (outside the CRC)."""
    _INT32.pack_into(buf, pos + PARTITION_LEADER_EPOCH_OFFSET, epoch)


def set_log_append_time(buf: bytearray | memoryview, pos: int, timestamp_ms: int) -> None:
    """Stamp LogAppendTime: set the timestamp-type bit and maxTimestamp, then rewrite the CRC.

    As in Kafka, records keep their own timestamp deltas; readers of a LogAppendTime batch use
    maxTimestamp for every record.
    """
    header = parse_header(buf, pos)
    _INT16.pack_into(buf, pos + ATTRIBUTES_OFFSET, header.attributes | TIMESTAMP_TYPE_MASK)
    _INT64.pack_into(buf, pos + MAX_TIMESTAMP_OFFSET, timestamp_ms)
    _UINT32.pack_into(buf, pos + CRC_OFFSET, compute_crc(buf, pos, header))


def write_crc(buf: bytearray | memoryview, pos: int = 0) -> None:
    """Compute and store the CRC of the batch at ``pos`` (used by encoders after filling it)."""
    header = parse_header(buf, pos)
    _UINT32.pack_into(buf, pos + CRC_OFFSET, compute_crc(buf, pos, header))
