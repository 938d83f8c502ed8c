"""One local segment: :class:`Segment`, a connection to a segment file, for appends and reads.

The file format (name, schema, rows) is documented and defined in ``segment_format``. The
producer-state tables are read and written by ``segment_producers``, and work outside the append
and read paths (truncation, the cleaner's rewrites, checks, vacuum) is in ``segment_maintenance``:
both are plain functions on the connection, reached through the :class:`Segment` methods of the
same names. ``segment_format``'s names that callers use are re-exported here.

Creation is atomic (see ``sqlite_file``): every process sees either no segment or a complete one,
and two processes racing to create the same segment agree on one file. Every connection sets
``SQLITE_FCNTL_PERSIST_WAL`` (see ``sqlite_file.set_persist_wal``).

Thread-safety: a ``Segment`` wraps one connection; callers serialize use of it (the partition log
holds a lock per connection). Several processes may open the same segment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import apsw

from logstore.errors import CorruptFileError, StorageError
from logstore.log import segment_maintenance, segment_producers
from logstore.log.handles import SQLITE_CONNECTION_FILES, FileBudget
from logstore.log.producer_state import AbortedTxn, ProducerEntry
from logstore.log.segment_format import (
    APPLICATION_ID,
    FORMAT_VERSION,
    SUFFIX,
    UPGRADES,
    BatchRow,
    SegmentState,
    initialize,
    parse_segment_file_name,
    read_state,
    segment_file_name,
    segment_files,
)
from logstore.log.segment_format import INSERT_BATCH as _INSERT_BATCH
from logstore.log.segment_format import batch_params as _batch_params
from logstore.log.sqlite_file import (
    BUSY_TIMEOUT_MS,
    create_atomically,
    open_connection,
    set_persist_wal,
    translate,
)
from logstore.records.header import CONTROL_MASK

__all__ = [
    "APPLICATION_ID",
    "FORMAT_VERSION",
    "SUFFIX",
    "BatchRow",
    "Segment",
    "SegmentState",
    "parse_segment_file_name",
    "segment_file_name",
    "segment_files",
]


class Segment:
    """A connection to one segment database.

    Writes happen between :meth:`begin_write` and commit/rollback (the context manager
    :meth:`write_transaction` does both); reads use :meth:`read_transaction` for a consistent
    snapshot. Not thread-safe by itself: hold :attr:`lock` around use.
    """

    def __init__(self, path: Path, base_offset: int, conn: apsw.Connection) -> None:
        self.path = path
        self.base_offset = base_offset
        self.lock = threading.Lock()
        self._conn = conn
        self._synchronous: str | None = None
        self._closed = False
        self._budget: FileBudget | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(
        cls, directory: Path, base_offset: int, *, created_ms: int,
        producers: Sequence[ProducerEntry] = (), sync_dir: bool = True,
    ) -> Path:
        """Create the segment file for ``base_offset`` in ``directory`` unless it exists
        (atomic and idempotent across processes: see ``sqlite_file``), starting with the given
        producer state (the predecessor's final state). ``sync_dir=False``: the caller fsyncs
        the directory."""
        final = directory / segment_file_name(base_offset)
        create_atomically(
            final, lambda conn: initialize(conn, base_offset, created_ms, producers),
            sync_dir=sync_dir,
        )
        return final

    @classmethod
    def open(cls, path: Path, *, budget: FileBudget | None = None) -> Segment:
        """Open an existing segment (never creates one). Raises FileNotFoundError if missing.

        With a ``budget`` the connection counts against it, and the budget may close it while
        it is idle (its ``lock`` not held): users check :attr:`closed` after taking the lock.
        """
        base_offset = parse_segment_file_name(path.name)
        if base_offset is None:
            raise StorageError(f"{path} is not a segment file name")
        conn = open_connection(path, what="segment")
        try:
            conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            set_persist_wal(conn)
            # Closing must be cheap (the file budget closes idle connections all the time):
            # no checkpoint (and fsync) on close. The active segment's writer checkpoints as it
            # goes (wal_autocheckpoint) and a segment is checkpointed when it is sealed.
            conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
            app_id = conn.execute("PRAGMA application_id").get
            version = conn.execute("PRAGMA user_version").get
        except apsw.Error as exc:
            error = translate(exc, f"opening segment {path}")  # before closing: EMFILE shows
            conn.close()
            if not path.exists():
                # Unlinked by another process (retention, a merge) between the connect and the
                # first read: SQLite then fails to fstat it (SQLITE_IOERR_FSTAT). Callers treat
                # a vanished segment as FileNotFoundError and look again.
                raise FileNotFoundError(path) from exc
            raise error from exc
        if app_id == APPLICATION_ID and version in UPGRADES:
            try:
                version = _upgrade(conn)
            except apsw.Error as exc:
                conn.close()
                raise translate(exc, f"upgrading segment {path} to format "
                                     f"{FORMAT_VERSION}") from exc
        if app_id != APPLICATION_ID or version != FORMAT_VERSION:
            conn.close()
            raise CorruptFileError(
                f"{path} is not a logstore segment of format {FORMAT_VERSION} "
                f"(application_id={app_id:#x}, user_version={version})"
            )
        segment = cls(path, base_offset, conn)
        if budget is not None:
            segment._budget = budget
            budget.opened(segment, SQLITE_CONNECTION_FILES)
        return segment

    def close(self) -> None:
        """Close the connection. Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._conn.close()
            except apsw.Error:
                pass
            if self._budget is not None:
                self._budget.closed(self)

    def try_close_idle(self) -> bool:
        """Close the connection unless a thread holds :attr:`lock` (the file budget's
        eviction); True if it is closed now."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            self.close()
        finally:
            self.lock.release()
        return True

    def touch(self) -> None:
        """Tell the file budget this connection was just used (LRU order)."""
        if self._budget is not None:
            self._budget.used(self)

    @property
    def closed(self) -> bool:
        return self._closed

    # --- transactions ------------------------------------------------------------------------

    def set_durability(self, *, fsync: bool) -> None:
        """FULL fsyncs the WAL on every commit (survives power loss); NORMAL survives crashes."""
        wanted = "FULL" if fsync else "NORMAL"
        if wanted != self._synchronous:
            self._conn.execute(f"PRAGMA synchronous = {wanted}")
            self._synchronous = wanted

    @contextmanager
    def write_transaction(self) -> Iterator[SegmentState]:
        """``BEGIN IMMEDIATE`` (waits for other writers, in any process), yield the current state,
        commit on normal exit and roll back on an exception.
        """
        state = self.begin_write()
        try:
            yield state
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def begin_write(self) -> SegmentState:
        """``BEGIN IMMEDIATE`` and return the current state; end with :meth:`commit` or
        :meth:`rollback` (for writers that decide late whether to commit, like the cleaner)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            return read_state(self._conn, self.path)
        except apsw.Error as exc:
            self._rollback_quietly()
            raise translate(exc, f"writing segment {self.path}") from exc

    def commit(self) -> None:
        """Commit the open write transaction (rolled back if the commit fails)."""
        try:
            self._conn.execute("COMMIT")
        except apsw.Error as exc:
            self._rollback_quietly()
            raise translate(exc, f"writing segment {self.path}") from exc

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        self._rollback_quietly()

    @contextmanager
    def read_transaction(self) -> Iterator[SegmentState]:
        """A read snapshot: everything read inside sees one committed state."""
        try:
            self._conn.execute("BEGIN")
            state = read_state(self._conn, self.path)
        except apsw.Error as exc:
            self._rollback_quietly()
            raise translate(exc, f"reading segment {self.path}") from exc
        try:
            yield state
        finally:
            self._rollback_quietly()

    def _rollback_quietly(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except apsw.Error:
            pass

    def state(self) -> SegmentState:
        """The summary row (its own read transaction)."""
        with self.read_transaction() as state:
            return state

    # --- writes (inside write_transaction) ----------------------------------------------------

    def insert(self, rows: Sequence[BatchRow]) -> None:
        """Insert batches and update the summary row. Offsets must follow the current end."""
        if not rows:
            return
        try:
            self._conn.executemany(_INSERT_BATCH, [_batch_params(r) for r in rows])
            self._conn.execute(
                "UPDATE segment SET size_bytes = size_bytes + ?, "
                "max_timestamp = max(max_timestamp, ?), last_offset = ? WHERE id = 0",
                (sum(len(r.data) for r in rows), max(r.max_timestamp for r in rows),
                 rows[-1].last_offset),
            )
        except apsw.Error as exc:
            raise translate(exc, f"appending to segment {self.path}") from exc

    def seal(self, next_offset: int) -> None:
        """Mark the segment sealed; appends go to the segment starting at ``next_offset``.

        ``next_offset`` -1 means "no successor yet: rescan the directory" (used by truncation).
        """
        try:
            self._conn.execute(
                "UPDATE segment SET sealed = 1, next_offset = ? WHERE id = 0", (next_offset,)
            )
        except apsw.Error as exc:
            raise translate(exc, f"sealing segment {self.path}") from exc

    def truncate_from(self, offset: int) -> None:
        """Delete every batch whose base offset is >= ``offset`` and recompute the summary.

        Used by truncation; the sealed flag is left alone (see :meth:`unseal`).
        """
        segment_maintenance.truncate_from(self._conn, self.path, self.base_offset, offset)

    def unseal(self) -> None:
        """Make the segment active again (the last step of a truncation)."""
        segment_maintenance.unseal(self._conn, self.path)

    # --- reads (inside a transaction) ----------------------------------------------------------

    def batch_containing(self, offset: int) -> tuple[int, int] | None:
        """``(base_offset, last_offset)`` of the batch holding ``offset``, or of the first batch
        after it when ``offset`` falls in a gap; None when nothing at or after it is here."""
        row = self._conn.execute(
            "SELECT base_offset, last_offset FROM batches WHERE base_offset <= ? "
            "ORDER BY base_offset DESC LIMIT 1",
            (offset,),
        ).fetchone()
        if row is not None and row[1] >= offset:
            return row[0], row[1]
        row = self._conn.execute(
            "SELECT base_offset, last_offset FROM batches WHERE base_offset > ? "
            "ORDER BY base_offset LIMIT 1",
            (offset,),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def read_from(
        self, offset: int, *, max_bytes: int, end_offset: int, first: bool
    ) -> tuple[list[bytes], int, int, bool]:
        """Batches from the one containing ``offset`` up to ``max_bytes`` in total.

        Only batches whose base offset is below ``end_offset`` are returned. When ``first`` is
        True the first batch is returned even if it alone exceeds ``max_bytes`` (as Kafka does,
        so a consumer can always make progress). Returns (batches, bytes, next offset to read,
        whether ``max_bytes`` stopped the read before the end of this segment).
        """
        start = self.batch_containing(offset)
        if start is None or start[0] >= end_offset:
            return [], 0, offset, False
        out: list[bytes] = []
        total = 0
        next_offset = offset
        for _base, last, data in self._conn.execute(
            "SELECT base_offset, last_offset, data FROM batches "
            "WHERE base_offset >= ? AND base_offset < ? ORDER BY base_offset",
            (start[0], end_offset),
        ):
            size = len(data)
            if total + size > max_bytes and not (first and not out):
                return out, total, next_offset, True
            out.append(data)
            total += size
            next_offset = last + 1
        return out, total, next_offset, False

    def first_batch_at_or_after_time(self, timestamp_ms: int) -> tuple[int, bytes] | None:
        """The first data batch (by offset) whose maxTimestamp is >= ``timestamp_ms``."""
        row = self._conn.execute(
            "SELECT base_offset, data FROM batches WHERE max_timestamp >= ? "
            f"AND (attributes & {CONTROL_MASK}) = 0 ORDER BY base_offset LIMIT 1",
            (timestamp_ms,),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def batch_summaries(self) -> list[tuple[int, int, int, int, int, int]]:
        """Every batch as (base_offset, last_offset, max_timestamp, record_count, producer_id,
        attributes), without the data."""
        return [tuple(r) for r in self._conn.execute(  # type: ignore[misc]
            "SELECT base_offset, last_offset, max_timestamp, record_count, producer_id, "
            "attributes FROM batches ORDER BY base_offset"
        )]

    # --- producer state and aborted transactions (inside a transaction) -----------------------

    def producers(self, producer_ids: Sequence[int] | None = None) -> dict[int, ProducerEntry]:
        """Producer states (of ``producer_ids`` only, if given)."""
        return segment_producers.producers(self._conn, self.path, producer_ids)

    def save_producers(
        self, entries: Sequence[ProducerEntry], *, replace_all: bool = False
    ) -> None:
        segment_producers.save_producers(self._conn, self.path, entries, replace_all=replace_all)

    def add_aborted(self, aborted: Sequence[AbortedTxn]) -> None:
        segment_producers.add_aborted(self._conn, self.path, aborted)

    def aborted_between(self, start: int, end: int) -> list[AbortedTxn]:
        """Aborted transactions whose data may lie in [start, end): marker at or after
        ``start`` and first offset before ``end``."""
        return segment_producers.aborted_between(self._conn, self.path, start, end)

    def first_unstable_offset(self) -> int | None:
        """The smallest first offset of an ongoing transaction, or None."""
        return segment_producers.first_unstable_offset(self._conn, self.path)

    def snapshot_producers(self) -> dict[int, ProducerEntry]:
        """The producer state as of this segment's base offset."""
        return segment_producers.snapshot_producers(self._conn, self.path)

    def producer_batches(self, below: int | None = None) -> list[tuple[int, bytes]]:
        """(base offset, data) of every idempotent/transactional batch, in offset order."""
        return segment_producers.producer_batches(self._conn, self.path, below)

    def delete_aborted_from(self, offset: int) -> None:
        """Forget aborted transactions whose marker is at or after ``offset`` (truncation)."""
        segment_producers.delete_aborted_from(self._conn, self.path, offset)

    def all_aborted(self) -> list[AbortedTxn]:
        """Every aborted-transaction entry of this segment."""
        return segment_producers.all_aborted(self._conn, self.path)

    def replace_aborted(self, aborted: Sequence[AbortedTxn]) -> None:
        """Make ``aborted`` the segment's whole aborted-transaction index."""
        segment_producers.replace_aborted(self._conn, self.path, aborted)

    # --- in-place rewriting by the log cleaner (inside a write transaction) -------------------

    def rows_after(self, offset: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (base offset, data) rows with base offset > ``offset``, in order."""
        return segment_maintenance.rows_after(self._conn, self.path, offset, limit)

    def iter_rows(self) -> Iterator[tuple[int, bytes]]:
        """Every (base offset, data) row in offset order, streamed (inside a transaction)."""
        return segment_maintenance.iter_rows(self._conn, self.path)

    def replace_row(self, base_offset: int, row: BatchRow | None) -> None:
        """Delete the batch at ``base_offset`` (``row`` None) or overwrite it with ``row``
        (same base offset). The summary row is not touched: see :meth:`set_summary`."""
        segment_maintenance.replace_row(self._conn, self.path, base_offset, row)

    def insert_rows(self, rows: Sequence[BatchRow]) -> None:
        """Insert batches without touching the summary row (see :meth:`set_summary`)."""
        segment_maintenance.insert_rows(self._conn, self.path, rows)

    def set_summary(self, *, next_offset: int) -> SegmentState:
        """Recompute size, max timestamp and last offset from the batches and set the
        successor's base offset (a sealed segment's range after a rewrite or merge)."""
        return segment_maintenance.set_summary(
            self._conn, self.path, self.base_offset, next_offset=next_offset)

    # --- checks and free pages ------------------------------------------------------------------

    def quick_check(self) -> str:
        """SQLite's ``PRAGMA quick_check``: "ok", or what is wrong (inside a transaction)."""
        return segment_maintenance.quick_check(self._conn, self.path)

    def iter_batch_rows(self) -> Iterator[tuple[int, int, int, bytes]]:
        """Every (base offset, last offset, record count, data) row in offset order, streamed
        (inside a transaction; apsw errors propagate, for the checker to report)."""
        return segment_maintenance.iter_batch_rows(self._conn)

    def free_fraction(self) -> float:
        """The share of the file's pages that are free (left by deleted or shrunk rows)."""
        return segment_maintenance.free_fraction(self._conn, self.path)

    def vacuum(self) -> None:
        """Rebuild the file without free pages (a transaction of its own: readers in other
        processes keep their snapshot; the file shrinks at the next full checkpoint)."""
        segment_maintenance.vacuum(self._conn, self.path)

    # --- WAL ------------------------------------------------------------------------------------

    def set_autocheckpoint(self, pages: int) -> None:
        """SQLite's ``wal_autocheckpoint`` for this connection (0 disables it, so a big
        rewrite's commit does not also fold the WAL in while a lock is held)."""
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")

    def checkpoint_in_background(self, request: Callable[[Path], None], *, pages: int) -> None:
        """Stop checkpointing inside commits: once a commit leaves ``pages`` or more pages in
        the WAL, call ``request(path)`` instead (a :class:`~logstore.log.checkpointer.
        Checkpointer` folds the WAL in on its own thread). Called on the writer connection."""
        path = self.path

        def on_commit(_conn: apsw.Connection, _name: str, wal_pages: int) -> int:
            if wal_pages >= pages:
                request(path)
            return apsw.SQLITE_OK

        self._conn.set_wal_hook(on_commit)

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (best effort; skipped while readers are busy)."""
        try:
            self._conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        except apsw.Error:
            pass


def _upgrade(conn: apsw.Connection) -> int:
    """Bring the file to :data:`FORMAT_VERSION` in one write transaction (another process may
    be doing the same: the version is read again under the write lock); return the version
    it has now."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").get
        if version in UPGRADES:
            conn.execute(UPGRADES[version])
            version = FORMAT_VERSION
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version
