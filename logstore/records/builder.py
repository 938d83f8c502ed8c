"""Encoding of one RecordBatch v2 (Kafka's DefaultRecordBatch), record by record.

The batch header layout is documented and implemented in :mod:`logstore.records.header`. This
module encodes the records section that follows it. Each record is (Kafka's DefaultRecord)::

    length          varint   bytes of the record after this field
    attributes      int8     unused, always 0
    timestampDelta  varlong  timestamp - batch baseTimestamp (may be negative)
    offsetDelta     varint   offset - batch baseOffset (0, 1, 2, ... when built)
    keyLength       varint   -1 for a null key
    key             bytes
    valueLength     varint   -1 for a null value (a tombstone)
    value           bytes
    headerCount     varint
    headers         repeated:
        headerKeyLength    varint   (never null)
        headerKey          UTF-8 bytes
        headerValueLength  varint   -1 for a null value
        headerValue        bytes

All varints are zigzag encoded (:mod:`logstore.records.varint`). With compression, the whole
concatenated records section is compressed; recordsCount in the header stays uncompressed.

The builder keeps each record already encoded, so ``build()`` is one join plus one compression
and one CRC pass, and ``size_in_bytes`` is a running sum.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import crc32c as _crc32c

from logstore.errors import IllegalStateError, InvalidArgumentError, RecordTooLargeError
from logstore.records import header as _h
from logstore.records.compression import Compression, compress
from logstore.records.speedups import encode_record as _c_encode_record
from logstore.records.speedups import encode_records as _c_encode_records
from logstore.records.varint import (
    INT64_MAX,
    INT64_MIN,
    NEGATIVE_VARINTS,
    POSITIVE_VARINTS,
    SMALL_LIMIT,
    encode_varint,
    size_of_varint,
)
from logstore.types import Header

Bytes = bytes | bytearray | memoryview

_INT16_MIN, _INT16_MAX = -(1 << 15), (1 << 15) - 1
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1

_CRC = struct.Struct(">I")  # the crc field of the header
_NULL = b"\x01"  # varint -1: a null key, value or header value
_NO_HEADERS = b"\x00"  # varint 0: header count of a record without headers
_RECORD_ATTRIBUTES = b"\x00"

# Worst case, per record, of the fields whose size depends on the record's position in a batch:
# length prefix (varint, 5) + attributes (1) + timestampDelta (varlong, 10) + offsetDelta (5).
_MAX_RECORD_OVERHEAD = 5 + 1 + 10 + 5


def _as_bytes(data: object, what: str) -> bytes:
    """Copy a bytes-like ``data`` to immutable bytes (callers may reuse their buffers)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InvalidArgumentError(f"{what} must be bytes-like or None, not {type(data).__name__}")


def _check_range(name: str, value: int, low: int, high: int) -> int:
    if type(value) is not int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise InvalidArgumentError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgumentError(f"{name} {value} is outside [{low}, {high}]")
    return int(value)


def encode_headers(headers: Iterable[Header]) -> bytes:
    """Encode a record's header count and headers (the tail of a record)."""
    items = headers if isinstance(headers, (list, tuple)) else tuple(headers)
    parts = [encode_varint(len(items))]
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"a header must be a (str, bytes) pair, not {item!r}"
            ) from None
        if not isinstance(name, str):
            raise InvalidArgumentError(f"header key must be str, not {type(name).__name__}")
        try:
            raw_name = name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(f"header key {name!r} is not valid UTF-8: {exc}") from None
        parts.append(encode_varint(len(raw_name)))
        parts.append(raw_name)
        if value is None:
            parts.append(_NULL)
        else:
            raw_value = _as_bytes(value, "header value")
            parts.append(encode_varint(len(raw_value)))
            parts.append(raw_value)
    return b"".join(parts)


def estimate_record_size(key: Bytes | None, value: Bytes | None, headers: Iterable[Header]) -> int:
    """Upper bound of one record's encoded size, length prefix included.

    Exact for key, value and headers; assumes the largest possible length prefix, timestamp
    delta and offset delta. Used to reject records above ``max.message.bytes`` before they are
    batched and compressed.
    """
    size = _MAX_RECORD_OVERHEAD + (len(encode_headers(headers)) if headers else len(_NO_HEADERS))
    for data in (key, value):
        if data is None:
            size += len(_NULL)
        else:
            n = data.nbytes if isinstance(data, memoryview) else len(data)
            size += size_of_varint(n) + n
    return size


