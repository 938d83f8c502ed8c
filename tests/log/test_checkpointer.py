"""WAL checkpoints off the append path (``log/checkpointer.py``): a committing append never
folds the WAL in itself; it asks the checkpointer, whose thread does it and then goes away."""

from __future__ import annotations

import threading
from pathlib import Path

from logstore.log.checkpointer import DEFAULT_CHECKPOINT_PAGES, Checkpointer
from logstore.log.segment_format import segment_file_name
from tests.conftest import make_batch

VALUE = b"v" * 60_000
#: Enough batches to pass the checkpoint threshold (pages of 4 KiB) about one and a half times.
BATCHES = DEFAULT_CHECKPOINT_PAGES * 4096 * 3 // 2 // len(VALUE)


class Recorder:
    """A checkpointer that only records what it was asked."""

    def __init__(self) -> None:
        self.requested: list[Path] = []
        self._lock = threading.Lock()

    def request(self, path: Path) -> None:
        with self._lock:
            self.requested.append(path)


def _wal_bytes(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size


def test_appends_ask_for_checkpoints_instead_of_running_them(partitions) -> None:
    recorder = Recorder()
    log = partitions.open(checkpointer=recorder)
    for _ in range(BATCHES):
        log.append(make_batch([VALUE]))
    segment = partitions.directory / segment_file_name(0)
    assert recorder.requested and set(recorder.requested) == {segment}
    # SQLite's own automatic checkpoint would have restarted the WAL at the threshold.
    assert _wal_bytes(segment) > DEFAULT_CHECKPOINT_PAGES * 4096


def test_the_checkpointer_folds_the_wal_in_on_its_own_thread(partitions) -> None:
    checkpointer = Checkpointer(idle_exit_s=0.05)
    log = partitions.open(checkpointer=checkpointer)
    segment = partitions.directory / segment_file_name(0)
    for _ in range(BATCHES):
        log.append(make_batch([VALUE]))
    assert checkpointer.wait_idle(30)
    assert checkpointer.checkpoints >= 1
    assert segment.stat().st_size > DEFAULT_CHECKPOINT_PAGES * 4096  # the data is in the file
    before = _wal_bytes(segment)
    log.append(make_batch([b"after"]))  # every frame was copied: the WAL starts over
    assert _wal_bytes(segment) == before
    assert log.read(0, max_bytes=1 << 30).records.count(VALUE[:100]) >= BATCHES
    thread_gone = threading.Event()
    for _ in range(600):  # the idle thread ends by itself (bounded wait)
        if not checkpointer.running:
            thread_gone.set()
            break
        thread_gone.wait(0.05)
    assert thread_gone.is_set()


def test_a_vanished_file_is_skipped(tmp_path: Path) -> None:
    checkpointer = Checkpointer(idle_exit_s=0.05)
    checkpointer.request(tmp_path / "gone.sqlite")
    assert checkpointer.wait_idle(30) and checkpointer.checkpoints == 1
