"""Opening a partition: finish what crashes left half done, and check that nothing is missing.

Run once per process when a :class:`~logstore.log.partition_log.PartitionLog` opens, under the
partition lock:

1. remove temporary files of dead processes (interrupted segment creations);
2. finish a recorded truncation and resolve a recorded cleaner merge;
3. reconcile the segment list (``partition_state``) with the directory:

   * a list that is not authoritative yet (a partition laid out by an earlier version, or a
     layout that was interrupted) is taken from the directory, once; an empty directory gets
     its first segment at the log start offset;
   * an unlisted segment file below the last listed segment is what an interrupted deletion
     (retention, a merge, a truncation) left behind: it is removed;
   * an unlisted file that continues the chain after the last listed segment (which is sealed
     and names it as its successor) is a roll that crashed before listing it: it is listed;
   * any other unlisted file above the last listed segment is foreign (not written by this
     partition's history as recorded): it is renamed aside (``*.stray-<ms>``), never used and
     never deleted, and reported by ``logstore check``;

4. refuse to open (:class:`~logstore.errors.PartitionOfflineError`, naming the file) when the
   active segment is missing, or when the log end is below the log-end checkpoint the doorbell
   recorded (committed records were lost, e.g. the active segment's ``-wal`` was deleted after a
   crash): appending would hand those offsets out a second time;
5. unlink segments wholly below the log start offset (a crash between moving the log start and
   unlinking leaves them).

A listed segment that is missing in the *middle* does not stop the open: it is a hole, reported
when read (:class:`~logstore.errors.MissingSegmentError`), by ``describe`` and by ``logstore
check``; the rest of the partition keeps serving.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from logstore.clock import Clock
from logstore.errors import PartitionOfflineError
from logstore.log.cleanup import Truncation
from logstore.log.doorbell import LogEndCheckpoint
from logstore.log.partition_state import PartitionState
from logstore.log.rewrite import SegmentRewriter
from logstore.log.segment import Segment, segment_files
from logstore.log.segment_set import SegmentSet
from logstore.log.sqlite_file import TEMP_MARKER

_log = logging.getLogger("logstore.log")

STRAY_MARKER = ".stray-"


def recover(
    segments: SegmentSet,
    *,
    truncation: Truncation,
    rewriter: SegmentRewriter,
    clock: Clock,
    checkpoint: LogEndCheckpoint | None,
) -> int:
    """Make the partition consistent and check it (see the module docstring); return its log
    end offset. Raises PartitionOfflineError when it must not serve."""
    with segments.lock.hold():
        _remove_stale_temp_files(segments)
        pending = segments.state.get().truncating_to
        if pending is not None:
            truncation.finish_locked(pending)
        rewriter.resolve_merge_intent_locked()
        _reconcile(segments, clock)
        log_end = _check_log_end(segments, checkpoint)
        segments.delete_below(segments.state.get().log_start_offset)
        return log_end


def _reconcile(segments: SegmentSet, clock: Clock) -> None:
    state = segments.state
    row = state.get()
    files = segments.files()
    if not row.segments_listed:
        adopt_segment_files(segments.directory, state, created_ms=clock.time_ms())
        return
    listed = list(row.segments)
    if not listed:
        raise PartitionOfflineError(
            f"{segments} is offline: {state.path} lists no segments "
            f"({len(files)} segment files are in {segments.directory}; see 'logstore check')",
            path=str(state.path))
    known = set(listed)
    above: list[int] = []
    for base in files:
        if base in known:
            continue
        if base < listed[-1]:
            segments.remove_files(base)  # left by an interrupted deletion or merge
        else:
            above.append(base)
    while True:
        last = listed[-1]
        if not segments.path(last).exists():
            raise segments.missing_error(last)
        successor = _sealed_successor(segments, last)
        if successor is None or successor not in above:
            break
        state.add_segment(successor)  # a roll that crashed before listing its successor
        listed.append(successor)
        above.remove(successor)
    for base in above:
        _move_aside(segments, base, clock)


def adopt_segment_files(directory: Path, state: PartitionState, *, created_ms: int) -> None:
    """Make the segment files in ``directory`` the authoritative list (a partition laid out
    by an earlier version, or a layout that was interrupted), creating the first segment at
    the log start offset if there is none. The caller holds the partition lock."""
    files = segment_files(directory)
    if not files:
        start = state.get().log_start_offset
        Segment.create(directory, start, created_ms=created_ms)
        files = [start]
    state.set_segments(files)


def _sealed_successor(segments: SegmentSet, base: int) -> int | None:
    segment = segments.open_own(base)
    try:
        summary = segment.state()
    finally:
        segment.close()
    if summary.sealed and summary.next_offset is not None and summary.next_offset >= 0:
        return summary.next_offset
    return None


def _move_aside(segments: SegmentSet, base: int, clock: Clock) -> None:
    """Rename a foreign segment file (and its -wal/-shm) out of the segment name space."""
    path = segments.path(base)
    suffix = f"{STRAY_MARKER}{clock.time_ms()}"
    for part in ("", "-wal", "-shm"):
        source = path.with_name(path.name + part)
        if source.exists():
            source.rename(path.with_name(path.name + suffix + part))
    _log.warning("%s: segment file %s is not in the partition's segment list and does not "
                 "continue it; moved aside as %s%s", segments, path, path.name, suffix)


def _check_log_end(segments: SegmentSet, checkpoint: LogEndCheckpoint | None) -> int:
    """The log end offset, checked against the doorbell's checkpoint."""
    row = segments.state.get()
    last = segments.last_base()
    segment = segments.open_own(last)
    try:
        log_end = segment.state().log_end_offset
    finally:
        segment.close()
    if (checkpoint is None or checkpoint.topic_id != row.topic_id
            or checkpoint.truncations != row.truncations):
        return log_end
    if log_end < checkpoint.log_end_offset:
        path = segments.path(last)
        raise PartitionOfflineError(
            f"{segments} is offline: committed records were lost: its log ends at {log_end} but "
            f"offsets up to {checkpoint.log_end_offset - 1} were written (segment {path} or its "
            "-wal file was replaced or deleted); new records would reuse those offsets. Run "
            "'logstore check', then 'logstore repair'", path=str(path))
    return log_end


def _remove_stale_temp_files(segments: SegmentSet) -> None:
    directory = segments.directory
    for name in os.listdir(directory):
        if TEMP_MARKER not in name or not name.startswith("."):
            continue
        pid_text = name.rsplit(TEMP_MARKER, 1)[1].split("-", 1)[0]
        if pid_text.isdigit() and _process_alive(int(pid_text)):
            continue
        (directory / name).unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
