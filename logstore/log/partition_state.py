"""Per-partition durable state, the segment list, and the partition's structural lock.

``<partition dir>/partition.sqlite`` (apsw, WAL, synchronous=FULL) holds::

    state(id = 0,
          topic_id          -- the topic incarnation this directory belongs to
          log_start_offset  -- offsets below it are gone (retention, delete-records)
          generation        -- bumped by every truncation and cleaner rewrite; readers drop
                               cached segment connections when it changes
          truncating_to     -- NULL, or the target of a truncation in progress, so a crash in
                               the middle is finished by the next process that takes the lock
          merge_intent      -- NULL, or JSON {"target": base, "merged": [bases]}: the log
                               cleaner is merging the segments ``merged`` into ``target``;
                               whoever finds it unlinks them if (and only if) ``target``'s
                               committed range covers them, then clears it
          truncations       -- bumped by every truncation: the one legitimate way a log end
                               goes down (see ``doorbell``, the log-end checkpoint)
          segments_listed)  -- 1 once ``segments`` is the authoritative list
    segments(base_offset)   -- every local segment that must exist, one row each

The segment list is what the partition *must* hold: a segment file is created before its row is
inserted, and its row is deleted before the file is unlinked, all under the partition lock. So
a listed segment whose file is missing is damage (reported, never papered over), and an unlisted
file is either garbage of an interrupted deletion (below the last listed segment) or the
successor of a roll that crashed before listing it.

Files made before a column or table existed are upgraded on open: missing columns are added,
and a missing segment list is filled from the directory by the partition log's recovery (which
holds the lock) the first time it opens the partition.

``<partition dir>/.lock`` is locked with ``flock`` by structural changes (rolling, truncating,
deleting segments): they are rare, so appends and reads never take it on their fast path.

Readers check ``data_version`` (a cheap in-memory counter SQLite bumps when another connection
commits) and reload the row only when it moved. The connection counts against the process's
:class:`~logstore.log.handles.FileBudget`: when idle it may be closed, and is reopened on use.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import apsw

from logstore.errors import LogstoreError, StorageError, UnknownTopicOrPartitionError
from logstore.log.handles import SQLITE_CONNECTION_FILES, FileBudget, process_budget
from logstore.log.sqlite_file import (
    BUSY_TIMEOUT_MS,
    create_atomically,
    open_connection,
    translate,
)

STATE_FILE = "partition.sqlite"
LOCK_FILE = ".lock"
APPLICATION_ID = 0x4C475350  # "LGSP": a logstore partition state file

_COLUMNS = ("topic_id", "log_start_offset", "generation", "truncating_to", "merge_intent",
            "truncations", "segments_listed")


@dataclass(frozen=True, slots=True)
class MergeIntent:
    """The cleaner is merging the segments ``merged`` into the segment ``target``."""

    target: int
    merged: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PartitionStateRow:
    topic_id: str
    log_start_offset: int
    generation: int
    truncating_to: int | None
    merge_intent: MergeIntent | None = None
    truncations: int = 0
    segments_listed: bool = True
    segments: tuple[int, ...] = ()
    """Base offsets of the segments that must exist, ascending."""


class PartitionState:
    """The state row and segment list of one partition, cached per process. Thread-safe."""

    def __init__(self, directory: Path, *, budget: FileBudget | None = None) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self._budget = budget or process_budget()
        self._lock = threading.Lock()
        self._conn: apsw.Connection | None = None
        self._data_version = -1
        self._cached: PartitionStateRow | None = None
        self._closed = False
        self._closed_error: LogstoreError | None = None
        self._inode: int | None = None

    @classmethod
    def create(
        cls, directory: Path, *, topic_id: str, log_start_offset: int = 0,
        segments: Sequence[int] | None = None, sync_dir: bool = True,
    ) -> None:
        """Create the state file if missing (atomic: built aside, hard-linked into place).

        With ``segments`` (files that exist already) the list is authoritative from the start;
        without, it starts empty and not authoritative, and the partition log's recovery lists
        what the directory holds."""
        def initialize(conn: apsw.Connection) -> None:
            conn.execute(
                f"PRAGMA application_id = {APPLICATION_ID};"
                "CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 0), "
                "topic_id TEXT NOT NULL, log_start_offset INTEGER NOT NULL, "
                "generation INTEGER NOT NULL, truncating_to INTEGER, merge_intent TEXT, "
                "truncations INTEGER NOT NULL DEFAULT 0, "
                "segments_listed INTEGER NOT NULL DEFAULT 0);"
                "CREATE TABLE segments (base_offset INTEGER PRIMARY KEY);"
            )
            conn.execute("INSERT INTO state VALUES (0, ?, ?, 0, NULL, NULL, 0, ?)",
                         (topic_id, log_start_offset, 0 if segments is None else 1))
            conn.executemany("INSERT INTO segments VALUES (?)", [(b,) for b in segments or ()])

        create_atomically(directory / STATE_FILE, initialize, sync_dir=sync_dir)

    @classmethod
    def open(cls, directory: Path, *, budget: FileBudget | None = None) -> PartitionState:
        """Open the state file; FileNotFoundError if the partition directory has none."""
        state = cls(directory, budget=budget)
        with state._lock:
            state._connect_locked()
        return state

    def _connect_locked(self) -> apsw.Connection:
        if self._closed:
            if self._closed_error is not None:
                raise self._closed_error
            raise StorageError(f"{self.path} is closed")
        if self._conn is not None:
            self._budget.used(self)
            return self._conn
        conn = open_connection(self.path, what="partition state")
        try:
            conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            conn.execute("PRAGMA synchronous = FULL")
            conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)  # writes checkpoint themselves
            if conn.execute("PRAGMA application_id").get != APPLICATION_ID:
                raise StorageError(f"{self.path} is not a logstore partition state file")
            _upgrade(conn)
        except apsw.Error as exc:
            error = translate(exc, f"opening {self.path}")  # before closing: EMFILE shows
            conn.close()
            if not self.path.exists():  # deleted while it was being opened
                raise FileNotFoundError(self.path) from exc
            raise error from exc
        except BaseException:
            conn.close()
            raise
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            conn.close()
            raise
        if self._inode is not None and inode != self._inode and self._cached is not None:
            # Replaced while this process had it open: a repair rebuilt it (same topic id:
            # follow it) or the topic was deleted and created again (another topic id).
            try:
                topic_id = _read(conn).topic_id
            except (apsw.Error, StorageError):
                topic_id = None
            if topic_id != self._cached.topic_id:
                conn.close()
                raise UnknownTopicOrPartitionError(
                    f"{self.directory} was deleted (its state file belongs to another topic "
                    "incarnation now)")
        self._inode = inode
        self._conn = conn
        self._data_version = -1
        self._budget.opened(self, SQLITE_CONNECTION_FILES)
        return conn

    def replaced(self) -> bool:
        """True if the state file at this path is gone or belongs to another incarnation of
        the topic than the one this object opened (the partition was deleted)."""
        try:
            if self._inode is None or os.stat(self.path).st_ino == self._inode:
                return False
        except FileNotFoundError:
            return True
        other = PartitionState(self.directory, budget=self._budget)
        try:
            return self._cached is None or other.get().topic_id != self._cached.topic_id
        except (FileNotFoundError, LogstoreError):
            return True
        finally:
            other.close()

    def try_close_idle(self) -> bool:
        """Close the connection if no thread is using it (the file budget's eviction)."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._disconnect_locked()
        finally:
            self._lock.release()
        return True

    def _disconnect_locked(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except apsw.Error:
                pass
            self._budget.closed(self)

    def close(self, error: LogstoreError | None = None) -> None:
        """Close for good; later uses raise ``error`` (default: a StorageError)."""
        with self._lock:
            self._closed = True
            self._closed_error = error
            self._disconnect_locked()

    def get(self) -> PartitionStateRow:
        """The current row, re-read only when another connection has committed since."""
        with self._lock:
            conn = self._connect_locked()
            try:
                version = conn.execute("PRAGMA data_version").get
                if self._cached is None or version != self._data_version:
                    self._cached = _read(conn)
                    self._data_version = version
                return self._cached
            except apsw.Error as exc:
                raise translate(exc, f"reading {self.path}") from exc

    def _write(self, statements: list[tuple[str, tuple[object, ...]]]) -> PartitionStateRow:
        with self._lock:
            conn = self._connect_locked()
            try:
                with conn:  # a transaction: BEGIN ... COMMIT
                    for sql, params in statements:
                        conn.execute(sql, params)
            except apsw.Error as exc:
                raise translate(exc, f"writing {self.path}") from exc
            self._cached = None
            # Keep the WAL near empty: the list then survives the loss of the -wal file.
            try:
                conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
            except apsw.Error:
                pass
        return self.get()

    def advance_log_start(self, offset: int) -> PartitionStateRow:
        """Move the log start offset up to ``offset`` (never down)."""
        return self._write([(
            "UPDATE state SET log_start_offset = max(log_start_offset, ?) WHERE id = 0",
            (offset,))])

    def begin_truncation(self, offset: int) -> PartitionStateRow:
        """Record a truncation intent (and count it); redone by whoever finds it after a
        crash."""
        return self._write([(
            "UPDATE state SET truncating_to = ?, truncations = truncations + 1 WHERE id = 0",
            (offset,))])

    def finish_truncation(self, *, log_start_offset: int | None = None) -> PartitionStateRow:
        """Clear the intent and bump the generation (optionally resetting the log start)."""
        if log_start_offset is None:
            return self._write([(
                "UPDATE state SET truncating_to = NULL, generation = generation + 1 WHERE id = 0",
                ())])
        return self._write([(
            ("UPDATE state SET truncating_to = NULL, generation = generation + 1, "
             "log_start_offset = ? WHERE id = 0"), (log_start_offset,))])

    def begin_merge(self, intent: MergeIntent) -> PartitionStateRow:
        """Record that the cleaner is about to commit a merge into ``intent.target``."""
        return self._write([(
            "UPDATE state SET merge_intent = ? WHERE id = 0",
            (json.dumps({"target": intent.target, "merged": list(intent.merged)}),))])

    def finish_rewrite(self, *, removed: Iterable[int] = ()) -> PartitionStateRow:
        """Clear any merge intent, unlist ``removed`` (merged segments) and bump the
        generation: segments were rewritten in place, so every process drops its cached
        segment states and connections."""
        return self._write([
            *[("DELETE FROM segments WHERE base_offset = ?", (b,)) for b in removed],
            ("UPDATE state SET merge_intent = NULL, generation = generation + 1 WHERE id = 0",
             ()),
        ])

    def add_segment(self, base: int) -> PartitionStateRow:
        """List a segment whose file exists now."""
        return self._write([("INSERT OR IGNORE INTO segments VALUES (?)", (base,))])

    def remove_segments(self, bases: Iterable[int]) -> PartitionStateRow:
        """Unlist segments (before their files are unlinked)."""
        return self._write([("DELETE FROM segments WHERE base_offset = ?", (b,))
                            for b in bases])

    def set_segments(self, bases: Iterable[int], **columns: object) -> PartitionStateRow:
        """Make ``bases`` the segment list (adopting a directory, or a repair), setting
        ``columns`` of the state row too; marks the list authoritative."""
        unknown = set(columns) - set(_COLUMNS)
        if unknown:
            raise StorageError(f"unknown partition state columns {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in columns)
        return self._write([
            ("DELETE FROM segments", ()),
            *[("INSERT INTO segments VALUES (?)", (b,)) for b in sorted(set(bases))],
            ((f"UPDATE state SET segments_listed = 1{', ' if columns else ''}{assignments} "
              "WHERE id = 0"), tuple(columns.values())),
        ])


def _read(conn: apsw.Connection) -> PartitionStateRow:
    row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM state WHERE id = 0").fetchone()
    if row is None:
        raise StorageError("the partition state row is missing")
    intent = None
    if row[4] is not None:
        try:
            parsed = json.loads(row[4])
            intent = MergeIntent(int(parsed["target"]), tuple(int(b) for b in parsed["merged"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"the merge intent {row[4]!r} is unreadable") from exc
    segments = tuple(b for (b,) in conn.execute(
        "SELECT base_offset FROM segments ORDER BY base_offset"))
    return PartitionStateRow(row[0], row[1], row[2], row[3], intent, row[5], bool(row[6]),
                             segments)


def _upgrade(conn: apsw.Connection) -> None:
    """Bring a state file made by an earlier version up to date (idempotent, race-safe)."""
    _add_column(conn, "merge_intent", "TEXT")
    _add_column(conn, "truncations", "INTEGER NOT NULL DEFAULT 0")
    _add_column(conn, "segments_listed", "INTEGER NOT NULL DEFAULT 0")
    conn.execute("CREATE TABLE IF NOT EXISTS segments (base_offset INTEGER PRIMARY KEY)")


def _add_column(conn: apsw.Connection, name: str, declaration: str) -> None:
    if name in {row[1] for row in conn.execute("PRAGMA table_info(state)")}:
        return
    try:
        conn.execute(f"ALTER TABLE state ADD COLUMN {name} {declaration}")
    except apsw.SQLError:
        # Another process added it first ("duplicate column name").
        if name not in {row[1] for row in conn.execute("PRAGMA table_info(state)")}:
            raise


class PartitionLock:
    """An exclusive lock on a partition's structure, across threads and processes.

    A thread lock orders threads of this process; ``flock`` on ``.lock`` orders processes (the
    kernel drops it if the holder dies, so a killed process never leaves it held).
    """

    def __init__(self, directory: Path) -> None:
        self._path = directory / LOCK_FILE
        self._thread_lock = threading.RLock()
        self._fd: int | None = None
        self._depth = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                try:
                    fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                except FileNotFoundError:
                    raise
                except OSError as exc:
                    raise translate(exc, f"opening {self._path}") from exc
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                    os.close(self._fd)
                    self._fd = None
