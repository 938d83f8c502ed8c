"""Topic administration: create, list, describe, alter configs, add partitions, delete.

The metadata store is the source of truth for which topics exist; partition directories follow
it. Creating writes the metadata row first and then lays out directories (a crash in between is
repaired on first use, since partition logs are laid out lazily); deleting removes the row first
and then the directory (a crash in between leaves a directory that a re-created topic moves
aside, recognising it by its topic id).

Thread-safe.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import replace

from logstore.backends.metadata import MetadataStore, TopicRecord
from logstore.clock import Clock
from logstore.config import (
    TOPIC_CONFIG_KEYS,
    TopicConfig,
    check_combination,
    effective_config,
    validate_overrides,
)
from logstore.errors import (
    InconsistentTopicIdError,
    InvalidArgumentError,
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidTopicError,
    LogstoreError,
    PartitionOfflineError,
    StaleVersionError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logstore.log.cleanable import sections
from logstore.log.manager import LogManager
from logstore.log.partition_log import PartitionLog
from logstore.topic_cache import CachedTopic, TopicCache
from logstore.types import PartitionDescription, TopicDescription

_log = logging.getLogger("logstore")

_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_CAS_ATTEMPTS = 20
MAX_PARTITIONS = 100_000


def validate_topic_name(name: object) -> str:
    """Kafka's rules: 1-249 characters of [a-zA-Z0-9._-], and not '.' or '..'."""
    if not isinstance(name, str):
        raise InvalidTopicError(f"topic name must be a string, got {type(name).__name__}")
    if name in (".", "..") or not _LEGAL_TOPIC.fullmatch(name):
        raise InvalidTopicError(
            f"illegal topic name {name!r}: use 1-249 characters of a-z, A-Z, 0-9, '.', '_', '-'"
            " (and not '.' or '..')"
        )
    return name


def _validate_partition_count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise InvalidPartitionsError(f"partition count must be an integer, got {count!r}")
    if not 1 <= count <= MAX_PARTITIONS:
        raise InvalidPartitionsError(
            f"partition count must be between 1 and {MAX_PARTITIONS}, got {count}"
        )
    return count


