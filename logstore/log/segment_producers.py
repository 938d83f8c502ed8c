"""A segment's producer-state tables: ``producers`` (idempotent/transactional producer state),
``producer_snapshot`` (the state as of the segment's base offset) and ``aborted_txns`` (the
transactions aborted by markers in the segment, for read_committed readers). Their columns are in
``segment_format``; the entries are ``producer_state``'s.

Plain functions on a segment's connection (``conn``; ``path`` names the file in errors), reached
through the :class:`~logstore.log.segment.Segment` methods of the same names. All run inside a
transaction the caller opened (a write transaction for those that write); apsw errors are
translated to logstore's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import apsw

from logstore.log.producer_state import AbortedTxn, ProducerEntry
from logstore.log.segment_format import PRODUCER_COLUMNS
from logstore.log.sqlite_file import translate

# --- appends and reads ------------------------------------------------------------------------


def producers(
    conn: apsw.Connection, path: Path, producer_ids: Sequence[int] | None = None
) -> dict[int, ProducerEntry]:
    """Producer states (of ``producer_ids`` only, if given)."""
    query = "SELECT * FROM producers"
    params: tuple[int, ...] = ()
    if producer_ids is not None:
        if not producer_ids:
            return {}
        query += f" WHERE producer_id IN ({','.join('?' * len(producer_ids))})"
        params = tuple(producer_ids)
    try:
        return {row[0]: ProducerEntry.from_row(row) for row in conn.execute(query, params)}
    except apsw.Error as exc:
        raise translate(exc, f"reading producer state of {path}") from exc


def save_producers(
    conn: apsw.Connection, path: Path, entries: Sequence[ProducerEntry], *,
    replace_all: bool = False,
) -> None:
    """Insert or replace the states of ``entries`` (first forgetting every other producer when
    ``replace_all``)."""
    try:
        if replace_all:
            conn.execute("DELETE FROM producers")
        conn.executemany(
            f"INSERT OR REPLACE INTO producers VALUES ({PRODUCER_COLUMNS})",
            [e.to_row() for e in entries],
        )
    except apsw.Error as exc:
        raise translate(exc, f"writing producer state of {path}") from exc


def add_aborted(conn: apsw.Connection, path: Path, aborted: Sequence[AbortedTxn]) -> None:
    """Add entries to the aborted-transaction index."""
    try:
        conn.executemany(
            "INSERT INTO aborted_txns VALUES (?, ?, ?)",
            [(a.producer_id, a.first_offset, a.last_offset) for a in aborted],
        )
    except apsw.Error as exc:
        raise translate(exc, f"writing aborted transactions of {path}") from exc


def aborted_between(conn: apsw.Connection, path: Path, start: int, end: int) -> list[AbortedTxn]:
    """Aborted transactions whose data may lie in [start, end): marker at or after ``start``
    and first offset before ``end``."""
    try:
        return [AbortedTxn(*row) for row in conn.execute(
            "SELECT producer_id, first_offset, last_offset FROM aborted_txns "
            "WHERE last_offset >= ? AND first_offset < ? ORDER BY first_offset",
            (start, end),
        )]
    except apsw.Error as exc:
        raise translate(exc, f"reading aborted transactions of {path}") from exc


def first_unstable_offset(conn: apsw.Connection, path: Path) -> int | None:
    """The smallest first offset of an ongoing transaction, or None."""
    try:
        return conn.execute(
            "SELECT min(txn_first_offset) FROM producers WHERE txn_first_offset IS NOT NULL"
        ).get
    except apsw.Error as exc:
        raise translate(exc, f"reading producer state of {path}") from exc


# --- truncation and rewrites ------------------------------------------------------------------


def snapshot_producers(conn: apsw.Connection, path: Path) -> dict[int, ProducerEntry]:
    """The producer state as of the segment's base offset."""
    try:
        return {row[0]: ProducerEntry.from_row(row)
                for row in conn.execute("SELECT * FROM producer_snapshot")}
    except apsw.Error as exc:
        raise translate(exc, f"reading producer snapshot of {path}") from exc


def producer_batches(
    conn: apsw.Connection, path: Path, below: int | None = None
) -> list[tuple[int, bytes]]:
    """(base offset, data) of every idempotent/transactional batch (with a base offset below
    ``below``, if given), in offset order: what rebuilding producer state replays."""
    query = "SELECT base_offset, data FROM batches WHERE producer_id >= 0"
    params: tuple[int, ...] = ()
    if below is not None:
        query += " AND base_offset < ?"
        params = (below,)
    try:
        return list(conn.execute(query + " ORDER BY base_offset", params))
    except apsw.Error as exc:
        raise translate(exc, f"reading {path}") from exc


def delete_aborted_from(conn: apsw.Connection, path: Path, offset: int) -> None:
    """Forget aborted transactions whose marker is at or after ``offset`` (truncation)."""
    try:
        conn.execute("DELETE FROM aborted_txns WHERE last_offset >= ?", (offset,))
    except apsw.Error as exc:
        raise translate(exc, f"truncating {path}") from exc


def all_aborted(conn: apsw.Connection, path: Path) -> list[AbortedTxn]:
    """Every aborted-transaction entry of the segment."""
    try:
        return [AbortedTxn(*row) for row in conn.execute(
            "SELECT producer_id, first_offset, last_offset FROM aborted_txns "
            "ORDER BY last_offset")]
    except apsw.Error as exc:
        raise translate(exc, f"reading aborted transactions of {path}") from exc


def replace_aborted(conn: apsw.Connection, path: Path, aborted: Sequence[AbortedTxn]) -> None:
    """Make ``aborted`` the segment's whole aborted-transaction index."""
    try:
        conn.execute("DELETE FROM aborted_txns")
    except apsw.Error as exc:
        raise translate(exc, f"rewriting {path}") from exc
    add_aborted(conn, path, aborted)