class BatchBuilder:
    """Incrementally builds one RecordBatch v2 (magic 2).

    Records get offset deltas 0, 1, 2, ... in append order. ``baseTimestamp`` is
    ``base_timestamp_ms`` if given, else the first record's timestamp; ``maxTimestamp`` is the
    largest record timestamp. Keys, values and header values are copied to ``bytes`` on
    append when they are not ``bytes`` already, so callers may reuse their buffers.

    Invariant: ``size_in_bytes`` always equals ``HEADER_SIZE`` plus the length of the encoded
    (uncompressed) records appended so far. ``build()`` does not change the builder, so it may
    be called again after more appends.

    Not thread-safe: one thread (or a lock held by the caller) appends to a builder.
    """

    __slots__ = (
        "_attributes",
        "_base_offset",
        "_base_sequence",
        "_base_ts",
        "_compression",
        "_count",
        "_max_ts",
        "_partition_leader_epoch",
        "_producer_epoch",
        "_producer_id",
        "_records",
        "_size",
    )

    def __init__(
        self,
        *,
        compression: int = Compression.NONE,
        producer_id: int = _h.NO_PRODUCER_ID,
        producer_epoch: int = _h.NO_PRODUCER_EPOCH,
        base_sequence: int = _h.NO_SEQUENCE,
        is_transactional: bool = False,
        is_control: bool = False,
        partition_leader_epoch: int = _h.NO_PARTITION_LEADER_EPOCH,
        base_offset: int = 0,
        base_timestamp_ms: int | None = None,
    ) -> None:
        try:
            self._compression = Compression(compression)
        except ValueError:
            raise InvalidArgumentError(f"unknown compression codec {compression!r}") from None
        self._attributes = (
            int(self._compression)
            | (_h.TRANSACTIONAL_MASK if is_transactional else 0)
            | (_h.CONTROL_MASK if is_control else 0)
        )
        self._producer_id = _check_range("producer_id", producer_id, INT64_MIN, INT64_MAX)
        self._producer_epoch = _check_range(
            "producer_epoch", producer_epoch, _INT16_MIN, _INT16_MAX
        )
        self._base_sequence = _check_range("base_sequence", base_sequence, _INT32_MIN, _INT32_MAX)
        self._partition_leader_epoch = _check_range(
            "partition_leader_epoch", partition_leader_epoch, _INT32_MIN, _INT32_MAX
        )
        self._base_offset = _check_range("base_offset", base_offset, INT64_MIN, INT64_MAX)
        self._base_ts: int | None = None
        if base_timestamp_ms is not None:
            self._base_ts = _check_range(
                "base_timestamp_ms", base_timestamp_ms, INT64_MIN, INT64_MAX
            )
        self._max_ts = INT64_MIN
        self._count = 0
        self._size = _h.HEADER_SIZE
        self._records: list[bytes] = []

    @property
    def record_count(self) -> int:
        """Records appended so far."""
        return self._count

    @property
    def size_in_bytes(self) -> int:
        """Exact size of the batch if built now without compression (header included)."""
        return self._size

    @property
    def compression(self) -> Compression:
        return self._compression

    def append(
        self,
        timestamp_ms: int,
        key: Bytes | None,
        value: Bytes | None,
        headers: Sequence[Header] = (),
    ) -> int:
        """Append one record; return its offset delta.

        Raises :class:`InvalidArgumentError` for a non-int timestamp, non-bytes key/value,
        malformed headers or a timestamp whose delta to the base timestamp overflows int64. On
        error the builder is unchanged.
        """
        base = self._base_ts
        if (
            _c_encode_record is not None
            and type(timestamp_ms) is int
            and base is not None
            and INT64_MIN <= timestamp_ms <= INT64_MAX
        ):
            # The common case, in C: same bytes and errors as the Python code below.
            count = self._count
            record = _c_encode_record(count, timestamp_ms - base, key, value, headers or None)
            self._records.append(record)
            if timestamp_ms > self._max_ts:
                self._max_ts = timestamp_ms
            self._size += len(record)
            self._count = count + 1
            return count
        return self._append_py(timestamp_ms, key, value, headers)

    def _append_py(
        self,
        timestamp_ms: int,
        key: Bytes | None,
        value: Bytes | None,
        headers: Sequence[Header] = (),
    ) -> int:
        """The reference implementation of :meth:`append`."""
        small = SMALL_LIMIT
        pos_varints = POSITIVE_VARINTS
        base = self._base_ts
        if type(timestamp_ms) is not int or base is None:
            timestamp_ms = _check_range("timestamp_ms", timestamp_ms, INT64_MIN, INT64_MAX)
            if base is None:
                base = timestamp_ms
        delta = timestamp_ms - base
        if 0 <= delta < small:
            ts_varint = pos_varints[delta]
        elif -small <= delta < 0:
            ts_varint = NEGATIVE_VARINTS[~delta]
        else:
            _check_range("timestamp_ms", timestamp_ms, INT64_MIN, INT64_MAX)
            ts_varint = encode_varint(delta)
        count = self._count
        offset_varint = pos_varints[count] if count < small else encode_varint(count)

        if type(key) is bytes:
            key_len = len(key)
            key_varint = pos_varints[key_len] if key_len < small else encode_varint(key_len)
        elif key is None:
            key = b""
            key_len = 0
            key_varint = _NULL
        else:
            key = _as_bytes(key, "key")
            key_len = len(key)
            key_varint = encode_varint(key_len)

        if type(value) is bytes:
            value_len = len(value)
            value_varint = pos_varints[value_len] if value_len < small else encode_varint(value_len)
        elif value is None:
            value = b""
            value_len = 0
            value_varint = _NULL
        else:
            value = _as_bytes(value, "value")
            value_len = len(value)
            value_varint = encode_varint(value_len)

        header_bytes = encode_headers(headers) if headers else _NO_HEADERS

        body_len = (
            1  # attributes
            + len(ts_varint)
            + len(offset_varint)
            + len(key_varint)
            + key_len
            + len(value_varint)
            + value_len
            + len(header_bytes)
        )
        length_varint = pos_varints[body_len] if body_len < small else encode_varint(body_len)
        self._records.append(
            b"".join(
                (
                    length_varint,
                    _RECORD_ATTRIBUTES,
                    ts_varint,
                    offset_varint,
                    key_varint,
                    key,
                    value_varint,
                    value,
                    header_bytes,
                )
            )
        )
        # State changes last, so a failed append leaves the builder untouched.
        self._base_ts = base
        if timestamp_ms > self._max_ts:
            self._max_ts = timestamp_ms
        self._size += len(length_varint) + body_len
        self._count = count + 1
        return count

    def build(self) -> bytes:
        """Return the complete batch: header (with batchLength, CRC, ...) and records.

        Raises :class:`IllegalStateError` when no record was appended and
        :class:`RecordTooLargeError` when the batch would not fit batchLength (int32).
        """
        if not self._count:
            raise IllegalStateError("cannot build a record batch without records")
        return build_batch(
            b"".join(self._records),
            self._count,
            base_timestamp_ms=self._base_ts,  # type: ignore[arg-type]
            max_timestamp_ms=self._max_ts,
            compression=self._compression,
            attributes=self._attributes,
            producer_id=self._producer_id,
            producer_epoch=self._producer_epoch,
            base_sequence=self._base_sequence,
            partition_leader_epoch=self._partition_leader_epoch,
            base_offset=self._base_offset,
        )


