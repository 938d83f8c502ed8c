"""One local segment: a SQLite database (apsw, WAL mode) holding record batches, one row per batch.

File: ``<partition dir>/<base_offset:020d>.sqlite`` (zero-padded so ``ls`` sorts by offset), plus
SQLite's ``-wal`` and ``-shm`` files next to it.

Schema (``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA user_version`` =
:data:`FORMAT_VERSION`)::

    batches(base_offset   INTEGER PRIMARY KEY,  -- first offset of the batch
            last_offset   INTEGER NOT NULL,     -- base_offset + lastOffsetDelta
            max_timestamp INTEGER NOT NULL,     -- the batch's maxTimestamp
            record_count  INTEGER NOT NULL,
            producer_id   INTEGER NOT NULL,     -- -1 unless idempotent/transactional
            attributes    INTEGER NOT NULL,     -- the batch's attributes field
            data          BLOB    NOT NULL)     -- the whole RecordBatch v2, exactly as served
    segment(id = 0, base_offset, created_ms,
            sealed        -- 0 while active; 1 once rolled (no more appends)
            next_offset   -- when sealed: the base offset of the successor segment
            size_bytes    -- sum of the batch sizes
            max_timestamp -- largest maxTimestamp of any batch, -1 when empty
            last_offset)  -- last offset of the last batch, base_offset - 1 when empty
    producers(producer_id PRIMARY KEY, epoch, last_sequence, batches JSON,
              txn_first_offset, last_timestamp)
                          -- idempotent/transactional producer state (see producer_state):
                             updated in the same transaction as the batches, so it is always
                             consistent with them, in every process; final once sealed
    producer_snapshot(...same columns...)
                          -- the state as of base_offset (copied from the predecessor at
                             creation): truncation rebuilds from it by replaying batches
    aborted_txns(producer_id, first_offset, last_offset)
                          -- transactions aborted by a marker in this segment (last_offset is
                             the marker's offset), for read_committed readers

The blob's baseOffset (and partitionLeaderEpoch) fields are patched to the assigned values inside
the write transaction, so a read returns stored bytes unchanged.

Creation is atomic (see ``sqlite_file``): every process sees either no segment or a complete one,
and two processes racing to create the same segment agree on one file. Every connection sets
``SQLITE_FCNTL_PERSIST_WAL`` (see ``sqlite_file.set_persist_wal``).

Thread-safety: a ``Segment`` wraps one connection; callers serialize use of it (the partition log
holds a lock per connection). Several processes may open the same segment.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import apsw

from logstore.errors import CorruptFileError, StorageError
from logstore.log.handles import SQLITE_CONNECTION_FILES, FileBudget
from logstore.log.producer_state import AbortedTxn, ProducerEntry
from logstore.log.sqlite_file import (
    BUSY_TIMEOUT_MS,
    create_atomically,
    open_connection,
    set_persist_wal,
    translate,
)
from logstore.records.header import CONTROL_MASK

APPLICATION_ID = 0x4C475347  # "LGSG": a logstore segment
FORMAT_VERSION = 2
SUFFIX = ".sqlite"

_SCHEMA = f"""
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {FORMAT_VERSION};
CREATE TABLE batches (
    base_offset   INTEGER PRIMARY KEY,
    last_offset   INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL,
    record_count  INTEGER NOT NULL,
    producer_id   INTEGER NOT NULL,
    attributes    INTEGER NOT NULL,
    data          BLOB    NOT NULL
);
CREATE TABLE producers (
    producer_id      INTEGER PRIMARY KEY,
    epoch            INTEGER NOT NULL,
    last_sequence    INTEGER NOT NULL,
    batches          TEXT    NOT NULL,
    txn_first_offset INTEGER,
    last_timestamp   INTEGER NOT NULL
);
CREATE TABLE producer_snapshot (
    producer_id      INTEGER PRIMARY KEY,
    epoch            INTEGER NOT NULL,
    last_sequence    INTEGER NOT NULL,
    batches          TEXT    NOT NULL,
    txn_first_offset INTEGER,
    last_timestamp   INTEGER NOT NULL
);
CREATE TABLE aborted_txns (
    producer_id  INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    last_offset  INTEGER NOT NULL
);
CREATE INDEX aborted_txns_by_last ON aborted_txns(last_offset);
CREATE TABLE segment (
    id            INTEGER PRIMARY KEY CHECK (id = 0),
    base_offset   INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL,
    sealed        INTEGER NOT NULL DEFAULT 0,
    next_offset   INTEGER,
    size_bytes    INTEGER NOT NULL DEFAULT 0,
    max_timestamp INTEGER NOT NULL DEFAULT -1,
    last_offset   INTEGER NOT NULL
);
"""


def segment_file_name(base_offset: int) -> str:
    """The file name of the segment starting at ``base_offset``."""
    return f"{base_offset:020d}{SUFFIX}"


def segment_files(directory: Path, *, missing_ok: bool = False) -> list[int]:
    """Base offsets of the segment files in ``directory`` (listed or not), ascending.
    FileNotFoundError if the directory is gone, unless ``missing_ok`` (then [])."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        if missing_ok:
            return []
        raise
    return sorted(b for b in map(parse_segment_file_name, names) if b is not None)


