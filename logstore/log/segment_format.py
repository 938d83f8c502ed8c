"""The on-disk format of a local segment: a SQLite database (WAL mode) holding record batches,
one row per batch.

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
              txn_first_offset, last_timestamp, marker_claim)
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

This module holds the format only: names, the schema, the row types and the statements shared by
the modules that read and write it (``segment`` for the connection, ``segment_rewrite`` for
in-place rewrites). A new format version changes :data:`FORMAT_VERSION`. Files of an older
version listed in :data:`UPGRADES` are upgraded in place when opened (one write transaction);
files of any other version are refused.

Versions: 2 (the first of these tables); 3 adds ``marker_claim`` (the highest transaction-marker
claim seen per producer, see ``producer_state``) to ``producers`` and ``producer_snapshot``,
-1 in upgraded rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import apsw

from logstore.errors import CorruptFileError
from logstore.log.producer_state import ProducerEntry

APPLICATION_ID = 0x4C475347  # "LGSG": a logstore segment
FORMAT_VERSION = 3
#: Statements that bring a file of the key's version to :data:`FORMAT_VERSION`.
UPGRADES = {
    2: (
        "ALTER TABLE producers ADD COLUMN marker_claim INTEGER NOT NULL DEFAULT -1;"
        "ALTER TABLE producer_snapshot ADD COLUMN marker_claim INTEGER NOT NULL DEFAULT -1;"
        f"PRAGMA user_version = {FORMAT_VERSION};"
    ),
}
SUFFIX = ".sqlite"

# The columns of ``producers`` and ``producer_snapshot`` (one ProducerEntry row each).
_PRODUCER_TABLE = """
    producer_id      INTEGER PRIMARY KEY,
    epoch            INTEGER NOT NULL,
    last_sequence    INTEGER NOT NULL,
    batches          TEXT    NOT NULL,
    txn_first_offset INTEGER,
    last_timestamp   INTEGER NOT NULL,
    marker_claim     INTEGER NOT NULL DEFAULT -1
"""

SCHEMA = f"""
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
CREATE TABLE producers ({_PRODUCER_TABLE});
CREATE TABLE producer_snapshot ({_PRODUCER_TABLE});
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


#: Placeholders of a ``producers`` / ``producer_snapshot`` row.
PRODUCER_COLUMNS = ", ".join("?" * 7)


def initialize(
    conn: apsw.Connection, base_offset: int, created_ms: int, producers: Sequence[ProducerEntry]
) -> None:
    """Write the schema and the initial rows of a new, empty segment: the summary row and the
    starting producer state (both as current state and as the snapshot at ``base_offset``)."""
    conn.execute(SCHEMA)
    conn.execute(
        "INSERT INTO segment(id, base_offset, created_ms, last_offset) VALUES (0, ?, ?, ?)",
        (base_offset, created_ms, base_offset - 1),
    )
    rows = [p.to_row() for p in producers]
    for table in ("producers", "producer_snapshot"):
        conn.executemany(f"INSERT INTO {table} VALUES ({PRODUCER_COLUMNS})", rows)


# --- file names -----------------------------------------------------------------------------


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


# --- rows -----------------------------------------------------------------------------------


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


def read_state(conn: apsw.Connection, path: Path) -> SegmentState:
    """The summary row (inside a transaction; apsw errors propagate)."""
    row = conn.execute(
        "SELECT base_offset, created_ms, sealed, next_offset, size_bytes, max_timestamp, "
        "last_offset FROM segment WHERE id = 0"
    ).fetchone()
    if row is None:
        raise CorruptFileError(f"segment {path} has no state row")
    return SegmentState(row[0], row[1], bool(row[2]), row[3], row[4], row[5], row[6])


#: The summary's size, max timestamp and last offset recomputed from the batches (after rows
#: were deleted or rewritten); one parameter, the segment's base offset - 1 (empty last offset).
SUMMARY_FROM_BATCHES = (
    "SELECT coalesce(sum(length(data)), 0), coalesce(max(max_timestamp), -1), "
    "coalesce(max(last_offset), ?) FROM batches"
)


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


INSERT_BATCH = (
    "INSERT INTO batches(base_offset, last_offset, max_timestamp, record_count, producer_id, "
    "attributes, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def batch_params(r: BatchRow) -> tuple[int, int, int, int, int, int, bytes | bytearray]:
    """The parameters of :data:`INSERT_BATCH` for ``r``."""
    return (r.base_offset, r.last_offset, r.max_timestamp, r.record_count, r.producer_id,
            r.attributes, r.data)