def encode_records(
    records: Sequence[tuple[int, Bytes | None, Bytes | None, Sequence[Header]]],
    base_timestamp_ms: int,
) -> tuple[bytes, int]:
    """The records section of a batch of ``(timestamp_ms, key, value, headers)`` tuples, with
    offset deltas 0, 1, 2, ...; returns ``(section, max timestamp)``.

    One call per batch (in C when the accelerator is built), for producers that collect records
    first and encode them when the batch is sent. Raises :class:`InvalidArgumentError` like
    :meth:`BatchBuilder.append`.
    """
    if _c_encode_records is not None and type(records) is list:
        return _c_encode_records(records, base_timestamp_ms)
    builder = BatchBuilder(base_timestamp_ms=base_timestamp_ms)
    for timestamp_ms, key, value, headers in records:
        builder._append_py(timestamp_ms, key, value, headers)
    return b"".join(builder._records), builder._max_ts


def encode_record_at(
    offset_delta: int,
    timestamp_ms: int,
    key: Bytes | None,
    value: Bytes | None,
    headers: Sequence[Header] = (),
    *,
    base_timestamp_ms: int,
) -> bytes:
    """One encoded record with an explicit offset delta, for batches whose offsets have gaps
    (the log cleaner re-encodes the records it keeps at their original offsets).

    Same bytes and errors as :meth:`BatchBuilder.append` of the record at that delta.
    """
    delta = timestamp_ms - base_timestamp_ms if type(timestamp_ms) is int else None
    if (
        _c_encode_record is not None
        and delta is not None
        and INT64_MIN <= delta <= INT64_MAX
        and INT64_MIN <= timestamp_ms <= INT64_MAX
        and type(offset_delta) is int
        and 0 <= offset_delta <= _INT32_MAX
    ):
        return _c_encode_record(offset_delta, delta, key, value, headers or None)
    builder = BatchBuilder(base_timestamp_ms=base_timestamp_ms)
    builder._count = _check_range("offset_delta", offset_delta, 0, _INT32_MAX)
    builder._append_py(timestamp_ms, key, value, headers)
    return builder._records[0]


