"""The producer's sender: encodes ready batches and appends them to the partition logs.

Who appends:

* A ``send`` that fills a batch appends the full batches of that partition itself, on the
  caller's thread ("caller runs"), before it returns. In CPython a background thread that
  needs the GIL back while the application thread is busy producing waits up to the switch
  interval (5 ms) for it, once per hand-off; appending on the producing thread costs no
  hand-off at all, and the SQLite I/O of the append releases the GIL for other threads.
* A background thread appends what nobody else does: batches whose ``linger_ms`` ran out, and
  everything on ``flush`` and ``close``. Several partitions' appends run on a small pool, so
  their fsyncs overlap.

Order: every drain-and-append of a partition happens under that partition's append lock, so a
partition's batches are appended in the order they were filled, whoever appends them.

Retriable append failures (a database locked by another process) are retried with the same
bytes, after ``retry_backoff_ms``, until the batch's ``delivery_timeout_ms`` runs out (both on
the log's clock): an idempotent producer's batch carries its producer id and sequence, so a
retry of an append that did happen (its answer was lost) is recognised by the partition and
answered with the original offsets. Other failures fail the batch's futures; a rejected batch
gives its sequence numbers back, so the next batch of the partition follows the last one
appended.

Sequences: an idempotent producer numbers each partition's records from 0 in every epoch; a
batch gets its base sequence when it is encoded, under the partition's append lock, so the
numbers follow append order. For the current identity (producer id, epoch) the sender keeps,
per partition, the next sequence and the topic id (the topic's incarnation) it numbers for.

Recovering the sequence (KIP-360). A partition answers UnknownProducerIdError when it has no
state for the producer and a batch does not start at sequence 0: the producer's state expired
there (idle for ``PRODUCER_EXPIRATION_MS``, dropped at a roll), or the topic was deleted and
re-created. The sender also sees a re-creation by itself, before encoding: the partition's topic
id differs from the one its sequences were written to. Either way an idempotent producer, whose
producer id is its own, bumps its epoch locally and starts again at sequence 0 on every
partition, which every partition accepts (a new epoch starts at 0), with no coordinator call.
The rejected batches were not written (a rejection writes nothing), so they are encoded again
under the new epoch and appended, still ahead of the partition's later batches, within their
``delivery_timeout_ms``: nothing is duplicated or reordered. At the last epoch (32767) the
producer takes a new producer id from the coordinator instead.

The bump does not fence the producer's own batches of other partitions that were encoded with
the old epoch: a partition's batches are encoded and appended under its append lock, one drain
at a time, so all of its old-epoch batches are appended (retried with their same bytes, if
need be) before its first new-epoch batch is even encoded: each partition sees the epoch only
rise. Bookkeeping after an append (the next sequence, a sequence given back) is applied only if
the identity the batches were encoded with is still current, so an old-epoch append finishing
after a bump cannot disturb the new epoch's numbering.

A transactional producer does not change epochs by itself (the coordinator owns them, and its
markers fence by epoch): the batch fails with UnknownProducerIdError, the transaction cannot
commit (TransactionAbortedError, which is abortable), and ``abort_transaction()`` adopts the
epoch the coordinator bumps, with sequences from 0, as in Kafka.

Closing: :meth:`Sender.close` makes everything queued urgent, waits up to its timeout (real
time) for it to be appended, then fails what is left, queued or being retried, and stops the
threads. :meth:`Sender.begin_close` only starts that, without waiting: it is what runs when the
application drops a producer without closing it, so its records are still sent and its thread
ends (see ``registry``).

Thread-safe.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from logstore.backends.txn_records import MAX_PRODUCER_EPOCH
from logstore.client.access import ClientAccess
from logstore.client.accumulator import ProducerBatch, RecordAccumulator
from logstore.clock import ClockCondition
from logstore.errors import LogstoreError, LogstoreTimeoutError, UnknownProducerIdError
from logstore.log.producer_state import next_sequence
from logstore.records.compression import Compression
from logstore.types import AppendResult, TopicPartition

MAX_APPEND_THREADS = 4

Identity = tuple[int, int]  # (producer id, epoch); (-1, -1): not idempotent


@dataclass(frozen=True, slots=True)
class _Encoded:
    """Batches encoded for one append attempt, with what they were numbered under."""

    identity: Identity
    transactional: bool
    topic_id: str  # the topic incarnation the sequences count for
    sequences: tuple[int, ...]  # base sequence of each batch (-1: not idempotent)
    datas: tuple[bytes, ...]


class Sender:
    """Appends ready batches (see the module docstring)."""

    def __init__(
        self,
        accumulator: RecordAccumulator,
        access: ClientAccess,
        *,
        compression: Compression,
        delivery_timeout_ms: float,
        retry_backoff_ms: float,
        name: str,
    ) -> None:
        self._accumulator = accumulator
        self._access = access
        self._clock = access.clock
        self._compression = compression
        self._delivery_timeout_ms = delivery_timeout_ms
        self._retry_backoff_ms = retry_backoff_ms
        # Set when close() stops waiting: retries end and fail their batches with it.
        self._abandoned: BaseException | None = None
        self._backoff = ClockCondition(self._clock)  # retry backoffs wait here
        self._state_lock = threading.Lock()  # guards the identity and the sequences
        self._identity: Identity = (-1, -1)
        self._transactional = False
        # per partition, for the current identity only: (topic id, next sequence)
        self._sequences: dict[TopicPartition, tuple[str, int]] = {}
        # transactional producers: batch failures since the last take_failures()
        self.failures: list[BaseException] = []
        self._locks_lock = threading.Lock()
        self._partition_locks: dict[TopicPartition, threading.Lock] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=MAX_APPEND_THREADS, thread_name_prefix=f"logstore-append-{name}"
        )
        self._thread = threading.Thread(target=self._run, name=f"logstore-sender-{name}",
                                        daemon=True)
        self._thread.start()

    def set_identity(self, producer_id: int, epoch: int, *, transactional: bool) -> None:
        """Use this producer identity for the next batches; sequences start again at 0."""
        with self._locks_lock:
            locks = list(self._partition_locks.values())
        for lock in locks:  # wait until no append is encoding with the old identity
            lock.acquire()
        try:
            with self._state_lock:
                self._identity = (producer_id, epoch)
                self._transactional = transactional
                self._sequences.clear()
        finally:
            for lock in locks:
                lock.release()

    def take_failures(self) -> list[BaseException]:
        """The batch failures since the last call (a transaction must not commit after one)."""
        failures, self.failures = self.failures, []
        return failures

    def append_ready(self, tp: TopicPartition) -> None:
        """Append the partition's ready batches now, on the calling thread."""
        with self._partition_lock(tp):
            batches = self._accumulator.drain_partition(tp)
            if batches:
                self._append(tp, batches)

    # --- closing -------------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Whether closing has begun (no record is taken any more)."""
        return self._accumulator.closed

    @property
    def stopped(self) -> bool:
        """Whether the background thread has ended (closed, nothing left to send)."""
        return not self._thread.is_alive()

    def begin_close(self) -> None:
        """Refuse new records and send everything queued now; does not wait. Thread-safe, also
        from a finalizer: the background thread ends by itself once everything is sent."""
        self._accumulator.close()

    def abandon(self, error: BaseException) -> None:
        """Fail every queued batch with ``error``, and batches being retried at their next
        attempt; later retries do not wait."""
        self._abandoned = error
        self._accumulator.abort(error)
        with self._backoff:
            self._backoff.notify_all()
        self._accumulator.wake()

    def close(self, timeout_s: float | None, *, error: BaseException | None = None) -> bool:
        """Send what is queued, waiting up to ``timeout_s`` seconds of real time (None: as long
        as it takes); then fail what is left with ``error`` (default: a LogstoreTimeoutError)
        and stop the threads. Returns whether everything was done in time. Idempotent; of
        several concurrent calls, the first whose time runs out fails what is left."""
        self.begin_close()
        self._thread.join(timeout_s)
        done = not self._thread.is_alive()
        if not done:
            self.abandon(error or LogstoreTimeoutError(
                f"the producer was closed after waiting {timeout_s} s"))
            self._thread.join()
        self._pool.shutdown(wait=True)
        return done

    # --- the background thread -------------------------------------------------------------------

    def _partition_lock(self, tp: TopicPartition) -> threading.Lock:
        lock = self._partition_locks.get(tp)
        if lock is None:
            with self._locks_lock:
                lock = self._partition_locks.setdefault(tp, threading.Lock())
        return lock

    def _run(self) -> None:
        accumulator = self._accumulator
        try:
            while True:
                partitions = accumulator.ready_partitions()
                if partitions:
                    if len(partitions) == 1:
                        self.append_ready(partitions[0])
                    else:
                        list(self._pool.map(self.append_ready, partitions))
                    continue
                if accumulator.drained():
                    return
                accumulator.wait_for_work()
        finally:
            # Nobody may join a sender whose producer was dropped: let its pool threads end.
            self._pool.shutdown(wait=False)

    # --- appending -------------------------------------------------------------------------------

    def _append(self, tp: TopicPartition, batches: list[ProducerBatch]) -> None:
        """Append a partition's batches in order; the caller holds the partition's lock."""
        deadline_ms = min(b.created_ms for b in batches) + self._delivery_timeout_ms
        reset_from: Identity | None = None
        while batches:
            batches, reset_from = self._append_attempt(tp, batches, deadline_ms, reset_from)

    def _append_attempt(
        self, tp: TopicPartition, batches: list[ProducerBatch], deadline_ms: float,
        reset_from: Identity | None,
    ) -> tuple[list[ProducerBatch], Identity | None]:
        """Encode ``batches`` (first leaving the identity ``reset_from`` if it is still
        current) and append them, retrying retriable failures with the same bytes. Returns the
        batches to encode again under a new epoch, and the identity they were rejected under."""
        encoded: _Encoded | None = None
        while True:
            try:
                if encoded is None:
                    encoded = self._encode(tp, batches, reset_from)
                log = self._access.partition_log(tp.topic, tp.partition)
                results = log.append_each(encoded.datas, verify_records=False)
                break
            except LogstoreError as exc:
                if exc.retriable and self._may_retry(deadline_ms):
                    self._back_off()
                    continue
                error: BaseException = exc
                if exc.retriable and self._abandoned is not None:
                    error = self._abandoned
            except Exception as exc:  # noqa: BLE001 - fail the futures, keep the thread alive
                error = exc
            self._fail(batches, error)
            if encoded is not None:
                self._give_back(tp, encoded.identity, encoded.topic_id, encoded.sequences[0])
            return [], None
        return self._settle(tp, batches, encoded, results, deadline_ms)

    def _encode(
        self, tp: TopicPartition, batches: list[ProducerBatch], reset_from: Identity | None
    ) -> _Encoded:
        """Number ``batches`` for the current identity and build their bytes."""
        idempotent = self._identity[0] >= 0
        topic_id = self._access.topic_id(tp.topic) if idempotent else ""
        with self._state_lock:
            if reset_from is not None and self._identity == reset_from:
                self._bump_epoch()
            identity, transactional = self._identity, self._transactional
            if identity[0] < 0:
                sequences = [-1] * len(batches)
            else:
                known, sequence = self._sequences.get(tp, (topic_id, 0))
                if known != topic_id and sequence != 0:
                    if transactional:
                        raise UnknownProducerIdError(
                            f"topic {tp.topic!r} was deleted and re-created while this "
                            f"transaction was writing to partition {tp.partition}: abort the "
                            "transaction")
                    identity = self._bump_epoch()
                    sequence = 0
                sequences = []
                for batch in batches:
                    sequences.append(sequence)
                    sequence = next_sequence(sequence, len(batch.records))
                self._sequences[tp] = (topic_id, sequence)
        producer_id, epoch = identity
        try:
            datas = tuple(batch.build(
                self._compression, producer_id=producer_id, producer_epoch=epoch,
                base_sequence=base, transactional=transactional,
            ) for batch, base in zip(batches, sequences, strict=True))
        except BaseException:
            self._give_back(tp, identity, topic_id, sequences[0])
            raise
        return _Encoded(identity, transactional, topic_id, tuple(sequences), datas)

    def _bump_epoch(self) -> Identity:
        """Move to the next epoch (a new producer id after the last one); every partition
        starts again at sequence 0. The caller holds the state lock."""
        producer_id, epoch = self._identity
        if epoch + 1 < MAX_PRODUCER_EPOCH:
            self._identity = (producer_id, epoch + 1)
        else:
            fresh = self._access.transaction_coordinator.init_producer_id(None, 0)
            self._identity = (fresh.producer_id, fresh.epoch)
        self._sequences.clear()
        return self._identity

    def _settle(
        self, tp: TopicPartition, batches: list[ProducerBatch], encoded: _Encoded,
        results: list[AppendResult | LogstoreError], deadline_ms: float,
    ) -> tuple[list[ProducerBatch], Identity | None]:
        """Complete or fail each batch by its result; return those to send again under a new
        epoch (rejected with UnknownProducerIdError, while the delivery timeout allows)."""
        redo: list[ProducerBatch] = []
        unknown: UnknownProducerIdError | None = None
        resets = encoded.identity[0] >= 0 and not encoded.transactional
        gave_back = False
        for index, (batch, result) in enumerate(zip(batches, results, strict=True)):
            if isinstance(result, UnknownProducerIdError) and resets:
                redo.append(batch)
                unknown = result
            elif isinstance(result, LogstoreError):
                self._fail([batch], result)
                if not gave_back:
                    self._give_back(tp, encoded.identity, encoded.topic_id,
                                    encoded.sequences[index])
                    gave_back = True
            else:
                batch.result.complete(result.base_offset, result.log_append_time_ms)
                self._accumulator.completed(batch)
        if not redo:
            return [], None
        if self._abandoned is not None or self._clock.monotonic_ms() >= deadline_ms:
            self._fail(redo, self._abandoned or unknown or UnknownProducerIdError())
            with self._state_lock:
                if self._identity == encoded.identity:
                    self._sequences.pop(tp, None)  # the partition knows no sequence of ours
            return [], None
        return redo, encoded.identity

    def _may_retry(self, deadline_ms: float) -> bool:
        return (self._abandoned is None
                and self._clock.monotonic_ms() + self._retry_backoff_ms < deadline_ms)

    def _back_off(self) -> None:
        """Wait ``retry_backoff_ms`` on the clock; cut short when the sender is abandoned."""
        with self._backoff:
            until = self._clock.monotonic_ms() + self._retry_backoff_ms
            while self._abandoned is None:
                now = self._clock.monotonic_ms()
                if now >= until:
                    return
                self._backoff.wait_ms(until - now)

    def _give_back(
        self, tp: TopicPartition, identity: Identity, topic_id: str, sequence: int
    ) -> None:
        """The batch numbered from ``sequence`` (and every later one) was not appended: it is
        the partition's next sequence again, if ``identity`` is still current."""
        if sequence < 0:
            return
        with self._state_lock:
            if self._identity == identity:
                self._sequences[tp] = (topic_id, sequence)

    def _fail(self, batches: list[ProducerBatch], error: BaseException) -> None:
        if self._transactional:
            self.failures.append(error)
        for batch in batches:
            batch.result.fail(error)
            self._accumulator.completed(batch)
