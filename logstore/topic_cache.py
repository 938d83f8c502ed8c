"""A per-process cache of topic metadata, so hot paths never query the metadata store.

Lookups are served from memory. At most every ``max_age_ms`` a lookup checks the store's change
counter (one tiny query) and reloads every topic when it moved; a miss (unknown topic, or a
partition beyond the cached count) forces that check at once, so a topic created by another
process is found on first use. Changes made through this process are applied immediately.

Thread-safe.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from logstore.backends.metadata import MetadataStore, TopicRecord
from logstore.config import TopicConfig
from logstore.errors import UnknownTopicOrPartitionError


@dataclass(frozen=True, slots=True)
class CachedTopic:
    """A topic record with its parsed configuration."""

    record: TopicRecord
    config: TopicConfig

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def topic_id(self) -> str:
        return self.record.topic_id

    @property
    def partition_count(self) -> int:
        return self.record.partition_count


class TopicCache:
    """Topic metadata served from memory, refreshed from the store's change counter."""

    def __init__(self, store: MetadataStore, *, max_age_ms: int = 1000) -> None:
        self._store = store
        self._max_age_ms = max_age_ms
        self._lock = threading.Lock()
        self._topics: dict[str, CachedTopic] = {}
        self._counter = -1
        self._checked_at = float("-inf")

    def get(self, name: str) -> CachedTopic | None:
        """The topic, or None if it does not exist (checked against the store on a miss)."""
        topic = self._lookup(name, force=False)
        if topic is None:
            topic = self._lookup(name, force=True)
        return topic

    def require(self, name: str, partition: int | None = None) -> CachedTopic:
        """The topic; raise UnknownTopicOrPartitionError if it or ``partition`` is unknown."""
        topic = self.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        if partition is not None and not 0 <= partition < topic.partition_count:
            topic = self._lookup(name, force=True) or topic
            if not 0 <= partition < topic.partition_count:
                raise UnknownTopicOrPartitionError(
                    f"topic {name!r} has {topic.partition_count} partitions; "
                    f"partition {partition} does not exist"
                )
        return topic

    def all(self) -> list[CachedTopic]:
        """Every topic, sorted by name (refreshed first if stale)."""
        self._refresh_if_stale(force=False)
        with self._lock:
            return [self._topics[n] for n in sorted(self._topics)]

    def put(self, record: TopicRecord) -> CachedTopic:
        """Apply a change made by this process."""
        cached = CachedTopic(record, TopicConfig.from_overrides(record.configs))
        with self._lock:
            self._topics[record.name] = cached
        return cached

    def remove(self, name: str) -> None:
        with self._lock:
            self._topics.pop(name, None)

    def refresh(self) -> None:
        """Reload now."""
        self._refresh_if_stale(force=True)

    def _lookup(self, name: str, *, force: bool) -> CachedTopic | None:
        self._refresh_if_stale(force=force)
        with self._lock:
            return self._topics.get(name)

    def _refresh_if_stale(self, *, force: bool) -> None:
        # Real time, not the injectable clock: freshness of a cache is not a semantic of the log.
        now = time.monotonic() * 1000.0
        with self._lock:
            if not force and now - self._checked_at < self._max_age_ms:
                return
            counter = self._store.change_counter()
            self._checked_at = now
            if counter == self._counter:
                return
            records = self._store.list_topics()
            self._topics = {
                r.name: CachedTopic(r, TopicConfig.from_overrides(r.configs)) for r in records
            }
            self._counter = counter
