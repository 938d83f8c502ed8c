"""The embedded consumer: manual assignment or consumer-group subscription, positions, seeks,
polling and committed offsets.

``poll`` returns records of the assigned partitions in offset order per partition (see
``fetcher``). When nothing is readable it sleeps on the log's append notifier, which wakes it
when this process or another one appends to a watched partition: no busy loop.

Groups: with ``group_id`` the consumer can ``subscribe`` (topics or a regex pattern) and take
part in the group's rebalances (see ``group_membership``); its starting positions are the
group's committed offsets (else ``auto_offset_reset``), and ``commit`` stores them, fenced by
the group generation. Without ``subscribe`` a consumer with a ``group_id`` may still ``assign``
partitions and commit offsets, as long as the group has no live members (as in Kafka).
Auto-commit (``enable_auto_commit``) commits what ``poll`` returned every
``auto_commit_interval_ms``, before partitions are revoked, and on ``close``.

Time: the auto-commit interval and the group's session, heartbeat and max-poll intervals run on
the log's clock (a ManualClock drives them in tests); ``poll(timeout_ms)`` bounds how long the
call blocks and is real time.

Not thread-safe, like Kafka's consumer: use it from one thread (``close`` may be called from
another to stop a blocked ``poll``). Rebalance listeners and commit callbacks run on the thread
that calls ``poll``/``commit``/``close``, except ``commit_async`` callbacks, which run on the
consumer's commit thread.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from logstore.backends.group_records import CommittedOffset
from logstore.client.access import ClientAccess
from logstore.client.fetcher import RESETS, Fetcher
from logstore.client.group_membership import (
    ConsumerRebalanceListener,
    GroupMembership,
    GroupOptions,
)
from logstore.coordinator.assignors import get_assignor
from logstore.coordinator.group_coordinator import GroupCoordinator
from logstore.errors import (
    CommitFailedError,
    IllegalGenerationError,
    IllegalStateError,
    InvalidArgumentError,
    LogstoreError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logstore.types import (
    ConsumerGroupMetadata,
    ConsumerRecord,
    IsolationLevel,
    OffsetAndMetadata,
    OffsetAndTimestamp,
    TopicPartition,
)

Deserializer = Callable[[bytes | None], Any]
CommitCallback = Callable[[dict[TopicPartition, OffsetAndMetadata], BaseException | None], None]


class Consumer:
    """Reads records of one log's topics (see the module docstring)."""

    def __init__(
        self,
        access: ClientAccess,
        *,
        group_id: str | None = None,
        auto_offset_reset: str = "latest",
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        session_timeout_ms: int = 45_000,
        heartbeat_interval_ms: int = 3000,
        max_poll_interval_ms: int = 300_000,
        partition_assignment_strategy: str | list[str] = "range",
        group_instance_id: str | None = None,
        max_poll_records: int = 500,
        max_partition_fetch_bytes: int = 1024 * 1024,
        fetch_max_bytes: int = 50 * 1024 * 1024,
        isolation_level: str = "read_uncommitted",
        check_crcs: bool = True,
        key_deserializer: Deserializer | None = None,
        value_deserializer: Deserializer | None = None,
        consumer_timeout_ms: float | None = None,
        client_id: str | None = None,
    ) -> None:
        if auto_offset_reset not in RESETS:
            raise InvalidArgumentError(
                f"auto_offset_reset must be one of {', '.join(RESETS)}; got {auto_offset_reset!r}"
            )
        for name, value in (("max_poll_records", max_poll_records),
                            ("max_partition_fetch_bytes", max_partition_fetch_bytes),
                            ("fetch_max_bytes", fetch_max_bytes),
                            ("auto_commit_interval_ms", auto_commit_interval_ms),
                            ("session_timeout_ms", session_timeout_ms),
                            ("heartbeat_interval_ms", heartbeat_interval_ms),
                            ("max_poll_interval_ms", max_poll_interval_ms)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive int, got {value!r}")
        if heartbeat_interval_ms >= session_timeout_ms:
            raise InvalidArgumentError(
                "heartbeat_interval_ms must be lower than session_timeout_ms"
            )
        if group_id is not None and (not isinstance(group_id, str) or not group_id):
            raise InvalidArgumentError(f"group_id must be a non-empty str, got {group_id!r}")
        try:
            self.isolation_level = IsolationLevel(isolation_level)
        except ValueError:
            raise InvalidArgumentError(
                "isolation_level must be 'read_uncommitted' or 'read_committed'; "
                f"got {isolation_level!r}"
            ) from None
        strategies = ([partition_assignment_strategy]
                      if isinstance(partition_assignment_strategy, str)
                      else list(partition_assignment_strategy))
        self._assignors = [get_assignor(name) for name in strategies]
        if not self._assignors:
            raise InvalidArgumentError("partition_assignment_strategy names no assignor")
        self._access = access
        self.client_id = client_id or f"consumer-{id(self):x}"
        self.group_id = group_id
        self._group_options = GroupOptions(
            group_id=group_id or "", client_id=self.client_id,
            group_instance_id=group_instance_id, session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms, max_poll_interval_ms=max_poll_interval_ms,
        )
        self._fetcher = Fetcher(
            access, auto_offset_reset=auto_offset_reset,
            max_partition_fetch_bytes=max_partition_fetch_bytes,
            fetch_max_bytes=fetch_max_bytes, check_crcs=check_crcs,
            isolation=self.isolation_level,
        )
        self._max_poll_records = max_poll_records
        self._key_deserializer = key_deserializer
        self._value_deserializer = value_deserializer
        self._consumer_timeout_ms = consumer_timeout_ms
        self._clock = access.clock
        self._auto_commit_ms = auto_commit_interval_ms if enable_auto_commit else None
        self._next_auto_commit_ms = self._clock.monotonic_ms() + (self._auto_commit_ms or 0)
        self._membership: GroupMembership | None = None
        self._listener: ConsumerRebalanceListener | None = None
        self._commit_pool: ThreadPoolExecutor | None = None
        self._closed = False
        access.clients.add_consumer(self)

    # --- manual assignment -------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Consume exactly these partitions (replacing any earlier assignment)."""
        self._ensure_open()
        if self._membership is not None:
            raise IllegalStateError("assign() cannot be used while subscribed: unsubscribe first")
        wanted = [_as_tp(tp) for tp in partitions]
        for tp in wanted:
            self._access.partition_log(tp.topic, tp.partition)  # raises if unknown
        self._fetcher.remove([tp for tp in self._fetcher.states if tp not in wanted])
        self._fetcher.add(wanted)

    def assignment(self) -> set[TopicPartition]:
        """The partitions currently assigned (by assign() or by the group)."""
        return set(self._fetcher.states)

    def unassign(self) -> None:
        self.assign([])

    # --- group subscription ------------------------------------------------------------------

    def subscribe(
        self,
        topics: Iterable[str] | re.Pattern[str] = (),
        *,
        pattern: str | re.Pattern[str] | None = None,
        listener: ConsumerRebalanceListener | None = None,
    ) -> None:
        """Join the consumer group and consume the partitions it assigns to this member.

        ``topics`` names topics; or ``pattern`` (a regex matched against whole topic names, also
        accepted as a compiled pattern in place of ``topics``) subscribes to every matching
        topic, including ones created later. ``listener`` gets
        ``on_partitions_revoked`` / ``on_partitions_assigned`` (and ``on_partitions_lost`` if
        it has one) on the polling thread.
        """
        self._ensure_open()
        if self.group_id is None:
            raise IllegalStateError("subscribe() needs a group_id")
        if isinstance(topics, re.Pattern):
            topics, pattern = (), topics
        if isinstance(topics, str):
            raise InvalidArgumentError("topics must be a list of names (or use pattern=...)")
        names = list(topics)
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        if bool(names) == (compiled is not None):
            raise InvalidArgumentError("subscribe() needs topics or a pattern (not both)")
        if self._membership is None and self._fetcher.states:
            raise IllegalStateError("subscribe() cannot be used after assign(): unassign first")
        self._listener = listener
        if self._membership is None:
            self._membership = GroupMembership(
                self._access.group_coordinator, self._group_options,
                self._assignors, owner=self, partition_counts=self._partition_counts,
                topics=self._access.topics, clock=self._clock,
            )
        self._membership.subscribe(names, compiled)

    def unsubscribe(self) -> None:
        """Leave the group, revoking every partition."""
        if self._membership is not None:
            membership, self._membership = self._membership, None
            self._revoke_partitions(set(self._fetcher.states), lost=False)
            membership.close(leave=True)

    def group_metadata(self) -> ConsumerGroupMetadata:
        """This member's identity in its group, for ``Producer.send_offsets_to_transaction``."""
        group_id = self._require_group()
        member_id, generation = (self._membership.identity() if self._membership is not None
                                 else ("", -1))
        return ConsumerGroupMetadata(group_id, generation, member_id,
                                     self._group_options.group_instance_id)

    def subscription(self) -> set[str]:
        return set(self._membership.subscribed_topics()) if self._membership else set()

    def _partition_counts(self, topics: list[str]) -> dict[str, int]:
        counts = {}
        for topic in topics:
            try:
                counts[topic] = self._access.topic_info(topic)[0]
            except UnknownTopicOrPartitionError:
                continue  # not created yet: nothing to assign
        return counts

    # called by the membership, on the polling thread
    def _revoke_partitions(self, partitions: set[TopicPartition], *, lost: bool) -> None:
        if not partitions:
            return
        if not lost and self._auto_commit_ms is not None:
            try:
                self._commit_positions({tp: p for tp, p in self._fetcher.positions().items()
                                        if tp in partitions})
            except CommitFailedError:
                pass  # the new owner restarts from the last successful commit
        if self._listener is not None:
            on_lost = getattr(self._listener, "on_partitions_lost", None)
            if lost and on_lost is not None:
                on_lost(set(partitions))
            else:
                self._listener.on_partitions_revoked(set(partitions))
        self._fetcher.remove(partitions)

    def _add_partitions(self, partitions: set[TopicPartition]) -> None:
        if partitions:
            self._fetcher.add(partitions)
            committed = self._coordinator().fetch_offsets(self.group_id or "", partitions)
            for tp, offset in committed.items():
                self._fetcher.state(tp).seek(offset.offset)
        if self._listener is not None:
            self._listener.on_partitions_assigned(set(partitions))

    # --- positions ---------------------------------------------------------------------------

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make ``offset`` the next offset ``poll`` returns from ``partition``."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"offset must be a non-negative int, got {offset!r}")
        self._fetcher.state(_as_tp(partition)).seek(offset)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Seek to the log start offset (all assigned partitions if none are named)."""
        targets = list(partitions) or list(self._fetcher.states)
        for tp, offset in self.beginning_offsets(targets).items():
            self.seek(tp, offset)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Seek to the log end offset (all assigned partitions if none are named)."""
        targets = list(partitions) or list(self._fetcher.states)
        for tp, offset in self.end_offsets(targets).items():
            self.seek(tp, offset)

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record ``poll`` will return from ``partition``."""
        return self._fetcher.position(_as_tp(partition))

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop returning records from these partitions until resumed."""
        for tp in partitions:
            self._fetcher.state(_as_tp(tp)).paused = True

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._fetcher.state(_as_tp(tp)).paused = False

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, s in self._fetcher.states.items() if s.paused}

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The log start offset of each partition."""
        return {
            tp: self._access.partition_log(tp.topic, tp.partition).log_start_offset
            for tp in map(_as_tp, partitions)
        }

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset after the last readable record of each partition: the high watermark, or
        with read_committed the last stable offset."""
        committed = self.isolation_level is IsolationLevel.READ_COMMITTED
        result = {}
        for tp in map(_as_tp, partitions):
            log = self._access.partition_log(tp.topic, tp.partition)
            result[tp] = log.last_stable_offset if committed else log.high_watermark
        return result

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """For each partition, the earliest offset whose timestamp is >= the given time (ms),
        or None when no such record exists."""
        result: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, ts in timestamps.items():
            tp = _as_tp(tp)
            if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
                raise InvalidArgumentError(f"timestamp for {tp} must be a non-negative int")
            result[tp] = self._access.partition_log(tp.topic, tp.partition).offset_for_timestamp(ts)
        return result

    # --- polling -----------------------------------------------------------------------------

    def poll(self, timeout_ms: float = 0, max_records: int | None = None) -> list[ConsumerRecord]:
        """Records from the assigned partitions, waiting up to ``timeout_ms`` for some to arrive.

        Subscribed consumers first take part in any rebalance (running the listener here).
        Returns at most ``max_records`` (default ``max_poll_records``); an empty list when the
        timeout passes with nothing new.
        """
        self._ensure_open()
        limit = self._max_poll_records if max_records is None else max_records
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgumentError(f"max_records must be a positive int, got {max_records!r}")
        # Real time: the timeout bounds how long the caller waits, whatever the clock says.
        deadline = time.monotonic() + max(0.0, timeout_ms) / 1000.0
        membership = self._membership
        if membership is None and not self._fetcher.states:
            raise IllegalStateError("poll() needs partitions: call assign() or subscribe() first")
        notifier = self._access.notifier
        while True:
            if membership is not None:
                membership.polled()
                if not membership.ensure_active(deadline):
                    return []
            self._maybe_auto_commit()
            sequence = notifier.sequence()
            records = self._fetcher.collect(limit)
            if records or self._closed:
                return self._deserialized(records)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return records
            if membership is not None:
                remaining = min(remaining, self._group_options.heartbeat_interval_ms / 1000.0)
            notifier.wait(sequence, remaining)

    def _deserialized(self, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        if self._key_deserializer is None and self._value_deserializer is None:
            return records
        return [self._deserialize(r) for r in records]

    def _deserialize(self, record: ConsumerRecord) -> ConsumerRecord:
        key, value = record.key, record.value
        if self._key_deserializer is not None:
            key = self._key_deserializer(key)
        if self._value_deserializer is not None:
            value = self._value_deserializer(value)
        return record._replace(key=key, value=value)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records forever (or until ``consumer_timeout_ms`` passes with none, or close())."""
        while not self._closed:
            records = self.poll(
                timeout_ms=1000 if self._consumer_timeout_ms is None else self._consumer_timeout_ms
            )
            if not records and self._consumer_timeout_ms is not None:
                return
            yield from records

    # --- committed offsets -------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        """Commit ``offsets`` (default: the positions of every assigned partition, i.e. what
        ``poll`` returned). Raises CommitFailedError if this consumer is no longer a current
        member of its group."""
        self._ensure_open()
        if offsets is None:
            self._commit_positions(self._fetcher.positions())
        else:
            self._commit(dict(offsets))

    def commit_async(
        self,
        offsets: Mapping[TopicPartition, OffsetAndMetadata] | CommitCallback | None = None,
        callback: CommitCallback | None = None,
    ) -> Future[None]:
        """Commit in the background (in order with other async commits); ``callback(offsets,
        exception)`` runs when it is done. Returns a future of the commit.

        ``commit_async(callback)`` commits the current positions, like ``commit_async(None,
        callback)``.
        """
        self._ensure_open()
        if callable(offsets) and callback is None:
            offsets, callback = None, offsets
        if offsets is None:
            chosen = {tp: OffsetAndMetadata(p) for tp, p in self._fetcher.positions().items()}
        else:
            chosen = dict(offsets)
        if self._commit_pool is None:
            self._commit_pool = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"logstore-commit-{self.client_id}"
            )

        def run() -> None:
            error: BaseException | None = None
            try:
                self._commit(chosen)
            except LogstoreError as exc:
                error = exc
            if callback is not None:
                callback(chosen, error)
            if error is not None:
                raise error

        return self._commit_pool.submit(run)

    def committed(self, partition: TopicPartition) -> OffsetAndMetadata | None:
        """The group's committed offset of ``partition`` (None if it has none)."""
        tp = _as_tp(partition)
        found = self._coordinator().fetch_offsets(self._require_group(), [tp]).get(tp)
        return None if found is None else OffsetAndMetadata(
            found.offset, found.metadata, found.leader_epoch)

    def _commit_positions(self, positions: Mapping[TopicPartition, int]) -> None:
        if positions:
            self._commit({tp: OffsetAndMetadata(p) for tp, p in positions.items()})

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        group_id = self._require_group()
        now = self._access.clock.time_ms()
        stored = {}
        for tp, value in offsets.items():
            tp = _as_tp(tp)
            if not isinstance(value, OffsetAndMetadata) or value.offset < 0:
                raise InvalidArgumentError(f"commit needs OffsetAndMetadata values, got {value!r}")
            stored[tp] = CommittedOffset(value.offset, value.metadata, value.leader_epoch, now)
        member_id, generation = (self._membership.identity() if self._membership is not None
                                 else ("", -1))
        try:
            self._coordinator().commit_offsets(
                group_id, stored, member_id=member_id, generation=generation
            )
        except (UnknownMemberIdError, IllegalGenerationError) as exc:
            raise CommitFailedError(
                f"commit to group {group_id!r} failed: {exc} (the group has rebalanced; the "
                "partitions may already belong to another member)"
            ) from exc

    def _maybe_auto_commit(self) -> None:
        if self._auto_commit_ms is None or self.group_id is None:
            return
        if self._membership is None and not self._fetcher.states:
            return
        now = self._clock.monotonic_ms()
        if now < self._next_auto_commit_ms:
            return
        self._next_auto_commit_ms = now + self._auto_commit_ms
        try:
            self._commit_positions(self._fetcher.positions())
        except CommitFailedError:
            pass  # a rebalance is under way; the next poll rejoins

    def _require_group(self) -> str:
        if self.group_id is None:
            raise IllegalStateError("committed offsets need a consumer created with a group_id")
        return self.group_id

    def _coordinator(self) -> GroupCoordinator:
        return self._access.group_coordinator

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Commit (with auto-commit), revoke, leave the group and release the assignment.

        Idempotent. A static member (``group_instance_id``) does not leave: restarted within
        its session timeout it gets its partitions back without a rebalance.
        """
        if self._closed:
            return
        try:
            if self._membership is not None:
                membership, self._membership = self._membership, None
                self._revoke_partitions(set(self._fetcher.states), lost=False)
                membership.close(leave=True)
            elif self._auto_commit_ms is not None and self.group_id is not None:
                try:
                    self._commit_positions(self._fetcher.positions())
                except LogstoreError:
                    pass
            if self._commit_pool is not None:
                self._commit_pool.shutdown(wait=True)
        finally:
            self._closed = True
            self._fetcher.remove(list(self._fetcher.states))
            self._access.notifier.notify()  # wake a poll blocked in another thread

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise IllegalStateError("the consumer is closed")


def _as_tp(value: object) -> TopicPartition:
    if isinstance(value, TopicPartition):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        topic, partition = value
        if (
            isinstance(topic, str)
            and isinstance(partition, int)
            and not isinstance(partition, bool)
        ):
            return TopicPartition(topic, partition)
    raise InvalidArgumentError(f"expected a TopicPartition, got {value!r}")
