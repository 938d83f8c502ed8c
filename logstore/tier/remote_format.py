"""The byte format of a remote segment: one immutable object per sealed segment.

Layout (all integers big-endian)::

    object = data || index || aborted || footer

    data     data_bytes bytes      the segment's RecordBatch v2 batches, concatenated in offset
                                   order, byte for byte as stored locally
    index    index_count x 24      sparse index entries, strictly increasing in both fields:
                                   base_offset (q)   baseOffset of a batch
                                   position (q)      where that batch starts, relative to data
                                   max_timestamp (q) running max of batch maxTimestamps up to
                                                     and including that batch
    aborted  aborted_count x 24    transactions aborted by a marker in this segment, sorted
                                   by (first_offset, last_offset, producer_id), no duplicates:
                                   producer_id (q), first_offset (q), last_offset (q) (the
                                   marker's offset; first_offset may precede the segment)

The footer (fixed size, at the very end of the object)::

    offset  size  field
         0     4  magic          b"LSRS"
         4     2  version        1
         6     2  flags          0
         8     8  base_offset    the segment's base offset
        16     8  next_offset    offset after the segment (> last_offset)
        24     8  last_offset    last offset of the last batch; base_offset - 1 when empty
        32     8  max_timestamp  largest batch maxTimestamp; -1 when empty
        40     8  data_bytes     length of the data section
        48     8  batch_count    batches in the data section
        56     4  index_count    entries in the index section (unsigned)
        60     4  aborted_count  entries in the aborted section (unsigned)
        64     4  crc            CRC-32C of index || aborted || footer[0:64]
        68        (FOOTER_SIZE)

The index gets an entry for the first batch, then one for each batch starting at least
``index_interval_bytes`` after the previous entry's position. A reader GETs the tail
(:func:`tail_range`, :func:`parse_tail`), then one range of data from
:meth:`RemoteIndex.position_for`, and cuts whole batches out of it with :func:`iter_frames`.
Batch CRCs cover the data section; the footer CRC covers everything after it.

Field offsets below are computed from the struct formats, never written as literals.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

import crc32c as _crc32c

from logstore.errors import CorruptRecordError, IllegalStateError, InvalidArgumentError
from logstore.log.producer_state import AbortedTxn
from logstore.records import header as _h

MAGIC = b"LSRS"
FORMAT_VERSION = 1
DEFAULT_INDEX_INTERVAL_BYTES = 256 * 1024

INDEX_ENTRY = struct.Struct(">qqq")  # base_offset, position, max_timestamp
ABORTED_ENTRY = struct.Struct(">qqq")  # producer_id, first_offset, last_offset

_FOOTER_FIELDS: tuple[tuple[str, str], ...] = (
    ("magic", "4s"), ("version", "H"), ("flags", "H"),
    ("base_offset", "q"), ("next_offset", "q"), ("last_offset", "q"), ("max_timestamp", "q"),
    ("data_bytes", "q"), ("batch_count", "q"),
    ("index_count", "I"), ("aborted_count", "I"), ("crc", "I"),
)
FOOTER = struct.Struct(">" + "".join(code for _, code in _FOOTER_FIELDS))
FOOTER_SIZE = FOOTER.size
FOOTER_OFFSETS: dict[str, int] = {
    name: struct.calcsize(">" + "".join(code for _, code in _FOOTER_FIELDS[:i]))
    for i, (name, _) in enumerate(_FOOTER_FIELDS)
}
# The CRC covers the footer's own fields: everything before the crc field.
FOOTER_CRC_OFFSET = FOOTER_OFFSETS["crc"]

_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_UINT32 = struct.Struct(">I")
_MIN_BATCH_SIZE = _h.LOG_OVERHEAD + _h.MIN_BATCH_LENGTH
_UINT32_MAX = (1 << 32) - 1

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class RemoteSegmentSummary:
    """The footer of a remote segment, plus the object's total size.

    Invariants (checked by the parser): ``base_offset - 1 <= last_offset < next_offset``;
    an empty segment has ``data_bytes == batch_count == index_count == 0``,
    ``last_offset == base_offset - 1`` and ``max_timestamp == -1``;
    ``size_bytes == data_bytes + 24 * (index_count + aborted_count) + FOOTER_SIZE``.
    """

    base_offset: int
    next_offset: int
    last_offset: int
    max_timestamp: int
    data_bytes: int
    size_bytes: int
    batch_count: int
    index_count: int
    aborted_count: int


class IndexEntry(NamedTuple):
    """One sparse index entry: a batch's base offset, its position in data, the running max
    of batch maxTimestamps up to and including it."""

    base_offset: int
    position: int
    max_timestamp: int


@dataclass(frozen=True, slots=True)
class RemoteIndex:
    """The parsed tail of a remote segment. Immutable, so safe to share between threads.

    ``entries`` are strictly increasing in offset and position, the first at position 0;
    their max_timestamp never decreases. ``aborted`` is sorted by first offset.
    """

    summary: RemoteSegmentSummary
    entries: tuple[IndexEntry, ...]
    aborted: tuple[AbortedTxn, ...]

    def position_for(self, offset: int) -> int:
        """Position (relative to data) of the last entry whose base offset is <= ``offset``: the
        batch holding ``offset`` starts there or later. 0 when ``offset`` precedes every entry."""
        i = bisect.bisect_right(self.entries, offset, key=lambda e: e.base_offset)
        return self.entries[i - 1].position if i else 0

    def position_for_timestamp(self, timestamp_ms: int) -> int | None:
        """A position from which scanning forward finds the first batch whose maxTimestamp is
        >= ``timestamp_ms``; None when no batch of the segment reaches it."""
        if not self.entries or self.summary.max_timestamp < timestamp_ms:
            return None
        # Every batch up to entry i-1 (included) stays below the timestamp: the running max
        # there is < timestamp_ms, so the first match lies after that entry's batch.
        i = bisect.bisect_left(self.entries, timestamp_ms, key=lambda e: e.max_timestamp)
        return self.entries[i - 1].position if i else 0

    def aborted_between(self, start: int, end: int) -> list[AbortedTxn]:
        """Aborted transactions whose data may lie in [start, end): marker at or after
        ``start`` and first offset before ``end`` (as ``Segment.aborted_between``), by first
        offset."""
        stop = bisect.bisect_left(self.aborted, end, key=lambda a: a.first_offset)
        return [a for a in self.aborted[:stop] if a.last_offset >= start]


def _write_all(out: BinaryIO, data: Buffer) -> None:
    # A raw file may write only part of the buffer; loop until all of it is out.
    view = memoryview(data)
    while view:
        written = out.write(view)
        if written is None or written >= len(view):
            return
        view = view[written:]


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int, not {type(value).__name__}")
    if value < low:
        raise InvalidArgumentError(f"{name} {value} is below {low}")
    return value


class RemoteSegmentWriter:
    """Streams one remote segment into a binary file object opened for writing.

    Call :meth:`add` once per batch in offset order, then :meth:`finish` once. Memory is bounded
    by the index (24 bytes per ``index_interval_bytes`` of data), never the data. Each batch's
    framing and CRC are checked, so local corruption is not made permanent in the object store.
    Not thread-safe: one thread writes one segment.
    """

    def __init__(self, out: BinaryIO, *, base_offset: int,
                 index_interval_bytes: int = DEFAULT_INDEX_INTERVAL_BYTES) -> None:
        self._out = out
        self._base_offset = _check_int("base_offset", base_offset, 0)
        self._interval = _check_int("index_interval_bytes", index_interval_bytes, 0)
        self._index = bytearray()
        self._last_entry_position = 0
        self._data_bytes = 0
        self._batch_count = 0
        self._last_offset = base_offset - 1
        self._max_timestamp = -1
        self._closed: str | None = None  # why add/finish may no longer be called

    def _check_open(self) -> None:
        if self._closed is not None:
            raise IllegalStateError(self._closed)

    def _write(self, data: Buffer) -> None:
        try:
            _write_all(self._out, data)
        except BaseException:
            # How much reached ``out`` is unknown, so positions would be wrong from here on.
            self._closed = "a write to the remote segment failed: discard the object"
            raise

    def add(self, data: Buffer) -> None:
        """Append exactly one batch. Raises CorruptRecordError for bad framing or CRC and
        InvalidArgumentError for offsets that do not follow the previous batch."""
        self._check_open()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(f"batch must be bytes-like, not {type(data).__name__}")
        header = _h.validate_batch(data)
        if header.size_bytes != len(data):
            raise InvalidArgumentError(
                f"expected exactly one batch of {header.size_bytes} bytes, got {len(data)}")
        if header.base_offset <= self._last_offset:
            raise InvalidArgumentError(
                f"batch base offset {header.base_offset} does not follow offset "
                f"{self._last_offset} (segment base offset {self._base_offset})")
        position = self._data_bytes
        self._write(data)
        running_max = (header.max_timestamp if self._batch_count == 0
                       else max(self._max_timestamp, header.max_timestamp))
        if not self._index or position - self._last_entry_position >= self._interval:
            self._index += INDEX_ENTRY.pack(header.base_offset, position, running_max)
            self._last_entry_position = position
        self._data_bytes += len(data)
        self._batch_count += 1
        self._last_offset = header.last_offset
        self._max_timestamp = running_max

    def finish(self, *, next_offset: int,
               aborted: Sequence[AbortedTxn | tuple[int, int, int]] = ()) -> RemoteSegmentSummary:
        """Write index, aborted list and footer; return the summary. Does not flush or close
        ``out``. ``next_offset`` must exceed the last offset written (>= base offset when
        empty); each aborted marker offset must lie in [base offset, next_offset)."""
        self._check_open()
        _check_int("next_offset", next_offset, self._last_offset + 1)
        rows: set[tuple[int, int, int]] = set()
        for txn in aborted:
            row = ((txn.producer_id, txn.first_offset, txn.last_offset)
                   if isinstance(txn, AbortedTxn) else txn)
            if not isinstance(row, (tuple, list)) or len(row) != 3:
                raise InvalidArgumentError(f"aborted transaction {txn!r} is not 3 fields")
            pid, first, last = row
            _check_int("aborted producer_id", pid, 0)
            _check_int("aborted first_offset", first, 0)
            _check_int("aborted last_offset", last, max(first, self._base_offset))
            if last >= next_offset:
                raise InvalidArgumentError(
                    f"aborted transaction marker {last} is not below next offset {next_offset}")
            rows.add((first, last, pid))
        aborted_bytes = b"".join(ABORTED_ENTRY.pack(p, f, la) for f, la, p in sorted(rows))
        index_count = len(self._index) // INDEX_ENTRY.size
        if len(rows) > _UINT32_MAX or index_count > _UINT32_MAX:
            raise InvalidArgumentError("too many index or aborted entries for the format")
        footer = bytearray(FOOTER.pack(
            MAGIC, FORMAT_VERSION, 0, self._base_offset, next_offset, self._last_offset,
            self._max_timestamp, self._data_bytes, self._batch_count, index_count, len(rows), 0))
        crc = _crc32c.crc32c(aborted_bytes, value=_crc32c.crc32c(self._index))
        crc = _crc32c.crc32c(memoryview(footer)[:FOOTER_CRC_OFFSET], value=crc)
        _UINT32.pack_into(footer, FOOTER_CRC_OFFSET, crc)
        for part in (self._index, aborted_bytes, footer):
            self._write(part)
        self._closed = "remote segment writer already finished"
        return RemoteSegmentSummary(
            self._base_offset, next_offset, self._last_offset, self._max_timestamp,
            self._data_bytes, self._data_bytes + len(self._index) + len(aborted_bytes)
            + FOOTER_SIZE, self._batch_count, index_count, len(rows))


def tail_range(size_bytes: int, data_bytes: int) -> tuple[int, int]:
    """The [start, end) byte range of index || aborted || footer in an object of
    ``size_bytes`` whose data section is ``data_bytes`` long. Raises CorruptRecordError when
    the two sizes cannot belong to one remote segment."""
    _check_int("size_bytes", size_bytes, 0)
    _check_int("data_bytes", data_bytes, 0)
    tail = size_bytes - data_bytes - FOOTER_SIZE
    if tail < 0 or tail % INDEX_ENTRY.size:
        raise CorruptRecordError(
            f"remote segment of {size_bytes} bytes cannot hold {data_bytes} data bytes")
    return data_bytes, size_bytes


def _corrupt(message: str) -> CorruptRecordError:
    return CorruptRecordError(f"corrupt remote segment: {message}")


def parse_footer(blob: Buffer, *, size_bytes: int) -> RemoteSegmentSummary:
    """Parse and sanity-check the last FOOTER_SIZE bytes of an object of ``size_bytes``.

    For a caller that does not know ``data_bytes``: the footer's CRC is NOT verified here (it
    covers the index too), so use the result only to call :func:`tail_range`, then
    :func:`parse_tail`. Raises CorruptRecordError.
    """
    _check_int("size_bytes", size_bytes, 0)
    if len(blob) != FOOTER_SIZE:
        raise _corrupt(f"footer is {len(blob)} bytes, expected {FOOTER_SIZE}")
    (magic, version, flags, base, next_offset, last, max_ts, data_bytes, batches, index_count,
     aborted_count, _crc) = FOOTER.unpack_from(blob)
    if magic != MAGIC:
        raise _corrupt(f"bad magic {magic!r} (expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise _corrupt(f"unsupported format version {version} (expected {FORMAT_VERSION})")
    if flags:
        raise _corrupt(f"unknown flags {flags:#06x}")
    tail = (index_count + aborted_count) * INDEX_ENTRY.size + FOOTER_SIZE
    if data_bytes < 0 or data_bytes + tail != size_bytes:
        raise _corrupt(f"{data_bytes} data bytes, {index_count} index and {aborted_count} "
                       f"aborted entries do not add up to {size_bytes} bytes")
    if base < 0 or not base - 1 <= last < next_offset:
        raise _corrupt(f"offsets base {base}, last {last}, next {next_offset} out of order")
    if data_bytes == 0:
        if batches or index_count or last != base - 1 or max_ts != -1:
            raise _corrupt("an empty segment has batches, index entries, offsets or timestamps")
    elif not (1 <= index_count <= batches <= min(data_bytes // _MIN_BATCH_SIZE, last - base + 1)):
        raise _corrupt(f"{batches} batches and {index_count} index entries cannot fit "
                       f"{data_bytes} bytes and offsets [{base}, {last}]")
    return RemoteSegmentSummary(base, next_offset, last, max_ts, data_bytes, size_bytes,
                                batches, index_count, aborted_count)


def parse_tail(blob: Buffer, *, size_bytes: int, data_bytes: int | None = None) -> RemoteIndex:
    """Parse index || aborted || footer: the bytes ``[data_bytes, size_bytes)`` of the object.

    Untrusted input: anything malformed (bad magic or version, lengths that do not add up, CRC
    mismatch, ``data_bytes`` other than the caller's, unordered or out-of-range entries) raises
    CorruptRecordError; counts are checked against ``len(blob)`` before anything is unpacked.
    """
    if data_bytes is not None:
        start, _ = tail_range(size_bytes, data_bytes)
        if len(blob) != size_bytes - start:
            raise _corrupt(f"tail is {len(blob)} bytes, expected {size_bytes - start}")
    if len(blob) < FOOTER_SIZE:
        raise _corrupt(f"tail of {len(blob)} bytes is shorter than the footer")
    view = memoryview(blob)
    summary = parse_footer(view[len(view) - FOOTER_SIZE:], size_bytes=size_bytes)
    # With the caller's data_bytes, len(blob) was checked against it above, so this also
    # rejects a footer disagreeing with the caller.
    if summary.data_bytes != size_bytes - len(blob):
        raise _corrupt(f"tail is {len(blob)} bytes but the footer places it at "
                       f"{summary.data_bytes} of {size_bytes}")
    (stored_crc,) = _UINT32.unpack_from(view, len(view) - FOOTER_SIZE + FOOTER_CRC_OFFSET)
    actual = _crc32c.crc32c(view[: len(view) - FOOTER_SIZE + FOOTER_CRC_OFFSET])
    if actual != stored_crc:
        raise _corrupt(f"tail CRC {stored_crc:#010x}, computed {actual:#010x}")
    entries = tuple(IndexEntry._make(INDEX_ENTRY.unpack_from(view, i * INDEX_ENTRY.size))
                    for i in range(summary.index_count))
    base, last = summary.base_offset, summary.last_offset
    prev: IndexEntry | None = None
    for entry in entries:
        if prev is None:
            if entry.position != 0:
                raise _corrupt(f"first index entry at position {entry.position}, not 0")
        elif entry.base_offset <= prev.base_offset or entry.position <= prev.position or (
                entry.max_timestamp < prev.max_timestamp):
            raise _corrupt(f"index entry {tuple(entry)} does not follow {tuple(prev)}")
        if not base <= entry.base_offset <= last or entry.max_timestamp > summary.max_timestamp:
            raise _corrupt(f"index entry {tuple(entry)} outside offsets [{base}, {last}] or "
                           f"max timestamp {summary.max_timestamp}")
        if entry.position + _MIN_BATCH_SIZE > summary.data_bytes:
            raise _corrupt(f"index position {entry.position} leaves no room for a batch in "
                           f"{summary.data_bytes} data bytes")
        prev = entry
    aborted_start = summary.index_count * INDEX_ENTRY.size
    aborted: list[AbortedTxn] = []
    for i in range(summary.aborted_count):
        pid, first, marker = ABORTED_ENTRY.unpack_from(view, aborted_start + i * ABORTED_ENTRY.size)
        if pid < 0 or not 0 <= first <= marker or not base <= marker < summary.next_offset:
            raise _corrupt(f"aborted transaction {(pid, first, marker)} out of range")
        if aborted and (first, marker, pid) <= (aborted[-1].first_offset,
                                                aborted[-1].last_offset, aborted[-1].producer_id):
            raise _corrupt(f"aborted transaction {(pid, first, marker)} out of order")
        aborted.append(AbortedTxn(pid, first, marker))
    return RemoteIndex(summary, entries, tuple(aborted))


def iter_frames(buf: Buffer, pos: int, end: int, *,
                final: bool = False) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(position, size, base_offset, last_offset)`` of each complete batch in
    ``buf[pos:end]``, positions in ``buf``'s coordinates.

    An incomplete batch at ``end`` ends the iteration quietly (the caller fetches more), unless
    ``final`` says ``end`` is the end of the data: then it raises. Raises CorruptRecordError
    for an impossible batchLength or magic, or a negative or non-increasing offset. CRCs are
    not checked (see :func:`logstore.records.header.check_crc`).
    """
    if not 0 <= pos <= end <= len(buf):
        raise InvalidArgumentError(f"range [{pos}, {end}) is not inside {len(buf)} bytes")
    last_offset = -1
    while pos < end:
        if end - pos < _h.LOG_OVERHEAD:
            break
        (length,) = _INT32.unpack_from(buf, pos + _h.LENGTH_OFFSET)
        if length < _h.MIN_BATCH_LENGTH:
            raise CorruptRecordError(f"batch at position {pos} has impossible length {length}")
        size = _h.LOG_OVERHEAD + length
        if end - pos < size:
            break
        (base_offset,) = _INT64.unpack_from(buf, pos + _h.BASE_OFFSET_OFFSET)
        (delta,) = _INT32.unpack_from(buf, pos + _h.LAST_OFFSET_DELTA_OFFSET)
        magic = buf[pos + _h.MAGIC_OFFSET]
        if magic != _h.MAGIC:
            raise CorruptRecordError(f"batch at position {pos} has magic {magic}, expected 2")
        if base_offset <= last_offset or base_offset < 0 or delta < 0:
            raise CorruptRecordError(
                f"batch at position {pos} has offsets {base_offset}+{delta} after {last_offset}")
        last_offset = base_offset + delta
        yield pos, size, base_offset, last_offset
        pos += size
    if final and pos < end:
        raise CorruptRecordError(f"truncated batch at position {pos}: {end - pos} bytes left")
