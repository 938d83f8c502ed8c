"""Batch-by-batch inspection of a partition's stored bytes (the library side of
``logstore dump``, in the spirit of Kafka's ``kafka-dump-log``).

:func:`iter_batches` reads a partition from its log start offset to the log end offset taken
when it starts, through :meth:`PartitionLog.read`, and describes every stored batch exactly as
it is on disk. It is a diagnostic tool, so damaged data is reported, never raised: a batch whose
CRC does not match is described with ``is_valid=False``; a batch whose header cannot even be
parsed, or whose records cannot be decoded, carries the reason in ``error``.

``position`` is the byte position of the batch in the dump stream: the concatenation of the
partition's batches from the first one read, which is exactly what a fetch from the log start
returns. (SQLite segments store one row per batch, so there is no file position to show.)
``segment`` is the base offset of the segment that holds the batch.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from logstore.errors import CorruptRecordError, LogstoreError, OffsetOutOfRangeError
from logstore.log.partition_log import PartitionLog
from logstore.records.compression import Compression
from logstore.records.header import (
    COMPRESSION_MASK,
    CONTROL_MASK,
    HEADER,
    HEADER_SIZE,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    BatchHeader,
    compute_crc,
    parse_header,
)
from logstore.records.reader import decode_batch

DEFAULT_READ_BYTES = 1 << 20
_INT32_MAX = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """One record of a batch, as ``dump --records`` shows it."""

    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    header_keys: tuple[str, ...]
    sequence: int

    @property
    def key_size(self) -> int:
        """Key length in bytes; -1 for a null key (Kafka's convention)."""
        return -1 if self.key is None else len(self.key)

    @property
    def value_size(self) -> int:
        """Value length in bytes; -1 for a null value (a tombstone)."""
        return -1 if self.value is None else len(self.value)


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """One stored record batch: its header fields, where it is, and whether it is intact.

    ``is_valid`` is True only when the header parses and the stored CRC-32C matches the bytes.
    ``records`` is None unless records were asked for (and empty if they could not be decoded,
    with the reason in ``error``).
    """

    segment: int
    position: int
    size: int
    base_offset: int
    last_offset: int
    count: int
    base_sequence: int
    last_sequence: int
    producer_id: int
    producer_epoch: int
    partition_leader_epoch: int
    is_transactional: bool
    is_control: bool
    timestamp_type: str
    max_timestamp: int
    magic: int
    compression: str
    crc: int
    computed_crc: int | None
    is_valid: bool
    error: str | None = None
    records: tuple[RecordInfo, ...] | None = None


def last_sequence(base_sequence: int, last_offset_delta: int) -> int:
    """Kafka's lastSequence: baseSequence + lastOffsetDelta, wrapping past 2^31-1 to 0, and
    -1 when the batch has no sequence."""
    if base_sequence < 0:
        return -1
    if base_sequence > _INT32_MAX - last_offset_delta:
        return last_offset_delta - (_INT32_MAX - base_sequence) - 1
    return base_sequence + last_offset_delta


def describe_batch(
    data: bytes, *, segment: int, position: int, records: bool = False
) -> BatchInfo:
    """Describe one stored batch without raising for damaged bytes."""
    error: str | None = None
    try:
        header = parse_header(data)
    except CorruptRecordError as exc:
        return _unparseable(data, segment, position, str(exc))
    computed = compute_crc(data, 0, header)
    is_valid = computed == header.crc
    if not is_valid:
        error = f"CRC mismatch: stored {header.crc:#010x}, computed {computed:#010x}"
    record_infos: tuple[RecordInfo, ...] | None = None
    if records:
        record_infos, decode_error = _records(data, header)
        error = error or decode_error
    return BatchInfo(
        segment=segment,
        position=position,
        size=header.size_bytes,
        base_offset=header.base_offset,
        last_offset=header.last_offset,
        count=header.record_count,
        base_sequence=header.base_sequence,
        last_sequence=last_sequence(header.base_sequence, header.last_offset_delta),
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        partition_leader_epoch=header.partition_leader_epoch,
        is_transactional=header.is_transactional,
        is_control=header.is_control,
        timestamp_type="LogAppendTime" if header.timestamp_type else "CreateTime",
        max_timestamp=header.max_timestamp,
        magic=header.magic,
        compression=_codec_name(header.compression),
        crc=header.crc,
        computed_crc=computed,
        is_valid=is_valid,
        error=error,
        records=record_infos,
    )


def _records(data: bytes, header: BatchHeader) -> tuple[tuple[RecordInfo, ...], str | None]:
    try:
        _, decoded = decode_batch(data, verify_crc=False)
    except LogstoreError as exc:
        return (), f"records cannot be decoded: {exc}"
    base_sequence = header.base_sequence
    infos = []
    for record in decoded:
        delta = record.offset - header.base_offset
        sequence = -1 if base_sequence < 0 else last_sequence(base_sequence, delta)
        infos.append(RecordInfo(
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            key=record.key,
            value=record.value,
            header_keys=tuple(key for key, _ in record.headers),
            sequence=sequence,
        ))
    return tuple(infos), None


def _unparseable(data: bytes, segment: int, position: int, reason: str) -> BatchInfo:
    """A batch whose framing is broken: show whatever header fields are there."""
    fields = HEADER.unpack_from(data) if len(data) >= HEADER_SIZE else None
    header = BatchHeader._make(fields) if fields is not None else None

    def field(name: str, default: int = -1) -> int:
        return default if header is None else int(getattr(header, name))

    attributes = field("attributes", 0)
    return BatchInfo(
        segment=segment,
        position=position,
        size=len(data),
        base_offset=field("base_offset"),
        last_offset=field("base_offset") + max(field("last_offset_delta", 0), 0),
        count=field("record_count"),
        base_sequence=field("base_sequence"),
        last_sequence=-1,
        producer_id=field("producer_id"),
        producer_epoch=field("producer_epoch"),
        partition_leader_epoch=field("partition_leader_epoch"),
        is_transactional=bool(attributes & TRANSACTIONAL_MASK),
        is_control=bool(attributes & CONTROL_MASK),
        timestamp_type="LogAppendTime" if attributes & TIMESTAMP_TYPE_MASK else "CreateTime",
        max_timestamp=field("max_timestamp"),
        magic=field("magic"),
        compression=_codec_name(attributes & COMPRESSION_MASK),
        crc=field("crc", 0),
        computed_crc=None,
        is_valid=False,
        error=reason,
        records=() if header is not None else None,
    )


def _codec_name(codec: int) -> str:
    try:
        return Compression(codec).codec_name
    except ValueError:
        return f"unknown({codec})"


def iter_batches(
    log: PartitionLog, *, records: bool = False, read_bytes: int = DEFAULT_READ_BYTES
) -> Iterator[BatchInfo]:
    """Describe every batch of ``log`` from its log start offset to its log end offset at the
    time of the call, in offset order.

    Batches deleted by retention while iterating are skipped (reading resumes at the new log
    start offset). A batch with a damaged header cannot say where it ends; reading then moves
    on one offset at a time, and the same stored bytes are never described twice.
    """
    bases = log.segment_bases()
    if log.remote is not None:  # tiered batches name their remote segment
        bases = sorted(set(bases) | set(log.remote.segment_bases()))
    end = log.log_end_offset()
    offset = log.log_start_offset
    position = 0
    previous: bytes | None = None
    while offset < end:
        try:
            result = log.read(offset, max_bytes=read_bytes, max_offset=end)
        except OffsetOutOfRangeError as exc:
            if exc.log_start_offset is not None and offset < exc.log_start_offset:
                offset = exc.log_start_offset
                continue
            raise
        if not result.batches:
            return
        for data in result.batches:
            if data == previous:  # a damaged batch returned again while stepping past it
                offset += 1
                continue
            previous = data
            base = _base_offset_of(data)
            segment = bases[max(bisect.bisect_right(bases, base) - 1, 0)] if bases else -1
            info = describe_batch(data, segment=segment, position=position, records=records)
            position += len(data)
            yield info
            if info.computed_crc is None:  # the header did not parse: its end is unknown
                offset += 1
            else:
                offset = max(offset, info.last_offset + 1)


def _base_offset_of(data: bytes) -> int:
    return int.from_bytes(data[:8], "big", signed=True) if len(data) >= 8 else -1
