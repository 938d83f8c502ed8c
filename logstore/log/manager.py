"""The local partition logs of one data directory.

Layout::

    <data>/topics/<topic>/<partition>/     each partition (see ``partition_log``)
    <data>/doorbells/<topic>-<partition>   each partition's doorbell and log-end checkpoint
    <data>/deleted/<topic>~<topic id>/     a topic being deleted

**Laying out** a partition creates its directory and state file and, last, its doorbell; the
first open creates its first segment. A crash in between leaves a partition that the next use
lays out again (the doorbell is missing, so nothing was ever written there).

**Deleting** a topic renames its directory into ``deleted/`` (atomic: no reader ever sees half a
topic), then the caller deletes its metadata, then its doorbells and the renamed directory go.
A deletion that crashed half way is finished by the next :class:`~logstore.Log` to open (the
topic admin sees the topic id in ``deleted/``).

**What must exist.** A partition the metadata says exists, whose doorbell (with the same topic
id) records written offsets, but whose directory or state file is gone, is *offline*
(:class:`~logstore.errors.PartitionOfflineError` naming what is missing): laying it out afresh
would hand out its offsets a second time. A partition directory that belongs to another topic
id (the metadata store was lost or replaced, or an old copy was put back) is never deleted if
it holds records: :class:`~logstore.errors.InconsistentTopicIdError` names it, and the
operator moves it away or adopts it (``logstore repair``). An empty one is removed.

The manager knows directories and open :class:`PartitionLog` objects; it knows nothing about the
metadata store: callers pass the topic id and a config provider (and, for tiered storage, a
factory of each partition's remote view). Every open file counts against one
:class:`~logstore.log.handles.FileBudget`. Thread-safe.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from logstore.clock import Clock
from logstore.config import TopicConfig
from logstore.errors import (
    InconsistentTopicIdError,
    LogstoreError,
    PartitionOfflineError,
    StorageError,
    UnknownTopicOrPartitionError,
)
from logstore.log import doorbell
from logstore.log.doorbell import DOORBELLS_DIR, LogEndCheckpoint, doorbell_name
from logstore.log.handles import FileBudget, process_budget
from logstore.log.notify import AppendNotifier
from logstore.log.partition_log import PartitionLog
from logstore.log.partition_state import STATE_FILE, PartitionLock, PartitionState
from logstore.log.segment import Segment, segment_file_name, segment_files
from logstore.log.sqlite_file import fsync_dir, translate
from logstore.log.tiering import RemoteView

TOPICS_DIR = "topics"
DELETED_DIR = "deleted"
LOCKS_DIR = "locks"
_DELETED_SEPARATOR = "~"  # neither topic names nor topic ids contain it


def _deleted_name(topic: str, topic_id: str) -> str:
    return f"{topic}{_DELETED_SEPARATOR}{topic_id}"


@dataclass(frozen=True, slots=True)
class PendingDeletion:
    """A topic directory renamed aside by a deletion that may not have finished."""

    topic: str
    topic_id: str
    path: Path


class LogManager:
    """Opens, caches and removes the partition logs under a data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Clock,
        notifier: AppendNotifier,
        remote: Callable[[str, str, int], RemoteView] | None = None,
        budget: FileBudget | None = None,
        topic_exists: Callable[[str, str], bool] | None = None,
    ) -> None:
        """``topic_exists(topic, topic_id)`` asks the metadata store (fresh, not a cache)
        before a partition is laid out lazily."""
        self.data_dir = data_dir
        self.clock = clock
        self.notifier = notifier
        self.budget = budget or process_budget()
        self._remote = remote
        self._topic_exists = topic_exists
        self._topic_locks: dict[str, PartitionLock] = {}
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, int], tuple[str, PartitionLog]] = {}
        self._closed = False
        try:
            (data_dir / TOPICS_DIR).mkdir(parents=True, exist_ok=True)
            (data_dir / DOORBELLS_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            raise translate(exc, f"laying out {data_dir}") from exc

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / TOPICS_DIR / topic / str(partition)

    def doorbell_path(self, topic: str, partition: int) -> Path:
        return self.data_dir / DOORBELLS_DIR / doorbell_name(topic, partition)

    # --- laying out ------------------------------------------------------------------------------

    def create_partitions(self, topic: str, topic_id: str, partitions: Iterable[int]) -> None:
        """Lay out empty partition directories (idempotent). Raises InconsistentTopicIdError if
        a directory holds records of another topic id (nothing is deleted), and
        UnknownTopicOrPartitionError if the topic is deleted meanwhile."""
        with self._topic_lock(topic):
            self._refuse_if_deleting(topic, topic_id)
            for partition in partitions:
                self._lay_out_locked(topic, topic_id, partition, sync=False)
        try:
            fsync_dir(self.data_dir / DOORBELLS_DIR)
        except OSError as exc:
            raise translate(exc, f"laying out {self.data_dir / DOORBELLS_DIR}") from exc

    def _lay_out_locked(
        self, topic: str, topic_id: str, partition: int, *, sync: bool = True
    ) -> None:
        directory = self.partition_dir(topic, partition)
        self._remove_if_foreign_and_empty(topic, partition, topic_id)
        try:
            PartitionLog.create(directory, topic_id=topic_id, created_ms=self.clock.time_ms(),
                                doorbell_path=self.doorbell_path(topic, partition), sync=sync)
        except FileNotFoundError:
            raise UnknownTopicOrPartitionError(
                f"partition {topic}-{partition} was deleted while it was being created") from None
        except OSError as exc:
            raise translate(exc, f"laying out {directory}") from exc

    @contextmanager
    def _topic_lock(self, topic: str) -> Iterator[None]:
        """Orders laying out a topic's partitions against renaming the topic aside (deleting
        it), across threads and processes: a partition is never laid out again for a topic
        that is being deleted."""
        with self._lock:
            lock = self._topic_locks.get(topic)
            if lock is None:
                directory = self.data_dir / LOCKS_DIR / topic
                try:
                    directory.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise translate(exc, f"creating {directory}") from exc
                lock = self._topic_locks[topic] = PartitionLock(directory)
        with lock.hold():
            yield

    def _refuse_if_deleting(self, topic: str, topic_id: str) -> None:
        """Inside the topic lock: the topic (this incarnation) is being or was deleted if its
        directory was renamed aside, or if the metadata store no longer has it."""
        if (self.data_dir / DELETED_DIR / _deleted_name(topic, topic_id)).exists() or (
                self._topic_exists is not None and not self._topic_exists(topic, topic_id)):
            raise UnknownTopicOrPartitionError(f"topic {topic!r} is being deleted")

    # --- opening ---------------------------------------------------------------------------------

    def get(
        self, topic: str, partition: int, *, topic_id: str, config: Callable[[], TopicConfig]
    ) -> PartitionLog:
        """The open log of a partition that the metadata says exists, laying it out if it never
        was (or a crash interrupted that). A cached log of an earlier topic with the same name
        is replaced. Raises PartitionOfflineError when its files are missing or damaged,
        InconsistentTopicIdError when its directory belongs to another topic id."""
        key = (topic, partition)
        with self._lock:
            if self._closed:
                raise StorageError("the log is closed")
            entry = self._logs.get(key)
            if entry is not None and entry[0] == topic_id:
                return entry[1]
        stale = entry[1] if entry is not None else None
        log = self._open(topic, partition, topic_id, config)
        if self._remote is not None:
            log.attach_remote(self._remote(topic, topic_id, partition))
        with self._lock:
            current = self._logs.get(key)
            if self._closed or (current is not None and current[0] == topic_id):
                log.close()
                if self._closed:
                    raise StorageError("the log is closed")
                return current[1]  # type: ignore[index]
            self._logs[key] = (topic_id, log)
        if stale is not None:
            stale.close(deleted=True)  # an earlier incarnation of the topic
        return log

    def _open(
        self, topic: str, partition: int, topic_id: str, config: Callable[[], TopicConfig]
    ) -> PartitionLog:
        directory = self.partition_dir(topic, partition)
        bell = self.doorbell_path(topic, partition)
        if not (directory / STATE_FILE).exists() or _owner(directory) not in (None, topic_id):
            # The rare path (never laid out, a crash during the layout, a deletion racing with
            # this open, or damage): decided under the topic lock.
            with self._topic_lock(topic):
                self._refuse_if_deleting(topic, topic_id)
                self._remove_if_foreign_and_empty(topic, partition, topic_id)
                if not (directory / STATE_FILE).exists():
                    self._check_not_lost(topic, partition, topic_id, directory, bell)
                    self._lay_out_locked(topic, topic_id, partition)
        try:
            log = PartitionLog(
                directory, topic=topic, partition=partition, config=config, clock=self.clock,
                notifier=self.notifier, doorbell_path=bell, budget=self.budget,
            )
        except FileNotFoundError:
            raise UnknownTopicOrPartitionError(
                f"partition {topic}-{partition} was deleted") from None
        except OSError as exc:
            raise translate(exc, f"opening partition {topic}-{partition}") from exc
        if doorbell.read_checkpoint(bell) is None:
            # Laid out by an earlier version (its doorbell lived in the partition directory).
            try:
                doorbell.create(bell, LogEndCheckpoint(topic_id, log.log_end_offset(), 0))
            except LogstoreError:
                log.close()
                raise
        return log

    def _check_not_lost(
        self, topic: str, partition: int, topic_id: str, directory: Path, bell: Path
    ) -> None:
        """The partition has no state file: fine if it was never laid out (or never written);
        offline if it was written (its doorbell says so) or segment files with records are
        left (empty ones are what an interrupted layout leaves)."""
        if _holds_records(directory):
            raise PartitionOfflineError(
                f"partition {topic}-{partition} is offline: {directory / STATE_FILE} is missing "
                "but segment files are there (see 'logstore check'; 'logstore repair --adopt' "
                "rebuilds it from them)", path=str(directory / STATE_FILE))
        recorded = doorbell.read_checkpoint(bell)
        if recorded is not None and recorded.topic_id == topic_id and recorded.log_end_offset > 0:
            missing = directory if not directory.exists() else directory / STATE_FILE
            raise PartitionOfflineError(
                f"partition {topic}-{partition} is offline: {missing} is missing, and it held "
                f"offsets up to {recorded.log_end_offset - 1} (its doorbell {bell} says so); "
                "new records would reuse them (see 'logstore check', 'logstore repair')",
                path=str(missing))

    def _remove_if_foreign_and_empty(self, topic: str, partition: int, topic_id: str) -> None:
        """A directory left by another incarnation of the topic: removed if it holds no
        records, refused (InconsistentTopicIdError) if it does."""
        directory = self.partition_dir(topic, partition)
        owner = _owner(directory)
        if owner is None or owner == topic_id:
            return
        if _holds_records(directory):
            raise InconsistentTopicIdError(
                f"{directory} holds records of topic {topic!r} with topic id {owner}, not "
                f"{topic_id}: the metadata store does not know that topic (was it lost or "
                "replaced?). logstore does not delete records: move the directory away, or "
                "adopt it with 'logstore repair --adopt'")
        shutil.rmtree(directory, ignore_errors=True)

    def open_logs(self) -> list[PartitionLog]:
        with self._lock:
            return [log for _, log in self._logs.values()]

    # --- deleting --------------------------------------------------------------------------------

    def close_topic(self, topic: str) -> None:
        """Close this process's open logs of ``topic`` (being deleted: later uses of them
        raise UnknownTopicOrPartitionError)."""
        with self._lock:
            keys = [k for k in self._logs if k[0] == topic]
            logs = [self._logs.pop(k)[1] for k in keys]
        for log in logs:
            log.close(deleted=True)
            self.notifier.unwatch(log.doorbell_path)

    def close_partition(self, topic: str, partition: int) -> None:
        """Close this process's open log of one partition (before a repair changes its
        files)."""
        with self._lock:
            entry = self._logs.pop((topic, partition), None)
        if entry is not None:
            entry[1].close()
            self.notifier.unwatch(entry[1].doorbell_path)

    def begin_delete(self, topic: str, topic_id: str) -> None:
        """First step of deleting a topic: close it here and rename its directory aside."""
        self.close_topic(topic)
        source = self.data_dir / TOPICS_DIR / topic
        graveyard = self.data_dir / DELETED_DIR
        with self._topic_lock(topic):
            try:
                graveyard.mkdir(exist_ok=True)
                if source.exists() and _topic_owner(source) in (None, topic_id):
                    source.rename(graveyard / _deleted_name(topic, topic_id))
                else:  # nothing here, or a newer incarnation's: only mark this one deleted
                    (graveyard / _deleted_name(topic, topic_id)).mkdir(exist_ok=True)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise translate(exc, f"removing {source}") from exc

    def finish_delete(self, topic: str, topic_id: str) -> None:
        """Last step: remove the renamed directory and the topic's doorbells."""
        target = self.data_dir / DELETED_DIR / _deleted_name(topic, topic_id)
        prefix = f"{topic}-"
        try:
            names = os.listdir(self.data_dir / DOORBELLS_DIR)
        except FileNotFoundError:
            names = []
        for name in names:
            if not name.startswith(prefix) or not name[len(prefix):].isdigit():
                continue
            path = self.data_dir / DOORBELLS_DIR / name
            recorded = doorbell.read_checkpoint(path)
            if recorded is None or recorded.topic_id == topic_id:
                path.unlink(missing_ok=True)
        # Last: while the marker exists, nobody lays this incarnation out again (the metadata
        # row is gone by now, which says the same to anyone who asks the store).
        shutil.rmtree(target, ignore_errors=True)

    def pending_deletions(self) -> list[PendingDeletion]:
        """Topic directories renamed aside by deletions (maybe interrupted by a crash)."""
        graveyard = self.data_dir / DELETED_DIR
        try:
            names = sorted(os.listdir(graveyard))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            topic, separator, topic_id = name.rpartition(_DELETED_SEPARATOR)
            if separator:
                found.append(PendingDeletion(topic, topic_id, graveyard / name))
            else:  # left by an earlier version: its metadata was always deleted first
                shutil.rmtree(graveyard / name, ignore_errors=True)
        return found

    def close(self) -> None:
        with self._lock:
            self._closed = True
            logs = [log for _, log in self._logs.values()]
            self._logs.clear()
        for log in logs:
            log.close()


def _owner(directory: Path) -> str | None:
    """The topic id a partition directory belongs to (None: no state file)."""
    if not (directory / STATE_FILE).exists():
        return None
    try:
        state = PartitionState.open(directory)
    except FileNotFoundError:
        return None
    try:
        return state.get().topic_id
    finally:
        state.close()


def _topic_owner(topic_dir: Path) -> str | None:
    """The topic id of the first partition directory found under a topic directory."""
    try:
        names = sorted(os.listdir(topic_dir))
    except FileNotFoundError:
        return None
    for name in names:
        owner = _owner(topic_dir / name)
        if owner is not None:
            return owner
    return None


def _holds_records(directory: Path) -> bool:
    """True if any segment file in ``directory`` holds a batch (or cannot be read: then it
    might, and nothing is deleted)."""
    for base in segment_files(directory, missing_ok=True):
        try:
            segment = Segment.open(directory / segment_file_name(base))
        except FileNotFoundError:
            continue
        except StorageError:
            return True
        try:
            if not segment.state().is_empty:
                return True
        except StorageError:
            return True
        finally:
            segment.close()
    return False
