"""Verifying a partition's files: what ``logstore check`` reports.

:func:`check_partition` reads a partition directory without changing anything and without
opening it as a :class:`~logstore.log.partition_log.PartitionLog` (which would refuse an offline
partition, and whose recovery changes files). It compares:

* the partition directory and its state file with what must exist (the doorbell's log-end
  checkpoint says whether the partition was ever written);
* the segment list with the files: listed files that are missing (a hole, or the active
  segment), unlisted segment files, files moved aside as foreign (``*.stray-*``);
* every segment's SQLite integrity (``PRAGMA quick_check``) and every batch: its CRC-32C, its
  offsets against its row and its record count, and the order of batches;
* the chain: each sealed segment's successor must be the next listed segment (a gap or an
  overlap otherwise);
* the log end against the doorbell's checkpoint (lost committed records).

Each finding is a :class:`Problem` naming the file and, where they are known, the offsets it
affects. ``logstore repair`` (``repair``) turns them into explicit choices. Thread-safe (it
opens connections of its own).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import apsw

from logstore.errors import CorruptRecordError, LogstoreError, StorageError
from logstore.log import doorbell
from logstore.log.partition_state import STATE_FILE, PartitionState, PartitionStateRow
from logstore.log.recovery import STRAY_MARKER
from logstore.log.segment import (
    Segment,
    SegmentState,
    parse_segment_file_name,
    segment_file_name,
    segment_files,
)
from logstore.records.header import validate_batch


class ProblemKind(enum.Enum):
    """What is wrong (the values are what ``logstore check`` prints)."""

    MISSING_DIRECTORY = "missing-directory"
    """The partition directory is gone although records were written to it."""
    MISSING_STATE = "missing-state"
    """``partition.sqlite`` is gone (or unreadable) but segment files are there."""
    FOREIGN_TOPIC_ID = "foreign-topic-id"
    """The directory belongs to another incarnation of the topic."""
    MISSING_SEGMENT = "missing-segment"
    """A listed sealed segment's file is gone: its offsets are a hole."""
    MISSING_ACTIVE_SEGMENT = "missing-active-segment"
    """The active segment's file is gone (the partition is offline)."""
    LOST_RECORDS = "lost-records"
    """The log end is below the doorbell's checkpoint: committed records were lost."""
    CORRUPT_FILE = "corrupt-file"
    """SQLite finds the segment or state file malformed."""
    BAD_BATCH = "bad-batch"
    """A stored batch fails its CRC or does not match its row."""
    GAP = "gap"
    """No segment covers a range of offsets (the chain and the list disagree)."""
    OVERLAP = "overlap"
    """Two segments claim the same offsets."""
    UNLISTED_FILE = "unlisted-file"
    """A segment file the list does not name (removed or adopted by the next open)."""
    STRAY_FILE = "stray-file"
    """A foreign segment file that an open moved aside (``*.stray-*``)."""


