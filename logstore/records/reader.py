"""Decoding of RecordBatch v2 bytes into :class:`~logstore.types.ConsumerRecord` tuples.

The header is parsed by :mod:`logstore.records.header`; the record layout is documented in
:mod:`logstore.records.builder`. Input is untrusted (it may come from disk, object storage or,
later, the network): every byte string either decodes or raises :class:`CorruptRecordError`,
in time and memory linear in ``len(buf) + max_uncompressed_bytes``. What is checked:

* header framing, magic and (unless ``verify_crc=False``) the CRC-32C;
* decompression is bounded by ``max_uncompressed_bytes``;
* recordsCount against the bytes available (a record takes at least 7 bytes) and against
  lastOffsetDelta, so a huge count cannot drive a huge loop;
* every record's length prefix against the bytes it really occupies, key/value lengths >= -1,
  header counts against the bytes left, header keys are valid UTF-8;
* offset deltas strictly increase and stay within ``[0, lastOffsetDelta]`` (true of every batch
  a producer or the log cleaner writes), so consumer positions derived from them are sound;
* the records section holds exactly recordsCount records, with no trailing bytes.

The C accelerator (:mod:`logstore.records.speedups`) replaces :func:`_decode_records` when it is
built; the Python loop below is the reference it is tested against. The record loop is one
function with local aliases and inline decoding of one- and two-byte
varints (three-byte ones too for offset deltas of big batches), because it runs once per
consumed record; it allocates only what it returns. All functions are pure and thread-safe.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from operator import itemgetter

from logstore.errors import CorruptRecordError
from logstore.records.compression import decompress
from logstore.records.header import (
    COMPRESSION_MASK,
    LOG_OVERHEAD,
    RECORDS_OFFSET,
    TIMESTAMP_TYPE_MASK,
    BatchHeader,
    check_crc,
    iter_headers,
    parse_header,
)
from logstore.records.speedups import check_records as _c_check_records
from logstore.records.speedups import decode_records as _c_decode_records
from logstore.records.varint import ZIGZAG_1BYTE, ZIGZAG_2BYTE, decode_varint
from logstore.types import ConsumerRecord, Header

Buffer = bytes | bytearray | memoryview

DEFAULT_MAX_UNCOMPRESSED_BYTES = 64 << 20

# length prefix + attributes + timestampDelta + offsetDelta + keyLength + valueLength +
# headerCount, each at least one byte.
MIN_RECORD_BYTES = 7
_MIN_HEADER_BYTES = 2  # key length + value length

_NO_HEADERS: tuple[Header, ...] = ()
_offset_of = itemgetter(2)  # ConsumerRecord.offset


def _decode_headers(data: bytes, pos: int, record_end: int) -> tuple[tuple[Header, ...], int]:
    """Decode the header count and headers at ``pos`` (the slow path: headers are rare)."""
    count, pos = decode_varint(data, pos)
    if count < 0 or count * _MIN_HEADER_BYTES > record_end - pos:
        raise CorruptRecordError(f"invalid record header count {count}")
    headers = []
    for _ in range(count):
        key_len, pos = decode_varint(data, pos)
        if key_len < 0 or pos + key_len > record_end:
            raise CorruptRecordError(f"invalid record header key length {key_len}")
        try:
            key = data[pos : pos + key_len].decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptRecordError("record header key is not valid UTF-8") from None
        pos += key_len
        value_len, pos = decode_varint(data, pos)
        if value_len >= 0:
            if pos + value_len > record_end:
                raise CorruptRecordError(
                    f"record header value length {value_len} runs past the record"
                )
            value: bytes | None = data[pos : pos + value_len]
            pos += value_len
        elif value_len == -1:
            value = None
        else:
            raise CorruptRecordError(f"invalid record header value length {value_len}")
        headers.append((key, value))
    return tuple(headers), pos


def _decode_records(
    data: bytes,
    pos: int,
    end: int,
    header: BatchHeader,
    topic: str,
    partition: int,
    min_offset: int,
) -> list[ConsumerRecord]:
    """Decode ``header.record_count`` records from ``data[pos:end]`` (the exact records section).

    Bounds: ``pos`` only moves forward and every read past ``len(data)`` raises IndexError, so
    a record whose lengths lie ends with ``pos`` beyond its length prefix (caught per record)
    or beyond ``end`` (caught after the loop, which ``count`` bounds). Varints of one or two
    bytes (every length below 8 KiB) decode inline; longer ones call :func:`decode_varint`.
    """
    count = header.record_count
    last_delta = header.last_offset_delta
    if count > (end - pos) // MIN_RECORD_BYTES or count > last_delta + 1:
        raise CorruptRecordError(
            f"record count {count} does not fit the batch ({end - pos} bytes of records, "
            f"last offset delta {last_delta})"
        )
    base_offset = header.base_offset
    base_ts = header.base_timestamp
    ts_type = 1 if header.attributes & TIMESTAMP_TYPE_MASK else 0

    out: list[ConsumerRecord] = []
    append = out.append
    new = tuple.__new__
    record_cls = ConsumerRecord
    zz1 = ZIGZAG_1BYTE
    zz2 = ZIGZAG_2BYTE
    slow = decode_varint
    no_headers = _NO_HEADERS
    prev = -1
    try:
        for _ in range(count):
            b = data[pos]
            if b < 0x80:
                length = zz1[b]
                pos += 1
            else:
                c = data[pos + 1]
                if c < 0x80:
                    length = zz2[b + (c << 7)]
                    pos += 2
                else:
                    length, pos = slow(data, pos)
            record_end = pos + length
            # The attributes byte at pos is unused by Kafka: skip it while reading the
            # timestamp delta that follows.
            b = data[pos + 1]
            if b < 0x80:
                ts_delta = zz1[b]
                pos += 2
            else:
                c = data[pos + 2]
                if c < 0x80:
                    ts_delta = zz2[b + (c << 7)]
                    pos += 3
                else:
                    ts_delta, pos = slow(data, pos + 1)

            b = data[pos]
            if b < 0x80:
                delta = zz1[b]
                pos += 1
            else:
                c = data[pos + 1]
                if c < 0x80:
                    delta = zz2[b + (c << 7)]
                    pos += 2
                else:
                    d = data[pos + 2]
                    if d < 0x80:  # offset deltas of large batches: inline 3 bytes too
                        delta = (b & 0x7F) | ((c & 0x7F) << 7) | (d << 14)
                        delta = (delta >> 1) ^ -(delta & 1)
                        pos += 3
                    else:
                        delta, pos = slow(data, pos)
            if delta <= prev:
                raise CorruptRecordError(f"record offset delta {delta} does not increase")
            prev = delta

            b = data[pos]
            if b < 0x80:
                n = zz1[b]
                pos += 1
            else:
                c = data[pos + 1]
                if c < 0x80:
                    n = zz2[b + (c << 7)]
                    pos += 2
                else:
                    n, pos = slow(data, pos)
            if n >= 0:
                key = data[pos : pos + n]
                pos += n
            elif n == -1:
                key = None
            else:
                raise CorruptRecordError(f"invalid record key length {n}")

            b = data[pos]
            if b < 0x80:
                n = zz1[b]
                pos += 1
            else:
                c = data[pos + 1]
                if c < 0x80:
                    n = zz2[b + (c << 7)]
                    pos += 2
                else:
                    n, pos = slow(data, pos)
            if n >= 0:
                value = data[pos : pos + n]
                pos += n
            elif n == -1:
                value = None
            else:
                raise CorruptRecordError(f"invalid record value length {n}")

            if data[pos]:
                headers, pos = _decode_headers(data, pos, record_end)
            else:
                headers = no_headers
                pos += 1
            if pos != record_end:
                raise CorruptRecordError(f"record length {length} does not match its content")
            append(
                new(
                    record_cls,
                    (
                        topic,
                        partition,
                        base_offset + delta,
                        base_ts + ts_delta,
                        key,
                        value,
                        headers,
                        ts_type,
                    ),
                )
            )
    except IndexError:
        raise CorruptRecordError("record runs past the end of the batch") from None
    if pos != end:
        raise CorruptRecordError(
            f"records section does not end where the batch ends ({pos} != {end})"
        )
    if prev > last_delta:
        raise CorruptRecordError(
            f"record offset delta {prev} exceeds last offset delta {last_delta}"
        )
    if min_offset > base_offset and out:
        # Offsets strictly increase, so the records to skip are a prefix.
        del out[: bisect_left(out, min_offset, key=_offset_of)]
    if ts_type:
        # LogAppendTime: the broker's time (maxTimestamp) applies to every record.
        max_ts = header.max_timestamp
        out = [new(record_cls, (*r[:3], max_ts, *r[4:])) for r in out]
    return out


def _records_of(
    buf: Buffer,
    pos: int,
    header: BatchHeader,
    max_uncompressed_bytes: int,
    topic: str,
    partition: int,
    min_offset: int,
) -> list[ConsumerRecord]:
    """Decompress (if needed) and decode the records of the framed batch at ``pos``."""
    start = pos + RECORDS_OFFSET
    end = pos + header.batch_length + LOG_OVERHEAD
    codec = header.attributes & COMPRESSION_MASK
    if codec:
        if start == end and header.record_count == 0:
            return []  # an emptied batch kept for its producer state (log cleaner)
        data = decompress(codec, memoryview(buf)[start:end], max_bytes=max_uncompressed_bytes)
        start, end = 0, len(data)
    elif type(buf) is bytes:
        data = buf  # slices of bytes are bytes: decode in place
    else:
        data = memoryview(buf)[start:end].tobytes()
        start, end = 0, len(data)
    if _c_decode_records is not None:
        return _c_decode_records(
            data, start, end, header.record_count, header.last_offset_delta, header.base_offset,
            header.base_timestamp, header.attributes & TIMESTAMP_TYPE_MASK, header.max_timestamp,
            topic, partition, min_offset,
        )
    return _decode_records(data, start, end, header, topic, partition, min_offset)


def check_batch_records(
    batch: Buffer,
    header: BatchHeader,
    *,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
) -> tuple[int, int]:
    """Check every record of one framed batch (decompressing it if needed) as
    :func:`decode_batch` would, without building the records: what an append does with every
    batch a client sends. Returns (index of the first record whose offset delta is not its
    index, index of the first record without a key), each -1 if none. Raises
    :class:`CorruptRecordError`."""
    start = RECORDS_OFFSET
    end = header.batch_length + LOG_OVERHEAD
    codec = header.attributes & COMPRESSION_MASK
    if codec:
        if start == end and header.record_count == 0:
            return -1, -1
        data: Buffer = decompress(codec, memoryview(batch)[start:end],
                                  max_bytes=max_uncompressed_bytes)
        start, end = 0, len(data)
    elif type(batch) is bytes:
        data = batch
    else:
        data = memoryview(batch)[start:end].tobytes()
        start, end = 0, len(data)
    if _c_check_records is not None:
        return _c_check_records(data, start, end, header.record_count,
                                header.last_offset_delta)
    return check_records(data, start, end, header)


def check_records(data: bytes, pos: int, end: int, header: BatchHeader) -> tuple[int, int]:
    """The reference of the C ``check_records``: decode, then look (see
    :func:`check_batch_records`)."""
    records = _decode_records(data, pos, end, header, "", -1, 0)
    base = header.base_offset
    bad_delta = next((k for k, r in enumerate(records) if r.offset - base != k), -1)
    keyless = next((k for k, r in enumerate(records) if r.key is None), -1)
    return bad_delta, keyless


def decode_batch(
    buf: Buffer,
    pos: int = 0,
    *,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    verify_crc: bool = True,
    topic: str = "",
    partition: int = -1,
    min_offset: int = 0,
) -> tuple[BatchHeader, list[ConsumerRecord]]:
    """Decode the batch starting at ``buf[pos]`` into its header and records.

    Records with an offset below ``min_offset`` are left out (a fetch may start mid-batch).
    Control batches decode like any other: their one record's key and value are the control
    record bytes (see :mod:`logstore.records.control`); callers filter on ``header.is_control``.
    Bytes after the batch are ignored. Raises :class:`CorruptRecordError`.
    """
    header = parse_header(buf, pos)
    if verify_crc:
        check_crc(buf, pos, header)
    return header, _records_of(
        buf, pos, header, max_uncompressed_bytes, topic, partition, min_offset
    )


def iter_records(
    buf: Buffer,
    *,
    allow_partial_tail: bool = True,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    verify_crc: bool = True,
    topic: str = "",
    partition: int = -1,
    min_offset: int = 0,
) -> Iterator[tuple[BatchHeader, list[ConsumerRecord]]]:
    """Decode concatenated batches (e.g. a fetch response), one ``(header, records)`` per batch.

    With ``allow_partial_tail`` a truncated last batch (a fetch cut at max_bytes) ends the
    iteration silently; otherwise it raises :class:`CorruptRecordError`. Batches are decoded
    lazily, so batches before a corrupt one are yielded before the error is raised.
    """
    for pos, header in iter_headers(buf, allow_partial_tail=allow_partial_tail):
        if verify_crc:
            check_crc(buf, pos, header)
        yield (
            header,
            _records_of(buf, pos, header, max_uncompressed_bytes, topic, partition, min_offset),
        )
