"""The local partition logs of one data directory.

``<data>/topics/<topic>/<partition>/`` holds each partition (see ``partition_log``). A deleted
topic's directory is first renamed to ``<data>/deleted/<topic>-<topic id>`` (atomic, so no reader
ever sees half a topic) and then removed.

The manager knows directories and open :class:`PartitionLog` objects; it knows nothing about the
metadata store: callers pass the topic id and a config provider (and, for tiered storage, a
factory of each partition's remote view). Thread-safe.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from logstore.clock import Clock
from logstore.config import TopicConfig
from logstore.errors import StorageError, UnknownTopicOrPartitionError
from logstore.log.notify import AppendNotifier
from logstore.log.partition_log import PartitionLog
from logstore.log.partition_state import STATE_FILE, PartitionState
from logstore.log.tiering import RemoteView

TOPICS_DIR = "topics"
DELETED_DIR = "deleted"


class LogManager:
    """Opens, caches and removes the partition logs under a data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Clock,
        notifier: AppendNotifier,
        remote: Callable[[str, str, int], RemoteView] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self.notifier = notifier
        self._remote = remote
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, int], tuple[str, PartitionLog]] = {}
        self._closed = False
        (data_dir / TOPICS_DIR).mkdir(parents=True, exist_ok=True)

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / TOPICS_DIR / topic / str(partition)

    def create_partitions(self, topic: str, topic_id: str, partitions: range) -> None:
        """Lay out empty partition directories (idempotent)."""
        now = self.clock.time_ms()
        for partition in partitions:
            directory = self.partition_dir(topic, partition)
            self._move_aside_if_foreign(topic, directory, topic_id)
            PartitionLog.create(directory, topic_id=topic_id, created_ms=now)

    def get(
        self, topic: str, partition: int, *, topic_id: str, config: Callable[[], TopicConfig]
    ) -> PartitionLog:
        """The open log of a partition that the metadata says exists, laying it out if a crash
        left it missing. A cached log of an earlier topic with the same name is replaced."""
        key = (topic, partition)
        with self._lock:
            if self._closed:
                raise StorageError("the log is closed")
            entry = self._logs.get(key)
            if entry is not None and entry[0] == topic_id:
                return entry[1]
        stale = entry[1] if entry is not None else None
        directory = self.partition_dir(topic, partition)
        self._move_aside_if_foreign(topic, directory, topic_id)
        PartitionLog.create(directory, topic_id=topic_id, created_ms=self.clock.time_ms())
        try:
            log = PartitionLog(
                directory, topic=topic, partition=partition, config=config, clock=self.clock,
                notifier=self.notifier,
            )
        except FileNotFoundError:
            raise UnknownTopicOrPartitionError(
                f"partition {topic}-{partition} was deleted"
            ) from None
        if self._remote is not None:
            log.attach_remote(self._remote(topic, topic_id, partition))
        with self._lock:
            current = self._logs.get(key)
            if current is not None and current[0] == topic_id:
                log.close()
                return current[1]
            self._logs[key] = (topic_id, log)
        if stale is not None:
            stale.close()
        return log

    def open_logs(self) -> list[PartitionLog]:
        with self._lock:
            return [log for _, log in self._logs.values()]

    def close_topic(self, topic: str) -> None:
        """Close this process's open logs of ``topic``."""
        with self._lock:
            keys = [k for k in self._logs if k[0] == topic]
            logs = [self._logs.pop(k)[1] for k in keys]
        for log in logs:
            log.close()
            self.notifier.unwatch(log.doorbell_path)

    def delete_topic(self, topic: str, topic_id: str) -> None:
        """Remove the topic's directory: rename it aside atomically, then delete it."""
        self.close_topic(topic)
        source = self.data_dir / TOPICS_DIR / topic
        if not source.exists():
            return
        graveyard = self.data_dir / DELETED_DIR
        graveyard.mkdir(exist_ok=True)
        target = graveyard / f"{topic}-{topic_id}"
        try:
            source.rename(target)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot remove {source}: {exc}") from exc
        shutil.rmtree(target, ignore_errors=True)

    def purge_deleted(self) -> None:
        """Remove leftovers of deletions interrupted by a crash."""
        shutil.rmtree(self.data_dir / DELETED_DIR, ignore_errors=True)

    def _move_aside_if_foreign(self, topic: str, directory: Path, topic_id: str) -> None:
        """A directory left by an earlier topic of the same name (a crash during deletion) is
        moved out of the way rather than adopted."""
        if not (directory / STATE_FILE).exists():
            return
        try:
            state = PartitionState.open(directory)
        except FileNotFoundError:
            return
        try:
            owner = state.get().topic_id
        finally:
            state.close()
        if owner != topic_id:
            self.delete_topic(topic, owner)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            logs = [log for _, log in self._logs.values()]
            self._logs.clear()
        for log in logs:
            log.close()
