"""A cleaner that dies in the middle of a merge: the merge intent in ``partition.sqlite`` lets
the next process finish (commit happened: unlink the merged files) or forget it (it did not).
The kill -9 loop in tests/fault/test_compaction_processes.py hits these windows at random;
here each one is hit on purpose."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

import logstore
from logstore.log.partition_state import PartitionState
from logstore.log.segment import Segment
from logstore.log.segment_set import SegmentSet


class Crash(Exception):
    """Stands in for the process dying at that point."""


def fill(log: logstore.Log, kit) -> list:
    for i in range(6):
        kit.write(log, [(b"k%d" % (j % 4), b"s%d-%d" % (i, j)) for j in range(8)])
        kit.roll(log)
    return kit.stored(log)


def files(log: logstore.Log) -> list[str]:
    directory = Path(log.partition_log("c", 0).directory)
    return sorted(p.name for p in directory.glob("*.sqlite") if p.name[0].isdigit())


def reopen(log: logstore.Log) -> logstore.Log:
    path, url, clock = log.path, log.metadata_url, log.clock
    log.close()
    return logstore.open(path, metadata_url=url, clock=clock, maintenance_interval_ms=None)


@pytest.mark.parametrize("where", [
    (PartitionState, "finish_rewrite"),  # committed; the intent is still recorded
    (SegmentSet, "remove_files"),  # committed and unlisted; the files are still there
], ids=["before-unlisting", "before-unlinking"])
def test_death_after_the_commit_and_before_the_unlinks(clog, kit, monkeypatch, where):
    before = fill(clog, kit)
    segments_before = files(clog)

    def crash(self: object, *args: object, **kwargs: object) -> None:
        raise Crash

    monkeypatch.setattr(*where, crash)
    with pytest.raises(Crash):
        clog.compact()
    monkeypatch.undo()
    assert files(clog) == segments_before  # merged files still there, next to their target
    log = reopen(clog)  # opening finishes: the target covers them, so they go
    try:
        assert len(files(log)) < len(segments_before)
        layout = log.partition_log("c", 0).layout()
        for segment, following in pairwise(layout.segments):
            assert segment.next_offset == following.base_offset
        assert kit.latest(kit.stored(log)) == kit.latest(before)
        assert log.compact(force=True).partitions[0].status.value == "cleaned"
        assert kit.latest(kit.stored(log)) == kit.latest(before)
    finally:
        log.close()


def test_death_before_the_commit_forgets_the_merge(clog, kit, monkeypatch):
    before = fill(clog, kit)
    segments_before = files(clog)
    real_commit = Segment.commit
    calls = []

    def crash(self: Segment) -> None:
        calls.append(self.base_offset)
        raise Crash

    monkeypatch.setattr(Segment, "commit", crash)
    with pytest.raises(Crash):
        clog.compact()
    monkeypatch.setattr(Segment, "commit", real_commit)
    assert calls, "the rewrite never reached its commit"
    assert files(clog) == segments_before
    assert kit.stored(clog) == before  # rolled back: nothing changed
    log = reopen(clog)
    try:
        assert files(log) == segments_before
        assert kit.stored(log) == before
        assert log.compact().partitions[0].status.value == "cleaned"
        assert kit.latest(kit.stored(log)) == kit.latest(before)
    finally:
        log.close()
