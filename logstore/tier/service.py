"""Tiered storage as one Log uses it: the object store, the remote caches, the tierer and its
background thread.

:class:`TieredStorage` is what :class:`~logstore.embedded.Log` holds when it was opened with an
object store; the Log's tiering methods are one-line delegations to it. The background thread
runs a tiering pass every ``tier_interval_ms`` and the orphan cleaner every hour, until the
Log closes.

Thread-safety: every method may be called from any thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from logstore.backends.metadata import MetadataStore
from logstore.backends.object_store import ObjectStore, open_object_store
from logstore.clock import Clock
from logstore.errors import IllegalStateError, InvalidArgumentError, LogstoreError
from logstore.tier.orphans import DEFAULT_GRACE_MS, OrphanReport, clean_orphans
from logstore.tier.remote_storage import RemotePartition, RemoteStorage
from logstore.tier.tierer import TierAccess, Tierer, TierReport

_log = logging.getLogger("logstore.tier")

#: How often the tiering thread also runs the orphan cleaner.
ORPHAN_CHECK_INTERVAL_S = 3600.0


class TieredStorage:
    """The remote side of one Log (see the module docstring)."""

    def __init__(
        self,
        storage: RemoteStorage,
        *,
        owns_object_store: bool,
        temp_dir: str | os.PathLike[str],
    ) -> None:
        self.storage = storage
        self._owns_object_store = owns_object_store
        self._temp_dir = Path(temp_dir)
        self._lock = threading.Lock()
        self._tierer: Tierer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def open(
        cls,
        url: str | None,
        store: ObjectStore | None,
        metadata: MetadataStore,
        *,
        clock: Clock,
        cache_bytes: int,
        temp_dir: str | os.PathLike[str],
    ) -> TieredStorage | None:
        """Open the store named by ``url`` (or take ``store``, which stays the caller's), or
        return None when neither is given. The store is checked (read-only) once: one that can
        never work fails here; a transient failure is only logged, since local appends and
        reads do not need the store."""
        if url is not None and store is not None:
            raise InvalidArgumentError("pass object_store_url or object_store, not both")
        if url is None and store is None:
            return None
        opened = open_object_store(url) if store is None else store
        try:
            opened.check(write=False)
        except LogstoreError as exc:
            if not exc.retriable:
                if store is None:
                    opened.close()
                raise
            _log.warning("object store %s is not answering yet: %s", opened.url, exc)
        storage = RemoteStorage(opened, metadata, clock=clock, cache_bytes=cache_bytes)
        return cls(storage, owns_object_store=store is None, temp_dir=temp_dir)

    @property
    def object_store(self) -> ObjectStore:
        return self.storage.object_store

    def partition(self, topic: str, topic_id: str, partition: int) -> RemotePartition:
        """The remote view a partition log reads through."""
        return self.storage.partition(topic, topic_id, partition)

    def tierer(self, access: TierAccess) -> Tierer:
        """The tierer of this Log (made on first use)."""
        with self._lock:
            if self._tierer is None:
                self._tierer = Tierer(access, self.storage, temp_dir=self._temp_dir)
            return self._tierer

    def tier(self, access: TierAccess, topic: str | None, *,
             progress: Callable[[int], None] | None, stop: threading.Event | None) -> TierReport:
        return self.tierer(access).run(topic, progress=progress, stop=stop)

    def clean_orphans(self, *, grace_ms: int | None, dry_run: bool) -> OrphanReport:
        return clean_orphans(self.storage, dry_run=dry_run,
                             grace_ms=DEFAULT_GRACE_MS if grace_ms is None else grace_ms)

    def start(self, access: TierAccess, interval_ms: int, closed: threading.Event) -> None:
        """Start the background thread: a tiering pass every ``interval_ms`` until ``closed``
        is set."""
        self._thread = threading.Thread(
            target=self._loop, args=(access, interval_ms / 1000.0, closed),
            name="logstore-tierer", daemon=True)
        self._thread.start()

    def _loop(self, access: TierAccess, interval_s: float, closed: threading.Event) -> None:
        next_orphan_check = time.monotonic() + ORPHAN_CHECK_INTERVAL_S
        while not closed.wait(interval_s):
            try:
                self.tierer(access).run(stop=closed)
                if time.monotonic() >= next_orphan_check:
                    next_orphan_check = time.monotonic() + ORPHAN_CHECK_INTERVAL_S
                    self.clean_orphans(grace_ms=None, dry_run=False)
            except IllegalStateError:
                return  # the Log closed under the pass
            except LogstoreError as exc:
                _log.warning("tiering pass failed: %s", exc)
            except Exception:  # noqa: BLE001 - keep the thread alive; the next pass may succeed
                _log.exception("tiering pass failed unexpectedly")

    def stop(self) -> None:
        """Wait for the background thread to finish its pass (its ``closed`` event must be
        set): a pass stops after the copy in progress."""
        if self._thread is not None:
            self._thread.join(timeout=60)

    def close(self) -> None:
        """Stop the thread, drop the caches and close the object store if this opened it."""
        self.stop()
        self.storage.close()
        if self._owns_object_store:
            self.storage.object_store.close()
