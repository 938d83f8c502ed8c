"""The orphan cleaner: remove what crashed tierers and deleters left in the object store.

Crashes leave three kinds of debris, never a readable hole (readers only use ``copy-finished``
segments, and total retention moves the log start offset before it deletes anything):

* a ``copy-started`` manifest row older than the grace period (a tierer died between
  recording the copy and finishing it, with or without the object uploaded): marked
  ``delete-started``, its object deleted, the row deleted;
* a ``delete-started`` row (a deleter died after marking it): the object and the row deleted;
* an object under ``topics/`` that no manifest row names and that is older than the grace
  period: objects of deleted topics (their rows went with the topic) and uploads that landed
  after a cleaner or a failing tierer had already removed their row: deleted;
* incomplete (multipart) uploads older than the grace period: aborted.

Debris counts once it is older than the grace period (default one hour), which must exceed
the longest upload: a ``copy-started`` row or an unlisted object younger than that may belong
to an upload in progress. Even if it does not, the manifest protects readers: a tierer whose
row was removed by the cleaner fails to finish its copy (compare-and-swap) and abandons it.

Thread-safety: a pass may run concurrently with tierers, readers and other passes; every step
is idempotent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from logstore.backends.manifest_records import COPY_STARTED, DELETE_STARTED, RemoteSegment
from logstore.backends.object_store import abort_stale_uploads
from logstore.errors import LogstoreError
from logstore.tier.keys import TOPICS_PREFIX, parse_object_key
from logstore.tier.remote_storage import RemoteStorage, delete_segment

_log = logging.getLogger("logstore.tier.orphans")

#: Default age below which possible debris is left alone (it may be an upload in progress).
DEFAULT_GRACE_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class OrphanReport:
    """What one pass found (and, unless ``dry_run``, removed)."""

    dry_run: bool
    stale_copies: tuple[str, ...] = field(default_factory=tuple)
    """Object keys of ``copy-started`` rows past the grace period."""
    unfinished_deletes: tuple[str, ...] = field(default_factory=tuple)
    """Object keys of ``delete-started`` rows."""
    orphan_objects: tuple[str, ...] = field(default_factory=tuple)
    """Objects no manifest row names."""
    incomplete_uploads: int = 0
    errors: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return (len(self.stale_copies) + len(self.unfinished_deletes) + len(self.orphan_objects)
                + self.incomplete_uploads)


def clean_orphans(
    storage: RemoteStorage, *, grace_ms: int = DEFAULT_GRACE_MS, dry_run: bool = False
) -> OrphanReport:
    """One pass of the orphan cleaner over the whole object store (see the module docstring)."""
    now = storage.clock.time_ms()
    store = storage.object_store
    errors: list[str] = []
    # Objects are listed before the manifest is read: an object uploaded after the listing is
    # not judged, and every object listed had its row inserted before its upload began.
    objects = [info for info in store.list(TOPICS_PREFIX) if parse_object_key(info.key)]
    rows = storage.metadata.remote_segments()
    known = {row.object_key for row in rows}
    stale = [r for r in rows if r.state == COPY_STARTED and now - r.updated_ms > grace_ms]
    deleting = [r for r in rows if r.state == DELETE_STARTED]
    orphans = [o.key for o in objects
               if o.key not in known and now - o.last_modified_ms > grace_ms]
    incomplete = 0
    if not dry_run:
        for row in stale + deleting:
            _delete(storage, row, errors)
        for key in orphans:
            try:
                store.delete(key)
            except LogstoreError as exc:
                errors.append(f"{key}: {exc}")
        try:
            incomplete = len(abort_stale_uploads(store, older_than_ms=grace_ms, now_ms=now,
                                                 prefix=TOPICS_PREFIX))
        except LogstoreError as exc:
            errors.append(f"incomplete uploads: {exc}")
    else:
        incomplete = sum(1 for u in store.list_incomplete_uploads(TOPICS_PREFIX)
                         if now - u.initiated_ms > grace_ms)
    return OrphanReport(
        dry_run=dry_run,
        stale_copies=tuple(r.object_key for r in stale),
        unfinished_deletes=tuple(r.object_key for r in deleting),
        orphan_objects=tuple(orphans),
        incomplete_uploads=incomplete,
        errors=tuple(errors),
    )


def _delete(storage: RemoteStorage, row: RemoteSegment, errors: list[str]) -> None:
    try:
        delete_segment(storage, row)
    except LogstoreError as exc:
        errors.append(f"{row.object_key}: {exc}")
        _log.info("could not delete %s: %s", row.object_key, exc)
