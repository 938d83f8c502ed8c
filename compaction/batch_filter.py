"""What the log cleaner keeps of each batch (Kafka's ``LogCleaner.cleanInto`` rules).

A :class:`BatchFilter` sees every batch from the log start offset up to the end of the offset
map, in offset order, and answers with the batch unchanged (the same object), a rewritten
batch (same base offset, same last offset, same producer fields) or None (removed):

* A record is kept when it is the latest of its key: the offset map holds, for every key of
  the dirty section, its latest offset, so a record whose map offset is higher is superseded.
  Records past the map's end are newer than anything in it and always kept. Records without a
  key are removed (a compacted topic refuses them on append; they can only come from before the
  topic was switched to ``compact``), as Kafka does.
* A tombstone (null value) that is the latest of its key stays until its batch's *delete
  horizon* has passed. The horizon is set the first time the cleaner keeps the batch: to now +
  ``delete.retention.ms``, written in the batch's baseTimestamp with attribute bit 6 (KIP-534),
  the record timestamp deltas re-encoded against it. Slow consumers thus see every deletion
  for at least ``delete.retention.ms`` after it was cleaned.
* Batches of aborted transactions are removed (their keys were never put in the map).
* A transaction marker (control batch) is removed once its transaction has no data left in the
  log and its own delete horizon (set as for tombstones) has passed. The aborted-transaction
  index entry of a removed ABORT marker is dropped (:meth:`BatchFilter.keep_aborted`).
* The last data batch of each producer in the partition's producer state is never removed: if
  none of its records survive it is kept *empty* (no records, same offsets, producer id, epoch
  and sequences), so idempotent producers keep their sequence state across truncation and
  restarts, as Kafka does.
* The batch holding the last offset of the cleanable range is never removed either (emptied if
  need be): when the active segment is empty, a reader at the end of the cleaned range must
  still find a batch to move past, or it would wait at an offset below the high watermark
  forever. A later cleaning removes it once data follows it.

Offsets are never changed: a rewritten batch keeps its base offset and lastOffsetDelta and its
records keep their offset deltas, so a compacted log has gaps.

The filter also finds the *earliest delete horizon* it leaves in the log
(:attr:`BatchFilter.earliest_delete_horizon_ms`): the lowest horizon of the batches it keeps
that still hold a tombstone, or that are a marker waiting for its horizon. Once that time
passes a cleaning removes something, so the job makes the partition due then (as Kafka 3.x
does). Markers kept for another reason (their transaction still has data, or they hold the end
of the range) do not count: cleaning again when their horizon passes would remove nothing.

Not thread-safe: one filter per cleaning pass.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from logstore.compaction.offset_map import OffsetMap

from logstore.log.producer_state import AbortedTxn
from logstore.records.builder import build_batch, encode_record_at
from logstore.records.control import ControlType, parse_control
from logstore.records.header import DELETE_HORIZON_MASK, BatchHeader, parse_header
from logstore.records.reader import decode_batch
from logstore.types import ConsumerRecord


@dataclass(slots=True)
class FilterStats:
    """Running totals of one cleaning pass."""

    batches_read: int = 0
    batches_rewritten: int = 0
    batches_removed: int = 0
    records_read: int = 0
    records_removed: int = 0
    tombstones_removed: int = 0
    markers_removed: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


class AbortedIndex:
    """Which data batches belong to an aborted transaction (immutable, thread-safe)."""

    def __init__(self, aborted: Sequence[AbortedTxn]) -> None:
        self._by_producer: dict[int, tuple[list[int], list[AbortedTxn]]] = {}
        for txn in sorted(aborted, key=lambda a: a.first_offset):
            firsts, txns = self._by_producer.setdefault(txn.producer_id, ([], []))
            firsts.append(txn.first_offset)
            txns.append(txn)

    def holds(self, header: BatchHeader) -> bool:
        """True if the (non-control) batch of ``header`` is data of an aborted transaction."""
        if not header.is_transactional:
            return False
        found = self._by_producer.get(header.producer_id)
        if found is None:
            return False
        firsts, txns = found
        index = bisect.bisect_right(firsts, header.base_offset) - 1
        return index >= 0 and header.base_offset < txns[index].last_offset


class BatchFilter:
    """The keep/rewrite/remove decision for each batch of one pass (see the module docstring).

    ``offset_map`` maps keys to their latest offset in the dirty section; ``aborted`` indexes
    the partition's aborted transactions; ``last_batch_offsets`` holds the base offset of the last
    data batch of every producer in the producer state; the batch that contains
    ``tail_offset`` (the last offset of the cleanable range) is never removed either.

    :attr:`earliest_delete_horizon_ms` is the earliest delete horizon among the batches kept so
    far (see the module docstring), None while there is none.
    """

    def __init__(
        self,
        offset_map: OffsetMap,
        *,
        now_ms: int,
        delete_retention_ms: int,
        aborted: AbortedIndex,
        last_batch_offsets: Collection[int],
        tail_offset: int = -1,
    ) -> None:
        self._map = offset_map
        self._now_ms = now_ms
        self._new_horizon = now_ms + delete_retention_ms
        self._last_batches = frozenset(last_batch_offsets)
        self._tail_offset = tail_offset
        self._aborted = aborted
        # Producers whose current transaction kept data so far (reset by its marker).
        self._txn_has_data: dict[int, bool] = {}
        self._removed_abort_markers: set[tuple[int, int]] = set()
        self.stats = FilterStats()
        self.earliest_delete_horizon_ms: int | None = None

    def __call__(self, base_offset: int, data: bytes) -> bytes | None:
        header = parse_header(data)
        stats = self.stats
        stats.batches_read += 1
        stats.bytes_read += len(data)
        stats.records_read += header.record_count
        if header.is_control:
            result = self._marker(header, data)
        else:
            result = self._data(header, data)
        if result is None:
            stats.batches_removed += 1
        else:
            stats.bytes_written += len(result)
            if result is not data:
                stats.batches_rewritten += 1
        return result

    def keep_aborted(self, txn: AbortedTxn) -> bool:
        """Whether the aborted-transaction index keeps ``txn`` (False once its marker is gone)."""
        return (txn.producer_id, txn.last_offset) not in self._removed_abort_markers

    # --- data batches ----------------------------------------------------------------------

    def _data(self, header: BatchHeader, data: bytes) -> bytes | None:
        stats = self.stats
        if self._aborted.holds(header):
            kept: list[ConsumerRecord] = []
            stats.records_removed += header.record_count
        else:
            _, records = decode_batch(data, verify_crc=False)
            kept = self._latest(header, records)
        if kept and header.is_transactional:
            self._txn_has_data[header.producer_id] = True
        if not kept:
            if not self._must_keep(header):
                return None
            return data if header.record_count == 0 else _empty_batch(header)
        tombstones = any(r.value is None for r in kept)
        needs_horizon = tombstones and not header.has_delete_horizon
        if tombstones:
            self._left_horizon(self._new_horizon if needs_horizon else header.base_timestamp)
        if len(kept) == header.record_count and not needs_horizon:
            return data
        horizon = self._new_horizon if needs_horizon else None
        return _rebuild(header, kept, horizon)

    def _left_horizon(self, horizon_ms: int) -> None:
        """A kept batch waits for ``horizon_ms``."""
        if self.earliest_delete_horizon_ms is None or horizon_ms < self.earliest_delete_horizon_ms:
            self.earliest_delete_horizon_ms = horizon_ms

    def _latest(self, header: BatchHeader, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """The records that are the latest of their key and not expired tombstones."""
        stats = self.stats
        expired = header.has_delete_horizon and self._now_ms >= header.base_timestamp
        keyed = [r for r in records if r.key is not None]
        stats.records_removed += len(records) - len(keyed)
        latest = self._map.get_many([r.key for r in keyed])  # type: ignore[misc]
        kept: list[ConsumerRecord] = []
        for record, mapped in zip(keyed, latest, strict=True):
            if mapped > record.offset:
                stats.records_removed += 1
                if record.value is None:
                    stats.tombstones_removed += 1
            elif record.value is None and expired:
                stats.records_removed += 1
                stats.tombstones_removed += 1
            else:
                kept.append(record)
        return kept

    def _must_keep(self, header: BatchHeader) -> bool:
        return (header.base_offset in self._last_batches
                or header.base_offset <= self._tail_offset <= header.last_offset)

    # --- transaction markers ---------------------------------------------------------------

    def _marker(self, header: BatchHeader, data: bytes) -> bytes | None:
        _, records = decode_batch(data, verify_crc=False)
        if len(records) != 1:
            return data
        control = parse_control(records[0].key, records[0].value)
        if control.type not in (ControlType.COMMIT, ControlType.ABORT):
            return data  # not ours to judge
        if self._txn_has_data.pop(header.producer_id, False):
            return data  # consumers need it to finish the transaction's data
        if not header.has_delete_horizon:
            self._left_horizon(self._new_horizon)
            return _rebuild(header, records, self._new_horizon)
        if self._now_ms < header.base_timestamp:
            self._left_horizon(header.base_timestamp)
            return data
        if self._must_keep(header):
            return data
        self.stats.markers_removed += 1
        self.stats.records_removed += 1
        if control.is_abort:
            self._removed_abort_markers.add((header.producer_id, header.base_offset))
        return None


def _rebuild(header: BatchHeader, records: Sequence[ConsumerRecord], horizon: int | None) -> bytes:
    """The batch of ``header`` holding only ``records``, at their original offsets; with a
    new delete horizon if ``horizon`` is given (else the original base timestamp)."""
    base_ts = header.base_timestamp if horizon is None else horizon
    attributes = header.attributes | (DELETE_HORIZON_MASK if horizon is not None else 0)
    base_offset = header.base_offset
    section = b"".join(
        encode_record_at(r.offset - base_offset, r.timestamp_ms, r.key, r.value, r.headers,
                         base_timestamp_ms=base_ts)
        for r in records)
    if header.timestamp_type == 1:
        max_ts = header.max_timestamp  # LogAppendTime: the append time applies to every record
    else:
        max_ts = max(r.timestamp_ms for r in records)
    return build_batch(
        section, len(records), base_timestamp_ms=base_ts, max_timestamp_ms=max_ts,
        compression=header.compression, attributes=attributes,
        producer_id=header.producer_id, producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        partition_leader_epoch=header.partition_leader_epoch, base_offset=base_offset,
        last_offset_delta=header.last_offset_delta)


def _empty_batch(header: BatchHeader) -> bytes:
    """The batch of ``header`` without records, kept for its producer's sequence state."""
    return build_batch(
        b"", 0, base_timestamp_ms=header.base_timestamp, max_timestamp_ms=header.max_timestamp,
        attributes=header.attributes, producer_id=header.producer_id,
        producer_epoch=header.producer_epoch, base_sequence=header.base_sequence,
        partition_leader_epoch=header.partition_leader_epoch, base_offset=header.base_offset,
        last_offset_delta=header.last_offset_delta)