#: Problems that keep a partition from serving (appending would reuse offsets).
OFFLINE_KINDS = frozenset({
    ProblemKind.MISSING_DIRECTORY, ProblemKind.MISSING_STATE, ProblemKind.FOREIGN_TOPIC_ID,
    ProblemKind.MISSING_ACTIVE_SEGMENT, ProblemKind.LOST_RECORDS,
})
#: Findings that are not damage (reported for the operator's information).
NOTICE_KINDS = frozenset({ProblemKind.UNLISTED_FILE, ProblemKind.STRAY_FILE})


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of a check."""

    kind: ProblemKind
    path: str
    message: str
    start_offset: int = -1
    """The first offset affected, or -1 if unknown."""
    end_offset: int = -1
    """One past the last offset affected, or -1 if unknown."""


@dataclass(frozen=True, slots=True)
class SegmentCheck:
    """What the check found out about one segment file that exists."""

    base_offset: int
    state: SegmentState | None
    """The summary row (None if unreadable)."""
    first_bad_offset: int | None = None
    """The base offset of the first damaged batch (or of the damage), None if all are good."""


@dataclass(frozen=True, slots=True)
class PartitionCheck:
    """The result of checking one partition."""

    topic: str
    partition: int
    directory: str
    topic_id: str | None
    """The topic id recorded in the directory (None if unreadable)."""
    log_start_offset: int
    log_end_offset: int
    """One past the last stored offset found (-1 if unknown)."""
    checkpoint: int | None
    """The log end the doorbell recorded (None if none)."""
    listed: tuple[int, ...]
    """The segment list (empty if the state file is missing)."""
    segments: tuple[SegmentCheck, ...]
    batches_checked: int
    bytes_checked: int
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def damaged(self) -> bool:
        """True if any problem is damage (not just a notice)."""
        return any(p.kind not in NOTICE_KINDS for p in self.problems)

    @property
    def offline(self) -> bool:
        return any(p.kind in OFFLINE_KINDS for p in self.problems)


def check_partition(
    directory: Path,
    *,
    topic: str,
    partition: int,
    topic_id: str,
    doorbell_path: Path,
    deep: bool = True,
    progress: Callable[[int], None] | None = None,
) -> PartitionCheck:
    """Check one partition (see the module docstring). ``deep`` also verifies every batch and
    SQLite's integrity; ``progress`` gets the bytes of every batch read."""
    recorded = doorbell.read_checkpoint(doorbell_path)
    if recorded is not None and recorded.topic_id != topic_id:
        recorded = None
    checkpoint = recorded.log_end_offset if recorded is not None else None
    problems: list[Problem] = []
    files = segment_files(directory, missing_ok=True)
    strays = _stray_files(directory)
    problems.extend(Problem(ProblemKind.STRAY_FILE, str(directory / name),
                            f"{directory / name} was moved aside as foreign (not used)")
                    for name in strays)
    state_path = directory / STATE_FILE
    if not directory.exists():
        if checkpoint:
            problems.append(Problem(
                ProblemKind.MISSING_DIRECTORY, str(directory),
                f"{directory} is missing; offsets up to {checkpoint - 1} were written to it",
                0, checkpoint))
        return PartitionCheck(topic, partition, str(directory), None, -1, -1, checkpoint, (),
                              (), 0, 0, tuple(problems))
    try:
        row = _read_state(directory)
    except FileNotFoundError:
        row = None
        if files or checkpoint:
            problems.append(Problem(
                ProblemKind.MISSING_STATE, str(state_path),
                f"{state_path} is missing ({len(files)} segment files are there)"))
    except StorageError as exc:
        row = None
        problems.append(Problem(ProblemKind.MISSING_STATE, str(state_path),
                                f"{state_path} is unreadable: {exc}"))
    if row is not None and row.topic_id != topic_id:
        problems.append(Problem(
            ProblemKind.FOREIGN_TOPIC_ID, str(directory),
            f"{directory} belongs to topic id {row.topic_id}, not {topic_id}"))
    listed = tuple(row.segments) if row is not None and row.segments_listed else tuple(files)
    listed_set = set(listed)
    for missing in [b for b in listed if b not in set(files)]:
        path = directory / segment_file_name(missing)
        following = _next(listed, missing)
        if following is None:
            problems.append(Problem(
                ProblemKind.MISSING_ACTIVE_SEGMENT, str(path),
                f"the active segment {path} is missing", missing, -1))
        else:
            problems.append(Problem(
                ProblemKind.MISSING_SEGMENT, str(path),
                f"{path} is missing: offsets {missing} to {following - 1} are a hole",
                missing, following))
    for unlisted in [b for b in files if b not in listed_set]:
        path = directory / segment_file_name(unlisted)
        problems.append(Problem(
            ProblemKind.UNLISTED_FILE, str(path),
            f"{path} is not in the segment list (the next open removes it if it lies below the "
            "last listed segment, or lists it if it continues the log)", unlisted))
    checks: list[SegmentCheck] = []
    batches = checked_bytes = 0
    for segment_base in [b for b in listed if b in set(files)]:
        found, counted, size = _check_segment(directory / segment_file_name(segment_base),
                                               deep=deep, problems=problems, progress=progress)
        checks.append(found)
        batches += counted
        checked_bytes += size
    merging = set(row.merge_intent.merged) if row is not None and row.merge_intent else set()
    _check_chain(directory, listed, checks, problems, merging=merging)
    log_end = -1
    last_state = checks[-1].state if checks and checks[-1].base_offset == listed[-1] else None
    if last_state is not None:
        log_end = last_state.log_end_offset
    if (checkpoint is not None and last_state is not None and row is not None
            and recorded is not None and recorded.truncations == row.truncations
            and log_end < checkpoint):
        path = directory / segment_file_name(listed[-1])
        problems.append(Problem(
            ProblemKind.LOST_RECORDS, str(path),
            f"the log ends at {log_end} but offsets up to {checkpoint - 1} were written: "
            f"{path} lost committed records", log_end, checkpoint))
    return PartitionCheck(
        topic, partition, str(directory), None if row is None else row.topic_id,
        -1 if row is None else row.log_start_offset, log_end, checkpoint, listed,
        tuple(checks), batches, checked_bytes, tuple(problems))


def _read_state(directory: Path) -> PartitionStateRow:
    state = PartitionState(directory)
    try:
        return state.get()
    finally:
        state.close()


