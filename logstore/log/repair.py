"""Repairing a damaged partition: the operator's explicit choice, printed before it is made.

``logstore check`` (``check``) finds what is wrong; a partition whose files are damaged stays
offline (or keeps its holes) until an operator picks one of two ways out, for a whole
partition:

* **adopt** the data found: keep every record that is still readable and never hand out an
  offset again. What is lost becomes a *gap*, like the gaps compaction leaves: an empty sealed
  segment covers a missing segment's range; a log end that went backwards is sealed where the
  records stop, with the next segment starting where the doorbell's checkpoint says offsets
  were handed out up to; a damaged segment is rebuilt from its readable, valid batches (the
  original is kept, renamed ``*.damaged-<ms>``); a lost directory or state file is laid out or
  rebuilt from the files that are there. Consumers skip gaps (their offsets hold nothing).
* **truncate** to the last good offset: everything from the first damage on is removed, and
  new records continue from there, so offsets that consumers may already have seen are handed
  out again. The plan says so, offset by offset.

:func:`plan_repair` turns a :class:`~logstore.log.check.PartitionCheck` into
:class:`RepairStep` values (what will be done, and whether offsets get reused);
:func:`apply_repair` carries them out under the partition lock. Nothing is applied without
being planned, and a repair never deletes a file it did not write: damaged files are renamed
aside. Run it with the partition's writers stopped (writers in other processes do not take
the partition lock on their fast path).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from logstore.clock import Clock
from logstore.errors import CorruptRecordError, InvalidArgumentError, StorageError
from logstore.log import doorbell
from logstore.log.check import PartitionCheck, Problem, ProblemKind
from logstore.log.doorbell import LogEndCheckpoint
from logstore.log.partition_state import STATE_FILE, PartitionLock, PartitionState
from logstore.log.producer_state import ProducerEntry
from logstore.log.segment import (
    BatchRow,
    Segment,
    parse_segment_file_name,
    segment_file_name,
    segment_files,
)
from logstore.log.sqlite_file import fsync_dir
from logstore.records.header import parse_header, validate_batch

DAMAGED_MARKER = ".damaged-"


class RepairAction(enum.Enum):
    """How to repair (see the module docstring)."""

    ADOPT = "adopt"
    TRUNCATE = "truncate"


@dataclass(frozen=True, slots=True)
class RepairStep:
    """One planned change."""

    problem: Problem
    description: str
    reuses_offsets: bool = False
    """True when offsets that were handed out before may be handed out again."""


@dataclass(frozen=True, slots=True)
class _Plan:
    kind: str
    offset: int = -1
    end: int = -1


def plan_repair(check: PartitionCheck, action: RepairAction) -> list[RepairStep]:
    """What :func:`apply_repair` would do about each problem of ``check`` (notices such as
    unlisted or stray files need nothing)."""
    steps: list[RepairStep] = []
    truncate_at = _first_damage(check)
    if action is RepairAction.TRUNCATE and truncate_at is not None:
        problem = _first_problem(check)
        upto = "the end" if check.checkpoint is None else f"{check.checkpoint - 1}"
        steps.append(RepairStep(problem, (
            f"truncate {check.topic}-{check.partition} at offset {truncate_at}: remove "
            f"everything from {truncate_at} on; new records start at {truncate_at}, so offsets "
            f"{truncate_at} to {upto} will be handed out again"), reuses_offsets=True))
        return steps
    for problem in check.problems:
        description = _adopt_description(check, problem)
        if description is not None:
            steps.append(RepairStep(problem, description))
    return steps


def _adopt_description(check: PartitionCheck, problem: Problem) -> str | None:
    kind = problem.kind
    if kind is ProblemKind.MISSING_DIRECTORY:
        return (f"lay out {problem.path} afresh, starting at offset {problem.end_offset} "
                f"(offsets 0 to {problem.end_offset - 1} are gone)")
    if kind is ProblemKind.MISSING_STATE:
        return f"rebuild {problem.path} from the segment files found"
    if kind is ProblemKind.FOREIGN_TOPIC_ID:
        return f"adopt {problem.path} into this topic (record its topic id as this topic's)"
    if kind is ProblemKind.MISSING_SEGMENT:
        return (f"mark offsets {problem.start_offset} to {problem.end_offset - 1} as a gap "
                f"(an empty segment in place of {problem.path})")
    if kind is ProblemKind.MISSING_ACTIVE_SEGMENT:
        start = max(problem.start_offset, check.checkpoint or problem.start_offset)
        return (f"create a new active segment at offset {start} in place of {problem.path}"
                + ("" if start == problem.start_offset else
                   f" (offsets {problem.start_offset} to {start - 1} become a gap)"))
    if kind is ProblemKind.LOST_RECORDS:
        return (f"seal {problem.path} where its records stop ({problem.start_offset}) and "
                f"start the next segment at {problem.end_offset}: offsets "
                f"{problem.start_offset} to {problem.end_offset - 1} become a gap")
    if kind in (ProblemKind.CORRUPT_FILE, ProblemKind.BAD_BATCH):
        if problem.path.endswith(STATE_FILE):
            return f"rebuild {problem.path} from the segment files found"
        return (f"rebuild {problem.path} from its readable, valid batches (the damaged ones "
                "become a gap; the original is kept as *.damaged-<ms>)")
    if kind is ProblemKind.GAP:
        return f"mark offsets {problem.start_offset} to {problem.end_offset - 1} as a gap"
    if kind is ProblemKind.OVERLAP:
        return None  # cannot be adopted: only truncation resolves two claims on one offset
    return None


def _first_problem(check: PartitionCheck) -> Problem:
    damage = [p for p in check.problems if p.kind not in _NOTICES]
    return min(damage, key=lambda p: p.start_offset if p.start_offset >= 0 else 0)


def _first_damage(check: PartitionCheck) -> int | None:
    """The last good offset + 1: where a truncation cuts (None if nothing is damaged)."""
    offsets = [p.start_offset if p.start_offset >= 0 else 0
               for p in check.problems if p.kind not in _NOTICES]
    bad = [s.first_bad_offset for s in check.segments if s.first_bad_offset is not None]
    candidates = offsets + bad
    return min(candidates) if candidates else None


_NOTICES = frozenset({ProblemKind.UNLISTED_FILE, ProblemKind.STRAY_FILE})


def apply_repair(
    check: PartitionCheck,
    action: RepairAction,
    *,
    topic_id: str,
    doorbell_path: Path,
    clock: Clock,
) -> list[RepairStep]:
    """Carry out :func:`plan_repair` (the partition must not be open in this process; see the
    module docstring for other processes). Returns the steps taken."""
    steps = plan_repair(check, action)
    if not steps:
        return steps
    if any(s.problem.kind is ProblemKind.OVERLAP for s in steps) or (
            action is RepairAction.ADOPT
            and any(p.kind is ProblemKind.OVERLAP for p in check.problems)):
        raise InvalidArgumentError(
            f"{check.topic}-{check.partition}: segments overlap; only --truncate can repair it")
    directory = Path(check.directory)
    repair = _Repairer(directory, check, topic_id=topic_id, doorbell_path=doorbell_path,
                       clock=clock)
    if action is RepairAction.TRUNCATE:
        cut = _first_damage(check)
        if cut is not None:
            repair.truncate_at(cut)
        return steps
    repair.adopt()
    return steps


class _Repairer:
    """The file changes of a repair (one partition)."""

    def __init__(self, directory: Path, check: PartitionCheck, *, topic_id: str,
                 doorbell_path: Path, clock: Clock) -> None:
        self.directory = directory
        self.check = check
        self.topic_id = topic_id
        self.doorbell_path = doorbell_path
        self.clock = clock

    # --- adopt ---------------------------------------------------------------------------------

    def adopt(self) -> None:
        check = self.check
        kinds = {p.kind for p in check.problems}
        if ProblemKind.MISSING_DIRECTORY in kinds:
            start = check.checkpoint or 0
            self._lay_out(start)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with PartitionLock(self.directory).hold():
            state_damaged = any(
                p.kind is ProblemKind.MISSING_STATE
                or (p.kind is ProblemKind.CORRUPT_FILE and p.path.endswith(STATE_FILE))
                for p in check.problems)
            if state_damaged:
                self._rebuild_state()
            state = PartitionState.open(self.directory)
            try:
                if ProblemKind.FOREIGN_TOPIC_ID in kinds:
                    state.set_segments(state.get().segments, topic_id=self.topic_id)
                for problem in check.problems:
                    self._adopt_one(state, problem)
            finally:
                state.close()

    def _adopt_one(self, state: PartitionState, problem: Problem) -> None:
        kind = problem.kind
        if kind is ProblemKind.MISSING_SEGMENT:
            self._gap_segment(state, problem.start_offset, problem.end_offset)
        elif kind is ProblemKind.MISSING_ACTIVE_SEGMENT:
            base = problem.start_offset
            start = max(base, self.check.checkpoint or base)
            if start > base:
                self._gap_segment(state, base, start)
            self._new_segment(state, start)
        elif kind is ProblemKind.LOST_RECORDS:
            last = self.directory / segment_file_name(state.get().segments[-1])
            self._seal(last, problem.end_offset)
            self._new_segment(state, problem.end_offset)
        elif kind in (ProblemKind.CORRUPT_FILE, ProblemKind.BAD_BATCH):
            if not problem.path.endswith(STATE_FILE):
                self._salvage(state, Path(problem.path))
        elif kind is ProblemKind.GAP:
            base = self._segment_before(state, problem.start_offset)
            path = self.directory / segment_file_name(base)
            segment = Segment.open(path)
            try:
                sealed = segment.state().sealed
            finally:
                segment.close()
            if sealed:
                self._gap_segment(state, problem.start_offset, problem.end_offset)
            else:
                self._seal(path, problem.end_offset)

    def _segment_before(self, state: PartitionState, offset: int) -> int:
        return max(b for b in state.get().segments if b < offset)

    def _gap_segment(self, state: PartitionState, start: int, end: int) -> None:
        """An empty sealed segment covering [start, end): readers skip to ``end``."""
        path = self.directory / segment_file_name(start)
        _move_aside(path, self.clock)
        Segment.create(self.directory, start, created_ms=self.clock.time_ms(),
                       producers=self._producers_before(state, start))
        self._seal(path, end)
        state.add_segment(start)

    def _new_segment(self, state: PartitionState, base: int) -> None:
        path = self.directory / segment_file_name(base)
        _move_aside(path, self.clock)
        Segment.create(self.directory, base, created_ms=self.clock.time_ms(),
                       producers=self._producers_before(state, base))
        state.add_segment(base)
        self._write_checkpoint(max(base, self.check.checkpoint or base))

    def _seal(self, path: Path, next_offset: int) -> None:
        segment = Segment.open(path)
        try:
            with segment.write_transaction():
                segment.seal(next_offset)
            segment.checkpoint()
        finally:
            segment.close()

    def _producers_before(self, state: PartitionState, offset: int) -> list[ProducerEntry]:
        """The producer states of the readable segment before ``offset`` (best effort: lost
        states make those producers start again, as after expiry)."""
        for base in sorted((b for b in state.get().segments if b < offset), reverse=True):
            try:
                segment = Segment.open(self.directory / segment_file_name(base))
            except (FileNotFoundError, StorageError):
                continue
            try:
                with segment.read_transaction():
                    return list(segment.producers().values())
            except StorageError:
                pass  # unreadable: try the segment before it
            finally:
                segment.close()
        return []

    def _salvage(self, state: PartitionState, path: Path) -> None:
        """Rebuild a damaged segment from its readable, valid batches."""
        base = parse_segment_file_name(path.name)
        if base is None:
            return
        listed = sorted(state.get().segments)
        following = [b for b in listed if b > base]
        rows, summary_next, sealed, producers = _readable(path)
        if sealed or following:
            next_offset = following[0] if following else summary_next
        else:
            next_offset = None
        tmp = self.directory / f".{path.name}.salvage"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        tmp.mkdir()
        try:
            Segment.create(tmp, base, created_ms=self.clock.time_ms(), producers=producers)
            rebuilt = Segment.open(tmp / segment_file_name(base))
            try:
                with rebuilt.write_transaction():
                    rebuilt.insert_rows(rows)
                    if next_offset is not None:
                        rebuilt.set_summary(next_offset=next_offset)
                        rebuilt.seal(next_offset)
                    else:
                        rebuilt.set_summary(next_offset=-1)
                        rebuilt.unseal()
                rebuilt.checkpoint()
            finally:
                rebuilt.close()
            _move_aside(path, self.clock)
            (tmp / segment_file_name(base)).rename(path)
            fsync_dir(self.directory)
        finally:
            for leftover in tmp.iterdir():
                leftover.unlink()
            tmp.rmdir()

    def _rebuild_state(self) -> None:
        state_path = self.directory / STATE_FILE
        _move_aside(state_path, self.clock)
        files = segment_files(self.directory)
        if not files:
            start = self.check.checkpoint or 0
            Segment.create(self.directory, start, created_ms=self.clock.time_ms())
            files = [start]
        PartitionState.create(self.directory, topic_id=self.topic_id,
                              log_start_offset=files[0], segments=files)

    def _lay_out(self, start: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        Segment.create(self.directory, start, created_ms=self.clock.time_ms())
        PartitionState.create(self.directory, topic_id=self.topic_id, log_start_offset=start,
                              segments=[start])
        self._write_checkpoint(start)

    def _write_checkpoint(self, log_end: int) -> None:
        state = PartitionState.open(self.directory)
        try:
            truncations = state.get().truncations
        finally:
            state.close()
        doorbell.create(self.doorbell_path, LogEndCheckpoint(self.topic_id, log_end, truncations))

    # --- truncate ------------------------------------------------------------------------------

    def truncate_at(self, offset: int) -> None:
        """Remove every segment from ``offset`` on and cut the one holding it; lay out the
        partition afresh if nothing usable is left (files are renamed aside, not deleted)."""
        check = self.check
        if not (self.directory / STATE_FILE).exists() or any(
                p.kind in (ProblemKind.MISSING_DIRECTORY, ProblemKind.MISSING_STATE)
                for p in check.problems):
            if (self.directory / STATE_FILE).exists():
                _move_aside(self.directory / STATE_FILE, self.clock)
            for base in check.listed or segment_files(self.directory):
                _move_aside(self.directory / segment_file_name(base), self.clock)
            self._lay_out(offset)
            return
        with PartitionLock(self.directory).hold():
            state = PartitionState.open(self.directory)
            try:
                listed = list(state.get().segments)
                keep = [b for b in listed if b < offset]
                doomed = [b for b in listed if b not in keep]
                state.remove_segments(doomed)
                for base in doomed:
                    _move_aside(self.directory / segment_file_name(base), self.clock)
                if keep:
                    last = self.directory / segment_file_name(keep[-1])
                    segment = Segment.open(last)
                    try:
                        with segment.write_transaction():
                            cut = segment.batch_containing(offset)
                            cut_at = offset if cut is None else min(cut[0], offset)
                            segment.truncate_from(cut_at)
                        end = segment.state().log_end_offset
                    finally:
                        segment.close()
                    self._new_segment_after_cut(state, last, end)
                else:
                    Segment.create(self.directory, offset, created_ms=self.clock.time_ms())
                    state.add_segment(offset)
                    state.advance_log_start(offset)
                    end = offset
                state.begin_truncation(end)
                state.finish_truncation()
                truncations = state.get().truncations
            finally:
                state.close()
        doorbell.create(self.doorbell_path, LogEndCheckpoint(self.topic_id, end, truncations))

    def _new_segment_after_cut(self, state: PartitionState, last: Path, end: int) -> None:
        """The cut segment becomes the active one again."""
        segment = Segment.open(last)
        try:
            with segment.write_transaction():
                segment.unseal()
        finally:
            segment.close()


def _readable(path: Path) -> tuple[list[BatchRow], int, bool, list[ProducerEntry]]:
    """The valid batches that can still be read from a damaged segment, its next offset, its
    sealed flag and its producer state (each as far as readable)."""
    rows: list[BatchRow] = []
    next_offset, sealed, producers = -1, False, []
    try:
        segment = Segment.open(path)
    except (FileNotFoundError, StorageError):
        return rows, next_offset, sealed, producers
    try:
        try:
            state = segment.state()
            sealed = state.sealed
            next_offset = state.next_offset if state.next_offset is not None else -1
        except StorageError:
            pass
        try:
            with segment.read_transaction():
                producers = list(segment.producers().values())
        except StorageError:
            producers = []
        last_seen = -1
        while True:
            try:
                with segment.read_transaction():
                    chunk = segment.rows_after(last_seen, 64)
            except StorageError:
                break  # the rest of the file cannot be read: it becomes a gap
            if not chunk:
                break
            for row_base, data in chunk:
                last_seen = row_base
                try:
                    header = validate_batch(data)
                except CorruptRecordError:
                    header = None  # a damaged batch is dropped: its offsets become a gap
                if header is None or header.base_offset != row_base:
                    continue
                rows.append(BatchRow(row_base, header.last_offset, header.max_timestamp,
                                     header.record_count, header.producer_id,
                                     parse_header(data).attributes, data))
    finally:
        segment.close()
    return rows, next_offset, sealed, producers


def _move_aside(path: Path, clock: Clock) -> None:
    """Rename a file (and its -wal/-shm) out of the way: repairs never delete."""
    suffix = f"{DAMAGED_MARKER}{clock.time_ms()}"
    for part in ("", "-wal", "-shm"):
        source = Path(f"{path}{part}")
        if source.exists():
            source.rename(Path(f"{path}{suffix}{part}"))