def build_batch(
    records_section: bytes,
    count: int,
    *,
    base_timestamp_ms: int,
    max_timestamp_ms: int,
    compression: int = Compression.NONE,
    attributes: int = 0,
    producer_id: int = _h.NO_PRODUCER_ID,
    producer_epoch: int = _h.NO_PRODUCER_EPOCH,
    base_sequence: int = _h.NO_SEQUENCE,
    partition_leader_epoch: int = _h.NO_PARTITION_LEADER_EPOCH,
    base_offset: int = 0,
    last_offset_delta: int | None = None,
) -> bytes:
    """A complete batch around an encoded records section of ``count`` records: compresses
    the section, packs the header and computes the CRC.

    The records' offset deltas are 0..count-1 unless ``last_offset_delta`` is given: then they
    may have gaps (a compacted batch keeps the offset range it had) and ``count`` may be 0 (an
    emptied batch the log cleaner keeps for its producer state; its section is empty and never
    compressed). ``attributes`` may carry the transactional, control and delete-horizon bits;
    the compression bits come from ``compression``.
    """
    if last_offset_delta is None:
        if count <= 0:
            raise IllegalStateError("cannot build a record batch without records")
        last_offset_delta = count - 1
    elif count < 0 or last_offset_delta < count - 1:
        raise IllegalStateError(
            f"{count} records do not fit a last offset delta of {last_offset_delta}")
    if count == 0:
        compression = Compression.NONE
    payload = compress(compression, records_section) if compression else records_section
    batch_length = _h.HEADER_SIZE - _h.LOG_OVERHEAD + len(payload)
    if batch_length > _INT32_MAX:
        raise RecordTooLargeError(f"record batch of {batch_length} bytes exceeds int32")
    try:
        header = _h.HEADER.pack(
            base_offset,
            batch_length,
            partition_leader_epoch,
            _h.MAGIC,
            0,  # crc, computed below over attributes .. end
            (attributes & ~_h.COMPRESSION_MASK) | int(compression),
            last_offset_delta,
            base_timestamp_ms,
            max_timestamp_ms,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        )
    except struct.error as exc:  # a timestamp drifted past int64 via a small delta
        raise InvalidArgumentError(f"record batch field out of range: {exc}") from None
    covered = header[_h.ATTRIBUTES_OFFSET :]
    crc = _crc32c.crc32c(payload, value=_crc32c.crc32c(covered))
    return b"".join((header[: _h.CRC_OFFSET], _CRC.pack(crc), covered, payload))


def encode_batch(
    records: Iterable[tuple[int, Bytes | None, Bytes | None, Sequence[Header]]],
    **builder_kwargs: object,
) -> bytes:
    """Build one batch from ``(timestamp_ms, key, value, headers)`` tuples.

    ``builder_kwargs`` are :class:`BatchBuilder`'s keyword arguments. Raises
    :class:`IllegalStateError` when ``records`` is empty.
    """
    builder = BatchBuilder(**builder_kwargs)  # type: ignore[arg-type]
    append = builder.append
    for timestamp_ms, key, value, headers in records:
        append(timestamp_ms, key, value, headers)
    return builder.build()
