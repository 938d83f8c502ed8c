"""The append path of a partition log: validation, group commit, offsets, producer state, rolls.

Appends arriving while a commit runs are queued and committed together by the next leader
thread: one SQLite transaction, one fsync. Inside the active segment's ``BEGIN IMMEDIATE``
transaction the leader reads the log end offset, checks every idempotent/transactional batch
against its producer's state (``producer_state.apply``), assigns offsets, patches them into the
batch bytes, and writes batches, producer state and aborted-transaction entries together, so
they stay consistent in every process. Each batch gets its own outcome: one rejected batch
(out-of-order sequence, fenced epoch) never fails the others of a commit.

The :class:`Appender` is one collaborator of :class:`~logstore.log.partition_log.PartitionLog`:
it owns the group-commit queue and goes through the partition's
:class:`~logstore.log.segment_set.SegmentSet` for the writer connection and rolls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from logstore.clock import Clock
from logstore.config import TopicConfig
from logstore.errors import (
    InvalidRecordError,
    LogstoreError,
    RecordTooLargeError,
    StorageError,
)
from logstore.log.checkpointer import DEFAULT_CHECKPOINT_PAGES, Checkpointer
from logstore.log.producer_state import AbortedTxn, ProducerEntry, apply
from logstore.log.segment import BatchRow, Segment
from logstore.log.segment_set import SegmentSet
from logstore.records.control import ControlRecord, parse_control
from logstore.records.header import (
    BatchHeader,
    parse_header,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
    validate_batch,
)
from logstore.records.reader import check_batch_records
from logstore.types import AppendResult

_MAX_RETRIES = 1000
# Producer states idle for this long are dropped when a segment rolls (Kafka's
# producer.id.expiration.ms is one day; a week is more forgiving for rarely-writing producers).
PRODUCER_EXPIRATION_MS = 7 * 24 * 3600 * 1000


class _Pending:
    """One batch waiting for the group commit."""

    __slots__ = ("data", "done", "error", "header", "marker", "result", "verified_claim")

    def __init__(self, data: bytes, header: BatchHeader, marker: ControlRecord | None,
                 verified_claim: int | None) -> None:
        self.data = data
        self.header = header
        self.marker = marker
        self.verified_claim = verified_claim
        self.result: AppendResult | None = None
        self.error: BaseException | None = None
        self.done = False


class Appender:
    """Appending, rolling and the writer connection of one partition. Thread-safe."""

    def __init__(
        self,
        segments: SegmentSet,
        *,
        topic: str,
        config: Callable[[], TopicConfig],
        clock: Clock,
        committed: Callable[[int], None],
        finish_truncation: Callable[[], None],
        leader_epoch: int = 0,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self._segments = segments
        self._topic = topic
        self._config = config
        self._clock = clock
        self._committed = committed
        self._finish_truncation = finish_truncation
        self.leader_epoch = leader_epoch
        self._checkpointer = checkpointer
        self._commit_cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._committing = False
        self._closed = False
        self._closed_error: LogstoreError | None = None

    def __repr__(self) -> str:
        return repr(self._segments)

    def close(self, error: LogstoreError | None = None) -> None:
        """Refuse appends from now on, with ``error`` (default: a StorageError saying it is
        closed); the connections belong to the segment set."""
        with self._commit_cond:
            self._closed = True
            self._closed_error = error

    def append(self, batch: bytes, *, verify_records: bool = True,
               verified_claim: int | None = None) -> AppendResult:
        """Append one RecordBatch v2 and return the offsets assigned to it.

        The batch is validated (framing, CRC, size against ``max.message.bytes``; with
        ``verify_records`` also every record) and, when it carries a producer id, checked
        against the producer's state: a duplicate of a recent batch returns the offsets it got
        the first time (``duplicate`` set) instead of being appended again. Durable when this
        returns, as the topic's ``durability`` says. Concurrent calls share commits.

        ``verified_claim``: the transaction coordinator's record version at which the broker
        verified the transaction of a transactional batch; the batch is refused
        (InvalidTxnStateError) if a marker claimed after that reached the partition first
        (see ``producer_state``).
        """
        return self.append_many([batch], verify_records=verify_records,
                                verified_claim=verified_claim)[0]

    def append_many(
        self, batches: Sequence[bytes], *, verify_records: bool = True,
        verified_claim: int | None = None,
    ) -> list[AppendResult]:
        """Append several batches in order; raise the first batch's error, if any (the batches
        before it are appended)."""
        results = self.append_each(batches, verify_records=verify_records,
                                   verified_claim=verified_claim)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    def append_each(
        self, batches: Sequence[bytes], *, verify_records: bool = True,
        verified_claim: int | None = None,
    ) -> list[AppendResult | LogstoreError]:
        """Append several batches in order, in one transaction; return each one's result or
        the error that rejected it (the others are appended regardless)."""
        config = self._config()
        mine: list[_Pending] = []
        outcomes: list[AppendResult | LogstoreError | None] = []
        for data in batches:
            try:
                header, marker = self._validate(data, config, verify_records)
            except LogstoreError as exc:
                outcomes.append(exc)
                continue
            mine.append(_Pending(data, header, marker, verified_claim))
            outcomes.append(None)
        if mine:
            self._commit_queued(mine)
        pending = iter(mine)
        results: list[AppendResult | LogstoreError] = []
        for outcome in outcomes:
            if outcome is not None:
                results.append(outcome)
                continue
            item = next(pending)
            if item.error is not None:
                if isinstance(item.error, LogstoreError):
                    results.append(item.error)
                    continue
                raise item.error
            if item.result is None:
                raise StorageError(f"{self}: append was not committed")
            results.append(item.result)
        return results

    def _commit_queued(self, mine: list[_Pending]) -> None:
        """Queue ``mine``; lead a commit or wait for the leader that takes them."""
        group: list[_Pending] | None = None
        with self._commit_cond:
            if self._closed:
                if self._closed_error is not None:
                    raise self._closed_error
                raise StorageError(f"{self} is closed")
            self._queue.extend(mine)
            while not mine[-1].done:
                if not self._committing:
                    self._committing = True
                    group, self._queue = self._queue, []
                    break
                self._commit_cond.wait()
        if group is None:
            return
        try:
            log_end = self._commit_group(group)
            # Rung before anyone is answered: an acknowledged record is always announced.
            self._committed(log_end)
        except BaseException as exc:  # noqa: BLE001 - every waiter of this commit gets its failure
            for pending in group:
                pending.error = exc
        finally:
            with self._commit_cond:
                self._committing = False
                for pending in group:
                    pending.done = True
                self._commit_cond.notify_all()

    def _validate(
        self, batch: bytes, config: TopicConfig, verify_records: bool
    ) -> tuple[BatchHeader, int | None]:
        header = validate_batch(batch)
        if header.size_bytes != len(batch):
            raise InvalidRecordError(
                f"expected exactly one record batch, got {len(batch)} bytes for a "
                f"{header.size_bytes}-byte batch"
            )
        if len(batch) > config.max_message_bytes:
            raise RecordTooLargeError(
                f"record batch of {len(batch)} bytes exceeds max.message.bytes="
                f"{config.max_message_bytes} of topic {self._topic}"
            )
        if header.record_count == 0:
            raise InvalidRecordError("a record batch must hold at least one record")
        if header.record_count != header.last_offset_delta + 1:
            raise InvalidRecordError(
                f"record count {header.record_count} does not match lastOffsetDelta "
                f"{header.last_offset_delta}"
            )
        if (header.is_transactional or header.is_control) and header.producer_id < 0:
            raise InvalidRecordError("transactional and control batches need a producer id")
        marker = None
        if header.is_control:
            from logstore.records.reader import decode_batch

            _, records = decode_batch(batch, verify_crc=False)
            if len(records) != 1:
                raise InvalidRecordError("a control batch holds exactly one record")
            marker = parse_control(records[0].key, records[0].value)
        elif verify_records or config.compacts:
            # Every record checked as a reader would decode it, without building one (the
            # batch of a client the broker serves is never decoded into records).
            bad_delta, keyless = check_batch_records(batch, header)
            if bad_delta >= 0:
                raise InvalidRecordError(
                    f"record {bad_delta} has offset delta other than {bad_delta}; deltas must "
                    "be 0, 1, 2, ...")
            if config.compacts and keyless >= 0:
                # As Kafka: the cleaner keeps the latest record *per key*, so a keyless
                # record on a compacted topic could never be kept or replaced.
                raise InvalidRecordError(
                    f"topic {self._topic} is compacted (cleanup.policy="
                    f"{config.cleanup_policy}): every record needs a key")
        return header, marker

    def _commit_group(self, group: list[_Pending]) -> int:
        """Commit ``group`` in one transaction; return the log end offset after it."""
        config = self._config()
        incoming = sum(len(p.data) for p in group)
        for _ in range(_MAX_RETRIES):
            writer = self._writer_segment()
            roll = sealed = False
            decided: list[tuple[_Pending, AppendResult | LogstoreError]] = []
            log_end = -1
            with writer.lock:
                if writer.closed:  # the file budget closed it while it was idle
                    continue
                writer.touch()
                writer.set_durability(fsync=config.fsync)
                with writer.write_transaction() as state:
                    now = self._clock.time_ms()
                    if state.sealed:
                        sealed = True
                    elif not state.is_empty and (
                        state.size_bytes + incoming > config.segment_bytes
                        or now - state.created_ms >= config.max_segment_ms
                    ):
                        roll = True
                    else:
                        decided, log_end = self._write_group(
                            writer, group, state.log_end_offset, now, config)
            if sealed:
                self._segments.drop_writer(writer)
                continue
            if roll:
                self._roll(expected_base=writer.base_offset)
                continue
            for pending, outcome in decided:
                if isinstance(outcome, LogstoreError):
                    pending.error = outcome
                else:
                    pending.result = outcome
            return log_end
        raise StorageError(f"{self}: could not find the active segment")

    def _write_group(
        self, writer: Segment, group: list[_Pending], next_offset: int,
        now_ms: int, config: TopicConfig,
    ) -> tuple[list[tuple[_Pending, AppendResult | LogstoreError]], int]:
        """Inside the write transaction: decide every batch, then write rows and state; return
        the outcomes and the log end offset after them."""
        log_start = self._segments.state.get().log_start_offset
        producer_ids = sorted({p.header.producer_id for p in group if p.header.producer_id >= 0})
        states = writer.producers(producer_ids) if producer_ids else {}
        changed: dict[int, ProducerEntry] = {}
        aborted: list[AbortedTxn] = []
        rows: list[BatchRow] = []
        decided: list[tuple[_Pending, AppendResult | LogstoreError]] = []
        for pending in group:
            header = pending.header
            if header.producer_id >= 0:
                try:
                    outcome = apply(states.get(header.producer_id), header, next_offset,
                                    marker=pending.marker,
                                    verified_claim=pending.verified_claim, now_ms=now_ms)
                except LogstoreError as exc:
                    decided.append((pending, exc))
                    continue
                if outcome.duplicate is not None:
                    original = outcome.duplicate
                    decided.append((pending, AppendResult(
                        original.first_offset, original.last_offset, -1, log_start,
                        duplicate=True)))
                    continue
                if outcome.skip:
                    decided.append((pending, AppendResult(-1, -1, -1, log_start, duplicate=True)))
                    continue
                if outcome.entry is not None:
                    states[header.producer_id] = changed[header.producer_id] = outcome.entry
                if outcome.aborted is not None:
                    aborted.append(outcome.aborted)
            row, result = self._row(pending, next_offset, now_ms, config, log_start)
            rows.append(row)
            decided.append((pending, result))
            next_offset = row.last_offset + 1
        writer.insert(rows)
        if changed:
            writer.save_producers(list(changed.values()))
        if aborted:
            writer.add_aborted(aborted)
        return decided, next_offset

    def _row(
        self, pending: _Pending, offset: int, now_ms: int, config: TopicConfig,
        log_start: int,
    ) -> tuple[BatchRow, AppendResult]:
        header = pending.header
        data = bytearray(pending.data)
        set_base_offset(data, 0, offset)
        set_partition_leader_epoch(data, 0, self.leader_epoch)
        max_timestamp = header.max_timestamp
        append_time = -1
        attributes = header.attributes
        if config.log_append_time and not header.is_control:
            set_log_append_time(data, 0, now_ms)
            max_timestamp = append_time = now_ms
            attributes = parse_header(data).attributes
        last = offset + header.last_offset_delta
        return (BatchRow(offset, last, max_timestamp, header.record_count, header.producer_id,
                         attributes, data),
                AppendResult(offset, last, append_time, log_start))

    # --- the writer connection and rolls ------------------------------------------------------

    def _writer_segment(self) -> Segment:
        """The writer connection of the active segment (opening it, finishing a truncation
        or a roll another process left half done)."""
        segments = self._segments
        writer = segments.cached_writer()
        if writer is not None:
            return writer
        for _ in range(_MAX_RETRIES):
            base = segments.last_base()
            try:
                segment = segments.open_segment(base, pooled=True)
            except FileNotFoundError:
                continue  # unlisted meanwhile (a truncation in another process)
            # Checked after opening: a truncation creates segments only after recording its
            # intent, so a segment made by an unfinished truncation is never written to.
            if segments.state.get().truncating_to is not None:
                segment.close()
                self._finish_truncation()
                continue
            with segment.lock:
                state = segment.state()
            if state.sealed:
                segment.close()
                self._create_successor(base)
                continue
            if self._checkpointer is not None:
                segment.checkpoint_in_background(self._checkpointer.request,
                                                 pages=DEFAULT_CHECKPOINT_PAGES)
            return segments.install_writer(segment)
        raise StorageError(f"{self}: could not open the active segment")

    def _create_successor(self, base: int) -> None:
        """The highest segment is sealed (a roll that crashed before creating or listing its
        successor, or a truncation in progress): make sure its successor exists."""
        segments = self._segments
        with segments.lock.hold():
            if segments.last_base() != base:
                return
            segment = segments.open_own(base)
            try:
                with segment.lock, segment.read_transaction() as state:
                    producers = self._surviving_producers(segment)
                if not state.sealed:
                    return
                successor = state.next_offset
                if successor is None or successor < 0:
                    successor = state.log_end_offset
                segments.create(successor, created_ms=self._clock.time_ms(),
                                producers=producers)
                segment.checkpoint()
            finally:
                segment.close()

    def _surviving_producers(self, segment: Segment) -> list[ProducerEntry]:
        """A sealed segment's producer states that carry over to its successor: all but those
        idle past the expiration (and not in a transaction)."""
        horizon = self._clock.time_ms() - PRODUCER_EXPIRATION_MS
        return [e for e in segment.producers().values()
                if e.txn_first_offset is not None or e.last_timestamp_ms >= horizon]

    def roll(self) -> None:
        """Seal the active segment now (if it holds anything) and start a new one."""
        self._roll(expected_base=None)

    def _roll(self, *, expected_base: int | None) -> None:
        segments = self._segments
        with segments.lock.hold():
            writer = self._writer_segment()
            if expected_base is not None and writer.base_offset != expected_base:
                return  # somebody else rolled already
            successor = None
            producers: list[ProducerEntry] = []
            with writer.lock:
                with writer.write_transaction() as state:
                    if not state.sealed and not state.is_empty:
                        writer.seal(state.log_end_offset)
                        successor = state.log_end_offset
                        producers = self._surviving_producers(writer)
                if successor is not None:
                    # A sealed segment never changes again (but for the cleaner): fold its
                    # WAL in now, so it is one self-contained file.
                    writer.checkpoint()
            segments.drop_writer(writer)
            if successor is not None:
                segments.create(successor, created_ms=self._clock.time_ms(),
                                producers=producers)
                segments.forget_state(writer.base_offset)
