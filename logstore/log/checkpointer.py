"""WAL checkpoints off the append path.

SQLite's automatic checkpoint runs inside the commit that pushes the WAL past
``wal_autocheckpoint`` pages: that append copies the WAL into the database file and fsyncs it
before it returns, a few milliseconds added to one acknowledgement in every few hundred. A
segment's writer connection instead hands the work to the process's :class:`Checkpointer`
(:meth:`~logstore.log.segment.Segment.checkpoint_in_background`): its WAL hook, which SQLite
calls after every commit, asks for a checkpoint once the WAL holds ``pages`` pages, and a
thread of the checkpointer runs a PASSIVE checkpoint on a short-lived connection of its own,
while appends go on (a PASSIVE checkpoint never blocks writers or readers).

Durability is unchanged: a commit is durable once its WAL frames are synced, whoever copies
them later. A checkpoint that cannot run (the file was deleted or replaced meanwhile, another
process is checkpointing it, readers hold old frames) is skipped; the next commit past the
threshold asks again.

The thread starts on the first request and ends after ``idle_exit_s`` without one, so an idle
process keeps no thread. Thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import apsw

from logstore.errors import LogstoreError
from logstore.log.sqlite_file import open_connection, set_persist_wal

_log = logging.getLogger("logstore")

#: WAL pages (4 KiB) after which a commit asks for a checkpoint: 1 MiB. SQLite's own default
#: is 1,000; smaller checkpoints make smaller stalls for the appends' fsyncs, which share the
#: disk (and, on ext4, the journal commit) with the checkpoint's writes: broker ack p99 at
#: 200,000 records/s, `python -m bench.broker_latency`, two runs each: 100 pages 9.2 / 8.8 ms,
#: 250: 9.6 / 8.8, 1,000: 10.8 / 12.2, 4,000: 13.6 / 17.3.
DEFAULT_CHECKPOINT_PAGES = 256
IDLE_EXIT_S = 10.0


class Checkpointer:
    """Runs requested WAL checkpoints on a background thread (see the module docstring)."""

    def __init__(self, *, idle_exit_s: float = IDLE_EXIT_S) -> None:
        self._idle_exit_s = idle_exit_s
        self._cond = threading.Condition()
        self._pending: dict[Path, None] = {}  # an ordered set: oldest request first
        self._running: Path | None = None
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # checkpoints run (for tests and metrics)

    def request(self, path: Path) -> None:
        """Ask for a checkpoint of the SQLite file ``path`` (a no-op if one is pending).
        Cheap: called from SQLite's WAL hook, inside a commit."""
        with self._cond:
            if path in self._pending:
                return
            self._pending[path] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="logstore-checkpointer",
                                                daemon=True)
                self._thread.start()
            else:
                self._cond.notify()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no checkpoint is pending or running; True if that happened in time."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and self._running is None,
                                       timeout_s)

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        with self._cond:
            return self._thread is not None

    def _run(self) -> None:
        while True:
            with self._cond:
                self._running = None
                self._cond.notify_all()
                if not self._cond.wait_for(lambda: self._pending, self._idle_exit_s):
                    self._thread = None
                    return
                path = next(iter(self._pending))
                del self._pending[path]
                self._running = path
            checkpoint(path)
            self.checkpoints += 1


def checkpoint(path: Path) -> None:
    """A PASSIVE checkpoint of ``path`` on a connection of its own; failures are skipped."""
    try:
        conn = open_connection(path, what="segment")
    except FileNotFoundError:
        return  # deleted meanwhile (retention, truncation, a topic deleted)
    except LogstoreError as exc:
        _log.debug("checkpoint of %s skipped: %s", path, exc)
        return
    try:
        set_persist_wal(conn)
        conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
        # A new connection learns that the file is in WAL mode from its header, on its first
        # read; until then a checkpoint does nothing.
        conn.execute("PRAGMA application_id").get  # noqa: B018 - read for its side effect
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
    except apsw.Error as exc:
        _log.debug("checkpoint of %s skipped: %s", path, exc)
    finally:
        conn.close()


_process_checkpointers: dict[int, Checkpointer] = {}  # by process id: a forked child starts afresh
_process_checkpointers_lock = threading.Lock()


def process_checkpointer() -> Checkpointer:
    """The checkpointer shared by every log of this process."""
    pid = os.getpid()
    with _process_checkpointers_lock:
        found = _process_checkpointers.get(pid)
        if found is None:
            _process_checkpointers.clear()
            found = _process_checkpointers[pid] = Checkpointer()
        return found