def _stray_files(directory: Path) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if STRAY_MARKER in n and not n.endswith(("-wal", "-shm")))


def _next(listed: tuple[int, ...], base: int) -> int | None:
    later = [b for b in listed if b > base]
    return later[0] if later else None


def _check_segment(
    path: Path, *, deep: bool, problems: list[Problem],
    progress: Callable[[int], None] | None,
) -> tuple[SegmentCheck, int, int]:
    """Check one segment file: (its check, batches checked, bytes checked)."""
    base = parse_segment_file_name(path.name) or 0  # listed names are segment names
    try:
        segment = Segment.open(path)
    except (FileNotFoundError, LogstoreError) as exc:
        problems.append(Problem(ProblemKind.CORRUPT_FILE, str(path),
                                f"{path} cannot be opened: {exc}", base))
        return SegmentCheck(base, None, base), 0, 0
    batches = checked = 0
    first_bad: int | None = None
    try:
        with segment.read_transaction() as state:
            if deep:
                verdict = segment.quick_check()
                if verdict != "ok":
                    problems.append(Problem(ProblemKind.CORRUPT_FILE, str(path),
                                            f"{path} is damaged: {verdict}", base))
                    first_bad = base
                previous_last = base - 1
                for row_base, row_last, row_count, data in segment.iter_batch_rows():
                    size = len(data)
                    batches += 1
                    checked += size
                    if progress is not None:
                        progress(size)
                    reason = _batch_problem(row_base, row_last, row_count, data, previous_last)
                    if reason is not None:
                        problems.append(Problem(
                            ProblemKind.BAD_BATCH, str(path),
                            f"{path}: the batch at offsets {row_base} to {row_last} {reason}",
                            row_base, row_last + 1))
                        if first_bad is None:
                            first_bad = row_base
                    previous_last = max(previous_last, row_last)
                if state.last_offset != max(previous_last, base - 1):
                    problems.append(Problem(
                        ProblemKind.CORRUPT_FILE, str(path),
                        f"{path}: its summary says the last offset is {state.last_offset}, its "
                        f"batches end at {previous_last}", base))
    except (apsw.Error, StorageError) as exc:
        problems.append(Problem(ProblemKind.CORRUPT_FILE, str(path),
                                f"{path} is damaged: {exc}", base))
        return SegmentCheck(base, None, base), batches, checked
    finally:
        segment.close()
    return SegmentCheck(base, state, first_bad), batches, checked


def _batch_problem(
    row_base: int, row_last: int, row_count: int, data: bytes, previous_last: int
) -> str | None:
    """Why a stored batch is bad, or None."""
    try:
        header = validate_batch(data)
    except CorruptRecordError as exc:
        return f"is corrupt ({exc})"
    if header.size_bytes != len(data):
        return f"is {len(data)} bytes but says {header.size_bytes}"
    if (header.base_offset, header.last_offset) != (row_base, row_last):
        return (f"says it holds offsets {header.base_offset} to {header.last_offset}")
    if header.record_count != row_count:
        return f"holds {header.record_count} records, its row says {row_count}"
    if row_base <= previous_last:
        return f"overlaps the batch before it (which ends at {previous_last})"
    return None


def _check_chain(
    directory: Path, listed: tuple[int, ...], checks: list[SegmentCheck],
    problems: list[Problem], *, merging: set[int],
) -> None:
    """Each sealed segment must end where the next listed segment starts (segments of a
    recorded merge overlap their target until the next open finishes it)."""
    states = {c.base_offset: c.state for c in checks}
    for index, base in enumerate(listed[:-1]):
        state = states.get(base)
        following = listed[index + 1]
        if state is None:
            continue  # missing or unreadable: reported already
        path = directory / segment_file_name(base)
        if not state.sealed:
            problems.append(Problem(
                ProblemKind.GAP, str(path),
                f"{path} is not sealed but is followed by segment {following}: it lost its "
                f"end (offsets {state.log_end_offset} to {following - 1} are missing)",
                state.log_end_offset, following))
        elif state.next_offset is not None and state.next_offset < following:
            problems.append(Problem(
                ProblemKind.GAP, str(path),
                f"offsets {state.next_offset} to {following - 1} are in no segment ({path} "
                f"ends at {state.next_offset - 1}, the next segment starts at {following})",
                state.next_offset, following))
        elif (state.next_offset is not None and state.next_offset > following
              and following not in merging):
            problems.append(Problem(
                ProblemKind.OVERLAP, str(path),
                f"{path} runs to {state.next_offset - 1}, past the next segment's start "
                f"{following}", following, state.next_offset))