class TopicAdmin:
    """Topic operations over the metadata store, the topic cache and the local logs."""

    def __init__(
        self, store: MetadataStore, cache: TopicCache, manager: LogManager, clock: Clock
    ) -> None:
        self._store = store
        self._cache = cache
        self._manager = manager
        self._clock = clock

    def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, object] | None = None,
        *, validate_only: bool = False,
    ) -> TopicDescription:
        """Create a topic; ``validate_only``: check everything, create nothing, and return the
        topic as it would be (its ``topic_id`` empty)."""
        validate_topic_name(name)
        _validate_partition_count(partitions)
        overrides = validate_overrides(config or {})
        check_combination(overrides)
        # A new topic is empty: described without opening its (maybe thousands of) partitions.
        empty = tuple(
            PartitionDescription(partition=p, log_start_offset=0, log_end_offset=0,
                                 high_watermark=0, size_bytes=0, segment_count=1,
                                 last_stable_offset=0)
            for p in range(partitions))
        if validate_only:
            if self._store.get_topic(name) is not None:
                raise TopicAlreadyExistsError(f"topic {name!r} already exists")
            return self._description(
                TopicRecord(name=name, topic_id="", partition_count=partitions,
                            configs=overrides), empty)
        record = self._store.create_topic(
            name, partitions, overrides, created_ms=self._clock.time_ms()
        )
        try:
            self._manager.create_partitions(name, record.topic_id, range(partitions))
        except BaseException:
            # No half topic: the metadata row goes with whatever was laid out.
            self._undo_create(record)
            raise
        self._cache.put(record)
        return self._description(record, empty)

    def _undo_create(self, record: TopicRecord) -> None:
        try:
            self._manager.begin_delete(record.name, record.topic_id)
            self._store.delete_topic(record.name, expected_version=record.version)
            self._manager.finish_delete(record.name, record.topic_id)
        except LogstoreError as exc:
            _log.warning("could not undo the creation of topic %r: %s", record.name, exc)
        finally:
            self._cache.remove(record.name)

    def list_topics(self) -> list[str]:
        self._cache.refresh()  # one small query; a listing should show other processes' topics
        return [t.name for t in self._cache.all()]

    def describe_topic(self, name: str) -> TopicDescription:
        validate_topic_name(name)
        topic = self._fresh(name)
        partitions = tuple(
            self._describe_partition(name, p) for p in range(topic.partition_count)
        )
        if topic.config.compacts:
            partitions = self._with_cleaner_state(topic, partitions)
        return self._description(topic.record, partitions)

    def _describe_partition(self, topic: str, partition: int) -> PartitionDescription:
        """The partition's description; an offline partition is described as such (with the
        reason) rather than failing the whole topic."""
        try:
            return self.partition_log(topic, partition).describe()
        except (PartitionOfflineError, InconsistentTopicIdError) as exc:
            return PartitionDescription(
                partition=partition, log_start_offset=-1, log_end_offset=-1,
                high_watermark=-1, size_bytes=0, segment_count=0, offline_reason=str(exc))

    def _with_cleaner_state(
        self, topic: CachedTopic, partitions: tuple[PartitionDescription, ...]
    ) -> tuple[PartitionDescription, ...]:
        """``partitions`` with the log cleaner's view added: the dirty ratio (computed as the
        cleaner computes it, from the partition's layout now) and the cleaner checkpoint."""
        checkpoints = self._store.cleaner_checkpoints(topic.topic_id)
        now_ms = self._clock.time_ms()
        described = []
        for description in partitions:
            if description.offline_reason is not None:
                described.append(description)
                continue
            found = checkpoints.get(description.partition)
            _, section = sections(
                self.partition_log(topic.name, description.partition), topic.config,
                found.offset if found is not None else 0, now_ms=now_ms)
            described.append(replace(
                description, dirty_ratio=section.dirty_ratio,
                cleaner_checkpoint=found.offset if found is not None else None,
            ))
        return tuple(described)

    def alter_topic_config(
        self, name: str, changes: Mapping[str, object | None], *, validate_only: bool = False
    ) -> TopicDescription:
        """Set the given config keys; a value of None removes the override (back to default)."""
        validate_topic_name(name)
        to_set = validate_overrides({k: v for k, v in changes.items() if v is not None})
        to_delete = [k for k, v in changes.items() if v is None]
        unknown = [k for k in to_delete if k not in TOPIC_CONFIG_KEYS]
        if unknown:
            raise InvalidConfigurationError(f"unknown topic config {unknown[0]!r}")

        def edit(current: Mapping[str, str]) -> dict[str, object]:
            merged: dict[str, object] = {
                k: v for k, v in current.items() if k not in to_delete}
            merged.update(to_set)
            return merged

        return self.update_topic_config(name, edit, validate_only=validate_only)

    def update_topic_config(
        self, name: str, edit: Callable[[Mapping[str, str]], Mapping[str, object]], *,
        validate_only: bool = False,
    ) -> TopicDescription:
        """Replace the topic's config overrides with ``edit(current overrides)``, validated as
        a whole, by compare-and-swap: ``edit`` is called again when another writer changed the
        topic meanwhile, so it must have no side effects. ``validate_only``: check, write
        nothing, and return the topic as it would be (without partition descriptions)."""
        validate_topic_name(name)

        def overrides(topic: CachedTopic) -> dict[str, str]:
            merged = validate_overrides(edit(dict(topic.record.configs)))
            check_combination(merged)
            if (topic.config.remote_storage_enable
                    and not TopicConfig.from_overrides(merged).remote_storage_enable):
                # As in Kafka before KIP-950: with tiering off, nothing would read, expire or
                # clean the remote segments any more.
                raise InvalidConfigurationError(
                    f"remote.storage.enable cannot be turned off for topic {name!r} once on")
            return merged

        if validate_only:
            topic = self._fresh(name)
            return self._description(replace(topic.record, configs=overrides(topic)), ())
        self._update(name, lambda topic: {"configs": overrides(topic)})
        return self.describe_topic(name)

    def create_partitions(
        self, name: str, total: int, *, validate_only: bool = False
    ) -> TopicDescription:
        """Grow the topic to ``total`` partitions (partitions can never be removed).
        ``validate_only``: check, change nothing, and return the topic as it would be (without
        partition descriptions)."""
        validate_topic_name(name)
        _validate_partition_count(total)

        def change(topic: CachedTopic) -> dict[str, object]:
            if total <= topic.partition_count:
                raise InvalidPartitionsError(
                    f"topic {name!r} has {topic.partition_count} partitions; the count can only "
                    f"grow, and {total} is not more"
                )
            return {"partition_count": total}

        if validate_only:
            topic = self._fresh(name)
            change(topic)
            return self._description(replace(topic.record, partition_count=total), ())
        before, record = self._update(name, change)
        self._manager.create_partitions(
            name, record.topic_id, range(before.partition_count, total)
        )
        return self.describe_topic(name)

    def _update(
        self, name: str, change: Callable[[CachedTopic], dict[str, object]]
    ) -> tuple[CachedTopic, TopicRecord]:
        """Read the topic, compute the change, write it with a CAS (retrying when it lost a
        race); return the topic as it was and as it is now."""
        for _ in range(_CAS_ATTEMPTS):
            topic = self._fresh(name)
            try:
                record = self._store.update_topic(
                    name, expected_version=topic.record.version, **change(topic)  # type: ignore[arg-type]
                )
            except StaleVersionError:
                continue
            self._cache.put(record)
            return topic, record
        raise StaleVersionError(f"topic {name!r} kept changing; not updated")

    def delete_topic(self, name: str) -> None:
        """Rename the topic's directory aside, delete its metadata, then its files (see
        ``log.manager``: a crash in between is finished by :meth:`finish_deletions`)."""
        validate_topic_name(name)
        record = self._store.get_topic(name)
        if record is None:
            self._cache.remove(name)
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        self._manager.begin_delete(name, record.topic_id)
        try:
            self._store.delete_topic(name, expected_version=record.version)
        except StaleVersionError:
            # Altered meanwhile (same incarnation): delete it as it is now.
            current = self._store.get_topic(name)
            if current is None or current.topic_id != record.topic_id:
                raise
            self._store.delete_topic(name, expected_version=current.version)
        self._cache.remove(name)
        self._manager.finish_delete(name, record.topic_id)

    def finish_deletions(self) -> None:
        """Finish topic deletions that a crash interrupted after renaming the directory."""
        for pending in self._manager.pending_deletions():
            record = self._store.get_topic(pending.topic)
            if record is not None and record.topic_id == pending.topic_id:
                try:
                    self._store.delete_topic(pending.topic, expected_version=record.version)
                except (StaleVersionError, UnknownTopicOrPartitionError):
                    continue  # changed meanwhile: the next open looks again
                self._cache.remove(pending.topic)
            self._manager.finish_delete(pending.topic, pending.topic_id)

    def partition_log(self, topic: str, partition: int) -> PartitionLog:
        """The open log of an existing partition. Raises UnknownTopicOrPartitionError."""
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise InvalidArgumentError(f"partition must be an integer, got {partition!r}")
        cached = self._cache.require(topic, partition)
        return self._manager.get(
            topic, partition, topic_id=cached.topic_id,
            config=lambda: self._config_of(topic, cached),
        )

    def _config_of(self, topic: str, fallback: CachedTopic) -> TopicConfig:
        current = self._cache.get(topic)
        return (current or fallback).config

    def _fresh(self, name: str) -> CachedTopic:
        record = self._store.get_topic(name)
        if record is None:
            self._cache.remove(name)
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        return self._cache.put(record)

    @staticmethod
    def _description(
        record: TopicRecord, partitions: tuple[PartitionDescription, ...]
    ) -> TopicDescription:
        return TopicDescription(
            name=record.name,
            topic_id=record.topic_id,
            partition_count=record.partition_count,
            config=effective_config(record.configs),
            partitions=partitions,
            created_ms=record.created_ms,
            overrides=dict(record.configs),
        )
