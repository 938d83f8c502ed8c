"""Per-partition durable state and the partition's structural lock.

``<partition dir>/partition.sqlite`` (apsw, WAL, synchronous=FULL) holds one row::

    state(id = 0,
          topic_id          -- the topic incarnation this directory belongs to
          log_start_offset  -- offsets below it are gone (retention, delete-records)
          generation        -- bumped by every truncation; readers drop cached segment
                               connections when it changes
          truncating_to     -- NULL, or the target of a truncation in progress, so a crash in
                               the middle is finished by the next process that takes the lock
          merge_intent      -- NULL, or JSON {"target": base, "merged": [bases]}: the log
                               cleaner is merging the segments ``merged`` into ``target``;
                               whoever finds it unlinks them if (and only if) ``target``'s
                               committed range covers them, then clears it. Added after the
                               first release: opening an older file adds the column.)

``<partition dir>/.lock`` is locked with ``flock`` by structural changes (rolling, truncating,
deleting segments): they are rare, so appends and reads never take it on their fast path.

Readers check ``data_version`` (a cheap in-memory counter SQLite bumps when another connection
commits) and reload the row only when it moved.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import apsw

from logstore.errors import StorageError
from logstore.log.sqlite_file import BUSY_TIMEOUT_MS, create_atomically, translate

STATE_FILE = "partition.sqlite"
LOCK_FILE = ".lock"
APPLICATION_ID = 0x4C475350  # "LGSP": a logstore partition state file


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


class PartitionState:
    """The state row of one partition, cached per process. Thread-safe."""

    def __init__(self, directory: Path, conn: apsw.Connection) -> None:
        self.directory = directory
        self._conn = conn
        self._lock = threading.Lock()
        self._data_version = -1
        self._cached: PartitionStateRow | None = None

    @classmethod
    def create(cls, directory: Path, *, topic_id: str, log_start_offset: int = 0) -> None:
        """Create the state file if missing (atomic: built aside, hard-linked into place)."""
        def initialize(conn: apsw.Connection) -> None:
            conn.execute(
                f"PRAGMA application_id = {APPLICATION_ID};"
                "CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 0), "
                "topic_id TEXT NOT NULL, log_start_offset INTEGER NOT NULL, "
                "generation INTEGER NOT NULL, truncating_to INTEGER, merge_intent TEXT)"
            )
            conn.execute("INSERT INTO state VALUES (0, ?, ?, 0, NULL, NULL)",
                         (topic_id, log_start_offset))

        create_atomically(directory / STATE_FILE, initialize)

    @classmethod
    def open(cls, directory: Path) -> PartitionState:
        """Open the state file; FileNotFoundError if the partition directory has none."""
        path = directory / STATE_FILE
        try:
            conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
        except apsw.CantOpenError:
            raise FileNotFoundError(path) from None
        try:
            conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            conn.execute("PRAGMA synchronous = FULL")
            if conn.execute("PRAGMA application_id").get != APPLICATION_ID:
                raise StorageError(f"{path} is not a logstore partition state file")
            _add_merge_intent_column(conn)
        except apsw.Error as exc:
            conn.close()
            raise translate(exc, f"opening {path}") from exc
        return cls(directory, conn)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except apsw.Error:
                pass

    def get(self) -> PartitionStateRow:
        """The current row, re-read only when another connection has committed since."""
        with self._lock:
            try:
                version = self._conn.execute("PRAGMA data_version").get
                if self._cached is None or version != self._data_version:
                    row = self._conn.execute(
                        "SELECT topic_id, log_start_offset, generation, truncating_to, "
                        "merge_intent FROM state WHERE id = 0"
                    ).fetchone()
                    intent = None
                    if row[4] is not None:
                        parsed = json.loads(row[4])
                        intent = MergeIntent(int(parsed["target"]),
                                             tuple(int(b) for b in parsed["merged"]))
                    self._cached = PartitionStateRow(*row[:4], intent)
                    self._data_version = version
                return self._cached
            except apsw.Error as exc:
                raise translate(exc, f"reading {self.directory / STATE_FILE}") from exc

    def _write(self, sql: str, params: tuple[object, ...]) -> PartitionStateRow:
        with self._lock:
            try:
                with self._conn:  # a transaction: BEGIN ... COMMIT
                    self._conn.execute(sql, params)
            except apsw.Error as exc:
                raise translate(exc, f"writing {self.directory / STATE_FILE}") from exc
            self._cached = None
        return self.get()

    def advance_log_start(self, offset: int) -> PartitionStateRow:
        """Move the log start offset up to ``offset`` (never down)."""
        return self._write(
            "UPDATE state SET log_start_offset = max(log_start_offset, ?) WHERE id = 0", (offset,)
        )

    def begin_truncation(self, offset: int) -> PartitionStateRow:
        """Record a truncation intent; it is redone by whoever finds it after a crash."""
        return self._write("UPDATE state SET truncating_to = ? WHERE id = 0", (offset,))

    def finish_truncation(self, *, log_start_offset: int | None = None) -> PartitionStateRow:
        """Clear the intent and bump the generation (optionally resetting the log start)."""
        if log_start_offset is None:
            return self._write(
                "UPDATE state SET truncating_to = NULL, generation = generation + 1 WHERE id = 0",
                (),
            )
        return self._write(
            "UPDATE state SET truncating_to = NULL, generation = generation + 1, "
            "log_start_offset = ? WHERE id = 0",
            (log_start_offset,),
        )


    def begin_merge(self, intent: MergeIntent) -> PartitionStateRow:
        """Record that the cleaner is about to commit a merge into ``intent.target``."""
        return self._write(
            "UPDATE state SET merge_intent = ? WHERE id = 0",
            (json.dumps({"target": intent.target, "merged": list(intent.merged)}),),
        )

    def finish_rewrite(self) -> PartitionStateRow:
        """Clear any merge intent and bump the generation: segments were rewritten in place,
        so every process drops its cached segment states and connections."""
        return self._write(
            "UPDATE state SET merge_intent = NULL, generation = generation + 1 WHERE id = 0", ()
        )


def _add_merge_intent_column(conn: apsw.Connection) -> None:
    """Upgrade a state file made before ``merge_intent`` existed (idempotent, race-safe)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(state)")}
    if "merge_intent" in columns:
        return
    try:
        conn.execute("ALTER TABLE state ADD COLUMN merge_intent TEXT")
    except apsw.SQLError:
        # Another process added it first ("duplicate column name").
        if "merge_intent" not in {row[1] for row in conn.execute("PRAGMA table_info(state)")}:
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
                    raise StorageError(f"cannot open {self._path}: {exc}") from exc
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
