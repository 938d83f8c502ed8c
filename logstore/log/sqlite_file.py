"""SQLite files of the storage engine: atomic creation, error translation, connection setup.

Segment and partition-state files are created the same way: the database is built under a
temporary name (``.<name>.tmp-<pid>-<thread>``), its WAL folded in, the file fsynced and then
hard-linked to its final name, and the directory fsynced. Every process therefore sees either no
file or a complete one, and processes racing to create the same file agree on one (``link``
fails for the losers, who use the winner's file). Temporary files of dead processes are removed
by the partition log when it opens.

apsw exceptions are translated here into :mod:`logstore.errors`; nothing from apsw leaves the
storage engine.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path

import apsw

from logstore.errors import DatabaseLockedError, StorageError

BUSY_TIMEOUT_MS = 60_000
TEMP_MARKER = ".tmp-"


def translate(exc: BaseException, what: str) -> StorageError:
    """Turn an apsw exception into a logstore error (call at the module boundary)."""
    if isinstance(exc, (apsw.BusyError, apsw.LockedError)):
        return DatabaseLockedError(f"{what}: database stayed locked ({exc})")
    if isinstance(exc, (apsw.CorruptError, apsw.NotADBError)):
        return StorageError(f"{what}: file is corrupt ({exc})")
    if isinstance(exc, apsw.FullError):
        return StorageError(f"{what}: disk full ({exc})")
    return StorageError(f"{what}: {exc.__class__.__name__}: {exc}")


def set_persist_wal(conn: apsw.Connection) -> None:
    """Keep ``-wal``/``-shm`` when the last connection closes.

    SQLite otherwise deletes them *by path*, which would destroy the files of a newer database
    that reuses the path (after a truncation or a topic re-creation) when a stale connection to
    the old, unlinked file closes in another process.
    """
    flag = ctypes.c_int(1)
    conn.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(flag))


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_atomically(final: Path, initialize: Callable[[apsw.Connection], None]) -> None:
    """Create the SQLite database ``final`` unless it exists (see the module docstring).

    ``initialize`` runs inside one transaction on the new database (in WAL mode).
    """
    if final.exists():
        return
    tmp = final.parent / f".{final.name}{TEMP_MARKER}{os.getpid()}-{threading.get_ident()}"
    leftovers = [tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")]
    try:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        conn = apsw.Connection(str(tmp))
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            with conn:
                initialize(conn)
            # Fold the WAL into the main file so the linked file is complete on its own.
            conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        finally:
            conn.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, final)
        except FileExistsError:
            pass  # another process created it first: theirs is complete too
        fsync_dir(final.parent)
    except apsw.Error as exc:
        raise translate(exc, f"creating {final}") from exc
    except OSError as exc:
        raise StorageError(f"creating {final}: {exc}") from exc
    finally:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
