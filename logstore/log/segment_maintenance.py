"""Work on a segment's batches outside the append and read paths: truncation, the log cleaner's
in-place rewrites and merges, repair, integrity checks and reclaiming free pages.

Plain functions on a segment's connection (``conn``; ``path`` names the file in errors). Callers
go through the :class:`~logstore.log.segment.Segment` methods of the same names, which hold the
connection; the file format is in ``segment_format``, the producer-state tables are handled in
``segment_producers``. Unless a function says otherwise it runs inside a transaction the caller
opened (a write transaction for those that write), and apsw errors are translated to logstore's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import apsw

from logstore.log.segment_format import (
    INSERT_BATCH,
    SUMMARY_FROM_BATCHES,
    BatchRow,
    SegmentState,
    batch_params,
    read_state,
)
from logstore.log.sqlite_file import translate

# --- truncation -------------------------------------------------------------------------------


def truncate_from(conn: apsw.Connection, path: Path, base_offset: int, offset: int) -> None:
    """Delete every batch whose base offset is >= ``offset`` and recompute the summary of the
    segment starting at ``base_offset``. The sealed flag is left alone (see :func:`unseal`)."""
    try:
        conn.execute("DELETE FROM batches WHERE base_offset >= ?", (offset,))
        row = conn.execute(SUMMARY_FROM_BATCHES, (base_offset - 1,)).fetchone()
        conn.execute(
            "UPDATE segment SET size_bytes = ?, max_timestamp = ?, last_offset = ? WHERE id = 0",
            row,
        )
    except apsw.Error as exc:
        raise translate(exc, f"truncating segment {path}") from exc


def unseal(conn: apsw.Connection, path: Path) -> None:
    """Make the segment active again (the last step of a truncation)."""
    try:
        conn.execute("UPDATE segment SET sealed = 0, next_offset = NULL WHERE id = 0")
    except apsw.Error as exc:
        raise translate(exc, f"unsealing segment {path}") from exc


# --- in-place rewriting by the log cleaner and repair (inside a write transaction) -----------


def rows_after(
    conn: apsw.Connection, path: Path, offset: int, limit: int
) -> list[tuple[int, bytes]]:
    """Up to ``limit`` (base offset, data) rows with base offset > ``offset``, in order."""
    try:
        return list(conn.execute(
            "SELECT base_offset, data FROM batches WHERE base_offset > ? "
            "ORDER BY base_offset LIMIT ?", (offset, limit)))
    except apsw.Error as exc:
        raise translate(exc, f"reading {path}") from exc


def iter_rows(conn: apsw.Connection, path: Path) -> Iterator[tuple[int, bytes]]:
    """Every (base offset, data) row in offset order, streamed (inside a transaction)."""
    try:
        yield from conn.execute("SELECT base_offset, data FROM batches ORDER BY base_offset")
    except apsw.Error as exc:
        raise translate(exc, f"reading {path}") from exc


def replace_row(
    conn: apsw.Connection, path: Path, base_offset: int, row: BatchRow | None
) -> None:
    """Delete the batch at ``base_offset`` (``row`` None) or overwrite it with ``row`` (same
    base offset). The summary row is not touched: see :func:`set_summary`."""
    try:
        if row is None:
            conn.execute("DELETE FROM batches WHERE base_offset = ?", (base_offset,))
        else:
            conn.execute(
                "UPDATE batches SET last_offset = ?, max_timestamp = ?, record_count = ?, "
                "producer_id = ?, attributes = ?, data = ? WHERE base_offset = ?",
                (row.last_offset, row.max_timestamp, row.record_count, row.producer_id,
                 row.attributes, row.data, base_offset))
    except apsw.Error as exc:
        raise translate(exc, f"rewriting {path}") from exc


def insert_rows(conn: apsw.Connection, path: Path, rows: Sequence[BatchRow]) -> None:
    """Insert batches without touching the summary row (see :func:`set_summary`)."""
    try:
        conn.executemany(INSERT_BATCH, [batch_params(r) for r in rows])
    except apsw.Error as exc:
        raise translate(exc, f"rewriting {path}") from exc


def set_summary(
    conn: apsw.Connection, path: Path, base_offset: int, *, next_offset: int
) -> SegmentState:
    """Recompute size, max timestamp and last offset from the batches and set the successor's
    base offset (a sealed segment's range after a rewrite or merge); returns the new state."""
    try:
        size, max_ts, last = conn.execute(SUMMARY_FROM_BATCHES, (base_offset - 1,)).fetchone()
        conn.execute(
            "UPDATE segment SET size_bytes = ?, max_timestamp = ?, last_offset = ?, "
            "next_offset = ? WHERE id = 0", (size, max_ts, last, next_offset))
        return read_state(conn, path)
    except apsw.Error as exc:
        raise translate(exc, f"rewriting {path}") from exc


# --- checks and free pages --------------------------------------------------------------------


def quick_check(conn: apsw.Connection, path: Path) -> str:
    """SQLite's ``PRAGMA quick_check``: "ok", or what is wrong (inside a transaction)."""
    try:
        rows = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except apsw.Error as exc:
        raise translate(exc, f"checking {path}") from exc
    return "ok" if rows == ["ok"] else "; ".join(str(r) for r in rows[:5])


def iter_batch_rows(conn: apsw.Connection) -> Iterator[tuple[int, int, int, bytes]]:
    """Every (base offset, last offset, record count, data) row in offset order, streamed
    (inside a transaction; apsw errors propagate, for the checker to report)."""
    yield from conn.execute(
        "SELECT base_offset, last_offset, record_count, data FROM batches ORDER BY base_offset")


def free_fraction(conn: apsw.Connection, path: Path) -> float:
    """The share of the file's pages that are free (left by deleted or shrunk rows)."""
    try:
        pages = conn.execute("PRAGMA page_count").get
        free = conn.execute("PRAGMA freelist_count").get
    except apsw.Error as exc:
        raise translate(exc, f"reading {path}") from exc
    return free / pages if pages else 0.0


def vacuum(conn: apsw.Connection, path: Path) -> None:
    """Rebuild the file without free pages (a transaction of its own, outside any other:
    readers in other processes keep their snapshot; the file shrinks at the next full
    checkpoint)."""
    try:
        conn.execute("VACUUM")
    except apsw.Error as exc:
        raise translate(exc, f"vacuuming {path}") from exc
