"""SQLite files of the storage engine: atomic creation, error translation, connection setup.

Segment and partition-state files are created the same way: the database is built under a
temporary name (``.<name>.tmp-<pid>-<thread>``) without a journal, switched to WAL mode, the
file fsynced once and then hard-linked to its final name, and the directory fsynced. Every
process therefore sees either no file or a complete one, and processes racing to create the
same file agree on one (``link`` fails for the losers, who use the winner's file). Temporary
files of dead processes are removed by the partition log when it opens.

apsw exceptions are translated here into :mod:`logstore.errors`; nothing from apsw leaves the
storage engine.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import threading
from collections.abc import Callable
from pathlib import Path

import apsw

from logstore.errors import (
    CorruptFileError,
    DatabaseLockedError,
    DiskFullError,
    StorageError,
    TooManyOpenFilesError,
)

BUSY_TIMEOUT_MS = 60_000
TEMP_MARKER = ".tmp-"


def translate(exc: BaseException, what: str) -> StorageError:
    """Turn an apsw (or OS) exception into a logstore error (call at the module boundary).
    ``what`` names the operation and the file."""
    if isinstance(exc, (apsw.BusyError, apsw.LockedError)):
        return DatabaseLockedError(f"{what}: database stayed locked ({exc})")
    if isinstance(exc, (apsw.CorruptError, apsw.NotADBError)):
        return CorruptFileError(f"{what}: the file is damaged ({exc})")
    if isinstance(exc, apsw.FullError) or _errno_of(exc) == errno.ENOSPC:
        return DiskFullError(f"{what}: disk full (no space left on the device)")
    if _errno_of(exc) in (errno.EMFILE, errno.ENFILE) or (
        isinstance(exc, apsw.CantOpenError) and _out_of_descriptors()
    ):
        return too_many_open_files(what)
    if isinstance(exc, OSError):
        return StorageError(f"{what}: {exc.strerror or exc}")
    return StorageError(f"{what}: {exc.__class__.__name__}: {exc}")


def too_many_open_files(what: str) -> TooManyOpenFilesError:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return TooManyOpenFilesError(
        f"{what}: too many open files (this process may hold {soft}: raise 'ulimit -n', or "
        "give logstore.open() a smaller max_open_files)")


def _errno_of(exc: BaseException) -> int | None:
    if isinstance(exc, OSError):
        return exc.errno
    return None


def _out_of_descriptors() -> bool:
    """True when this process cannot open one more file (SQLite reports EMFILE only as
    "unable to open database file")."""
    try:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    os.close(fd)
    return False


def open_connection(path: Path, *, what: str) -> apsw.Connection:
    """Open an existing SQLite file read-write (never creating it). FileNotFoundError when it
    does not exist; other failures as logstore errors naming the file."""
    try:
        return apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    except apsw.Error as exc:
        if not path.exists():  # also: its directory is being removed
            raise FileNotFoundError(path) from None
        raise translate(exc, f"opening {what} {path}") from exc


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


def create_atomically(
    final: Path, initialize: Callable[[apsw.Connection], None], *, sync_dir: bool = True
) -> bool:
    """Create the SQLite database ``final`` unless it exists (see the module docstring);
    return True if this call created it.

    ``initialize`` runs inside one transaction on the new database. The file is built without
    a journal (it is private until linked), switched to WAL mode, fsynced once and linked into
    place; ``sync_dir=False`` leaves the directory's fsync to the caller (who creates several
    files in it).
    """
    if final.exists():
        return False
    tmp = final.parent / f".{final.name}{TEMP_MARKER}{os.getpid()}-{threading.get_ident()}"
    leftovers = [tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")]
    try:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        conn = apsw.Connection(str(tmp))
        try:
            conn.execute("PRAGMA journal_mode = OFF").get  # noqa: B018 - runs the pragma
            conn.execute("PRAGMA synchronous = OFF")
            with conn:
                initialize(conn)
            # The file header says WAL from now on; nothing is in a -wal file.
            conn.execute("PRAGMA journal_mode = WAL").get  # noqa: B018 - runs the pragma
        finally:
            conn.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, final)
            created = True
        except FileExistsError:
            created = False  # another process created it first: theirs is complete too
        if sync_dir:
            fsync_dir(final.parent)
        return created
    except apsw.Error as exc:
        raise translate(exc, f"creating {final}") from exc
    except OSError as exc:
        raise translate(exc, f"creating {final}") from exc
    finally:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
