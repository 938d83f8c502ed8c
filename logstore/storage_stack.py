"""What a :class:`~logstore.embedded.Log` stands on, opened together and closed in order: the
log directory (created if needed), the metadata store, the tiered storage (only with an object
store), the append notifier, the local partition logs (:class:`~logstore.log.manager.LogManager`),
the topic cache and the topic administration over them.

Opening finishes topic deletions a crashed process left half done; a step that fails closes
what the steps before it opened. Closing stops the tiering thread before the partition logs
its pass uses are closed, and the metadata store last.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from logstore.admin import TopicAdmin
from logstore.backends import open_metadata_store
from logstore.backends.metadata import MetadataStore
from logstore.clock import Clock
from logstore.errors import InvalidArgumentError, RemoteStorageError
from logstore.log.handles import FileBudget
from logstore.log.manager import LogManager
from logstore.log.notify import AppendNotifier
from logstore.topic_cache import TopicCache

if TYPE_CHECKING:
    from logstore.backends.object_store import ObjectStore
    from logstore.tier.service import TieredStorage


def default_metadata_url(path: str | os.PathLike[str]) -> str:
    """The metadata database of a log directory when no URL is given: SQLite in the directory."""
    return f"sqlite:///{Path(path).absolute() / 'metadata.db'}"


@dataclass(eq=False)
class StorageStack:
    """The opened pieces; see :meth:`open`."""

    path: Path
    metadata_url: str
    store: MetadataStore
    tiered: TieredStorage | None
    notifier: AppendNotifier
    manager: LogManager
    cache: TopicCache
    admin: TopicAdmin

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        metadata_url: str | None,
        clock: Clock,
        object_store_url: str | None,
        object_store: ObjectStore | None,
        remote_cache_bytes: int,
        max_open_files: int | None,
        metadata_max_age_ms: int,
    ) -> StorageStack:
        """Open the stack of log directory ``path`` (see :func:`logstore.embedded.open` for
        the options). Raises InvalidArgumentError for a bad path or ``max_open_files``, and
        what the metadata store or the object store raise."""
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise InvalidArgumentError(
                f"a log directory must be a non-empty path, got {path!r} (use '.' for the "
                "current directory)")
        if max_open_files is not None and (
                isinstance(max_open_files, bool) or not isinstance(max_open_files, int)
                or max_open_files < 1):
            raise InvalidArgumentError(
                f"max_open_files must be a positive int or None, got {max_open_files!r}")
        path = Path(path).absolute()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidArgumentError(f"cannot use {path} as a log directory: {exc}") from exc
        metadata_url = metadata_url or default_metadata_url(path)
        store = open_metadata_store(metadata_url)
        tiered: TieredStorage | None = None
        notifier: AppendNotifier | None = None
        manager: LogManager | None = None
        try:
            tiered = _open_tiered_storage(object_store_url, object_store, store, clock=clock,
                                          cache_bytes=remote_cache_bytes, temp_dir=path)
            notifier = AppendNotifier()

            def topic_exists(topic: str, topic_id: str) -> bool:
                """Whether this incarnation of ``topic`` is in the metadata store now (not
                cached)."""
                record = store.get_topic(topic)
                return record is not None and record.topic_id == topic_id

            manager = LogManager(
                path, clock=clock, notifier=notifier,
                remote=None if tiered is None else tiered.partition,
                budget=None if max_open_files is None else FileBudget(max_open_files),
                topic_exists=topic_exists)
            cache = TopicCache(store, max_age_ms=metadata_max_age_ms)
            admin = TopicAdmin(store, cache, manager, clock)
            admin.finish_deletions()
        except BaseException:
            _close_opened(store, tiered, notifier, manager)
            raise
        return cls(path=path, metadata_url=metadata_url, store=store, tiered=tiered,
                   notifier=notifier, manager=manager, cache=cache, admin=admin)

    def require_tiered(self) -> TieredStorage:
        """The tiered storage; RemoteStorageError if the log was opened without an object
        store."""
        if self.tiered is None:
            raise RemoteStorageError(
                "this log was opened without an object store (object_store_url / "
                "--object-store / LOGSTORE_OBJECT_STORE)")
        return self.tiered

    def close(self) -> None:
        """Stop the tiering thread (its ``closed`` event must be set), then close the partition
        logs, the notifier, the tiered storage and the metadata store."""
        if self.tiered is not None:
            self.tiered.stop()  # before the partition logs its pass uses are closed
        _close_opened(self.store, self.tiered, self.notifier, self.manager)


def _close_opened(
    store: MetadataStore, tiered: TieredStorage | None, notifier: AppendNotifier | None,
    manager: LogManager | None,
) -> None:
    if manager is not None:
        manager.close()
    if notifier is not None:
        notifier.close()
    if tiered is not None:
        tiered.close()
    store.close()


def _open_tiered_storage(
    url: str | None, store: ObjectStore | None, metadata: MetadataStore, *, clock: Clock,
    cache_bytes: int, temp_dir: Path,
) -> TieredStorage | None:
    """Tiered storage when an object store is given (imported only then)."""
    if url is None and store is None:
        return None
    from logstore.tier.service import TieredStorage

    return TieredStorage.open(url, store, metadata, clock=clock, cache_bytes=cache_bytes,
                              temp_dir=temp_dir)