def parse_segment_file_name(name: str) -> int | None:
    """The base offset encoded in a segment file name, or None if ``name`` is not a segment."""
    if len(name) != 20 + len(SUFFIX) or not name.endswith(SUFFIX):
        return None
    digits = name[:20]
    return int(digits) if digits.isdigit() else None


@dataclass(frozen=True, slots=True)
class SegmentState:
    """The segment's summary row, read inside a transaction."""

    base_offset: int
    created_ms: int
    sealed: bool
    next_offset: int | None
    size_bytes: int
    max_timestamp: int
    last_offset: int

    @property
    def log_end_offset(self) -> int:
        """One past the last offset stored in this segment."""
        return self.last_offset + 1

    @property
    def is_empty(self) -> bool:
        return self.last_offset < self.base_offset


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One batch to insert; ``data`` already carries its assigned base offset."""

    base_offset: int
    last_offset: int
    max_timestamp: int
    record_count: int
    producer_id: int
    attributes: int
    data: bytes | bytearray


_INSERT_BATCH = (
    "INSERT INTO batches(base_offset, last_offset, max_timestamp, record_count, producer_id, "
    "attributes, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _batch_params(r: BatchRow) -> tuple[int, int, int, int, int, int, bytes | bytearray]:
    return (r.base_offset, r.last_offset, r.max_timestamp, r.record_count, r.producer_id,
            r.attributes, r.data)


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

        def initialize(conn: apsw.Connection) -> None:
            conn.execute(_SCHEMA)
            conn.execute(
                "INSERT INTO segment(id, base_offset, created_ms, last_offset) VALUES (0, ?, ?, ?)",
                (base_offset, created_ms, base_offset - 1),
            )
            rows = [p.to_row() for p in producers]
            for table in ("producers", "producer_snapshot"):
                conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)", rows)

        create_atomically(final, initialize, sync_dir=sync_dir)
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
            return self._state()
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
            state = self._state()
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

    def _state(self) -> SegmentState:
        row = self._conn.execute(
            "SELECT base_offset, created_ms, sealed, next_offset, size_bytes, max_timestamp, "
            "last_offset FROM segment WHERE id = 0"
        ).fetchone()
        if row is None:
            raise CorruptFileError(f"segment {self.path} has no state row")
        return SegmentState(row[0], row[1], bool(row[2]), row[3], row[4], row[5], row[6])

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
        try:
            self._conn.execute("DELETE FROM batches WHERE base_offset >= ?", (offset,))
            row = self._conn.execute(
                "SELECT coalesce(sum(length(data)), 0), coalesce(max(max_timestamp), -1), "
                "coalesce(max(last_offset), ?) FROM batches",
                (self.base_offset - 1,),
            ).fetchone()
            self._conn.execute(
                "UPDATE segment SET size_bytes = ?, max_timestamp = ?, last_offset = ? "
                "WHERE id = 0",
                row,
            )
        except apsw.Error as exc:
            raise translate(exc, f"truncating segment {self.path}") from exc

    def unseal(self) -> None:
        """Make the segment active again (the last step of a truncation)."""
        try:
            self._conn.execute("UPDATE segment SET sealed = 0, next_offset = NULL WHERE id = 0")
        except apsw.Error as exc:
            raise translate(exc, f"unsealing segment {self.path}") from exc

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
        query = "SELECT * FROM producers"
        params: tuple[int, ...] = ()
        if producer_ids is not None:
            if not producer_ids:
                return {}
            query += f" WHERE producer_id IN ({','.join('?' * len(producer_ids))})"
            params = tuple(producer_ids)
        try:
            return {row[0]: ProducerEntry.from_row(row)
                    for row in self._conn.execute(query, params)}
        except apsw.Error as exc:
            raise translate(exc, f"reading producer state of {self.path}") from exc

    def snapshot_producers(self) -> dict[int, ProducerEntry]:
        """The producer state as of this segment's base offset."""
        try:
            return {row[0]: ProducerEntry.from_row(row)
                    for row in self._conn.execute("SELECT * FROM producer_snapshot")}
        except apsw.Error as exc:
            raise translate(exc, f"reading producer snapshot of {self.path}") from exc

    def save_producers(
        self, entries: Sequence[ProducerEntry], *, replace_all: bool = False
    ) -> None:
        try:
            if replace_all:
                self._conn.execute("DELETE FROM producers")
            self._conn.executemany(
                "INSERT OR REPLACE INTO producers VALUES (?, ?, ?, ?, ?, ?)",
                [e.to_row() for e in entries],
            )
        except apsw.Error as exc:
            raise translate(exc, f"writing producer state of {self.path}") from exc

    def add_aborted(self, aborted: Sequence[AbortedTxn]) -> None:
        try:
            self._conn.executemany(
                "INSERT INTO aborted_txns VALUES (?, ?, ?)",
                [(a.producer_id, a.first_offset, a.last_offset) for a in aborted],
            )
        except apsw.Error as exc:
            raise translate(exc, f"writing aborted transactions of {self.path}") from exc

    def aborted_between(self, start: int, end: int) -> list[AbortedTxn]:
        """Aborted transactions whose data may lie in [start, end): marker at or after
        ``start`` and first offset before ``end``."""
        try:
            return [AbortedTxn(*row) for row in self._conn.execute(
                "SELECT producer_id, first_offset, last_offset FROM aborted_txns "
                "WHERE last_offset >= ? AND first_offset < ? ORDER BY first_offset",
                (start, end),
            )]
        except apsw.Error as exc:
            raise translate(exc, f"reading aborted transactions of {self.path}") from exc

    def first_unstable_offset(self) -> int | None:
        """The smallest first offset of an ongoing transaction, or None."""
        try:
            return self._conn.execute(
                "SELECT min(txn_first_offset) FROM producers WHERE txn_first_offset IS NOT NULL"
            ).get
        except apsw.Error as exc:
            raise translate(exc, f"reading producer state of {self.path}") from exc

    def producer_batches(self, below: int | None = None) -> list[tuple[int, bytes]]:
        """(base offset, data) of every idempotent/transactional batch, in offset order."""
        query = "SELECT base_offset, data FROM batches WHERE producer_id >= 0"
        params: tuple[int, ...] = ()
        if below is not None:
            query += " AND base_offset < ?"
            params = (below,)
        try:
            return list(self._conn.execute(query + " ORDER BY base_offset", params))
        except apsw.Error as exc:
            raise translate(exc, f"reading {self.path}") from exc

    def delete_aborted_from(self, offset: int) -> None:
        """Forget aborted transactions whose marker is at or after ``offset`` (truncation)."""
        try:
            self._conn.execute("DELETE FROM aborted_txns WHERE last_offset >= ?", (offset,))
        except apsw.Error as exc:
            raise translate(exc, f"truncating {self.path}") from exc

    # --- in-place rewriting by the log cleaner (inside a write transaction) -------------------

    def rows_after(self, offset: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (base offset, data) rows with base offset > ``offset``, in order."""
        try:
            return list(self._conn.execute(
                "SELECT base_offset, data FROM batches WHERE base_offset > ? "
                "ORDER BY base_offset LIMIT ?", (offset, limit)))
        except apsw.Error as exc:
            raise translate(exc, f"reading {self.path}") from exc

    def iter_rows(self) -> Iterator[tuple[int, bytes]]:
        """Every (base offset, data) row in offset order, streamed (inside a transaction)."""
        try:
            yield from self._conn.execute(
                "SELECT base_offset, data FROM batches ORDER BY base_offset")
        except apsw.Error as exc:
            raise translate(exc, f"reading {self.path}") from exc

    def replace_row(self, base_offset: int, row: BatchRow | None) -> None:
        """Delete the batch at ``base_offset`` (``row`` None) or overwrite it with ``row``
        (same base offset). The summary row is not touched: see :meth:`set_summary`."""
        try:
            if row is None:
                self._conn.execute("DELETE FROM batches WHERE base_offset = ?", (base_offset,))
            else:
                self._conn.execute(
                    "UPDATE batches SET last_offset = ?, max_timestamp = ?, record_count = ?, "
                    "producer_id = ?, attributes = ?, data = ? WHERE base_offset = ?",
                    (row.last_offset, row.max_timestamp, row.record_count, row.producer_id,
                     row.attributes, row.data, base_offset))
        except apsw.Error as exc:
            raise translate(exc, f"rewriting {self.path}") from exc

    def insert_rows(self, rows: Sequence[BatchRow]) -> None:
        """Insert batches without touching the summary row (see :meth:`set_summary`)."""
        try:
            self._conn.executemany(_INSERT_BATCH, [_batch_params(r) for r in rows])
        except apsw.Error as exc:
            raise translate(exc, f"rewriting {self.path}") from exc

    def set_summary(self, *, next_offset: int) -> SegmentState:
        """Recompute size, max timestamp and last offset from the batches and set the
        successor's base offset (a sealed segment's range after a rewrite or merge)."""
        try:
            size, max_ts, last = self._conn.execute(
                "SELECT coalesce(sum(length(data)), 0), coalesce(max(max_timestamp), -1), "
                "coalesce(max(last_offset), ?) FROM batches", (self.base_offset - 1,)
            ).fetchone()
            self._conn.execute(
                "UPDATE segment SET size_bytes = ?, max_timestamp = ?, last_offset = ?, "
                "next_offset = ? WHERE id = 0", (size, max_ts, last, next_offset))
            return self._state()
        except apsw.Error as exc:
            raise translate(exc, f"rewriting {self.path}") from exc

    def all_aborted(self) -> list[AbortedTxn]:
        """Every aborted-transaction entry of this segment."""
        try:
            return [AbortedTxn(*row) for row in self._conn.execute(
                "SELECT producer_id, first_offset, last_offset FROM aborted_txns "
                "ORDER BY last_offset")]
        except apsw.Error as exc:
            raise translate(exc, f"reading aborted transactions of {self.path}") from exc

    def replace_aborted(self, aborted: Sequence[AbortedTxn]) -> None:
        """Make ``aborted`` the segment's whole aborted-transaction index."""
        try:
            self._conn.execute("DELETE FROM aborted_txns")
        except apsw.Error as exc:
            raise translate(exc, f"rewriting {self.path}") from exc
        self.add_aborted(aborted)

    def quick_check(self) -> str:
        """SQLite's ``PRAGMA quick_check``: "ok", or what is wrong (inside a transaction)."""
        try:
            rows = [row[0] for row in self._conn.execute("PRAGMA quick_check")]
        except apsw.Error as exc:
            raise translate(exc, f"checking {self.path}") from exc
        return "ok" if rows == ["ok"] else "; ".join(str(r) for r in rows[:5])

    def iter_batch_rows(self) -> Iterator[tuple[int, int, int, bytes]]:
        """Every (base offset, last offset, record count, data) row in offset order, streamed
        (inside a transaction; apsw errors propagate, for the checker to report)."""
        yield from self._conn.execute(
            "SELECT base_offset, last_offset, record_count, data FROM batches "
            "ORDER BY base_offset")

    def set_autocheckpoint(self, pages: int) -> None:
        """SQLite's ``wal_autocheckpoint`` for this connection (0 disables it, so a big
        rewrite's commit does not also fold the WAL in while a lock is held)."""
        self._conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")

    def free_fraction(self) -> float:
        """The share of the file's pages that are free (left by deleted or shrunk rows)."""
        try:
            pages = self._conn.execute("PRAGMA page_count").get
            free = self._conn.execute("PRAGMA freelist_count").get
        except apsw.Error as exc:
            raise translate(exc, f"reading {self.path}") from exc
        return free / pages if pages else 0.0

    def vacuum(self) -> None:
        """Rebuild the file without free pages (a transaction of its own: readers in other
        processes keep their snapshot; the file shrinks at the next full checkpoint)."""
        try:
            self._conn.execute("VACUUM")
        except apsw.Error as exc:
            raise translate(exc, f"vacuuming {self.path}") from exc

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (best effort; skipped while readers are busy)."""
        try:
            self._conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        except apsw.Error:
            pass
