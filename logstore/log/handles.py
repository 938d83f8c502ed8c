"""A budget of open files for the storage engine: connections close in LRU order.

Every open partition costs file descriptors: its ``partition.sqlite`` connection (the database,
its ``-wal`` and ``-shm``: three), the active segment's writer (three more), readers of sealed
segments (two or three each) and the doorbell (one). At the usual ``ulimit -n`` of 1024 that
used to run out at about 145 partitions. Instead, every such handle registers here with its
cost; when the total would pass the budget, the least recently used idle handles are closed.
Their owners reopen them on the next use (about 75 us for a SQLite connection), so a process
can serve any number of partitions with a bounded number of descriptors and bounded memory.

The budget is soft: a handle that is in use (its owner's lock is held) is skipped, and when
nothing can be closed the new handle opens anyway. The process-wide default
(:func:`process_budget`) takes three quarters of the soft ``RLIMIT_NOFILE``, leaving the rest
to sockets, the metadata store, temporary files and the application; ``logstore.open(...,
max_open_files=N)`` gives a log a budget of its own.

Thread-safe. Eviction calls :meth:`Handle.try_close_idle` without holding the budget's lock, so
a handle may take its own locks there (it must not block: ``acquire(blocking=False)``).
"""

from __future__ import annotations

import os
import resource
import threading
from collections import OrderedDict
from typing import Protocol

#: File descriptors a SQLite connection in WAL mode holds (database, -wal, -shm).
SQLITE_CONNECTION_FILES = 3
#: The smallest budget (fewer would thrash even a single partition).
MIN_OPEN_FILES = 16


class Handle(Protocol):
    """Something that holds file descriptors and can give them back when idle."""

    def try_close_idle(self) -> bool:
        """Close now if nobody is using it (never block); True if closed."""
        ...


class FileBudget:
    """At most ``max_open_files`` descriptors held by registered handles, closed LRU first."""

    def __init__(self, max_open_files: int) -> None:
        self.max_open_files = max(MIN_OPEN_FILES, int(max_open_files))
        self._lock = threading.Lock()
        self._handles: OrderedDict[int, tuple[Handle, int]] = OrderedDict()
        self._open_files = 0
        self.evictions = 0
        """Handles closed to stay within the budget (a counter for tests and metrics)."""

    def __repr__(self) -> str:
        return f"FileBudget({self._open_files}/{self.max_open_files} files)"

    @property
    def open_files(self) -> int:
        """Descriptors the registered handles hold now (by their declared costs)."""
        return self._open_files

    def opened(self, handle: Handle, cost: int) -> None:
        """Register a handle that just opened ``cost`` descriptors; close idle ones as needed."""
        with self._lock:
            previous = self._handles.pop(id(handle), None)
            if previous is not None:
                self._open_files -= previous[1]
            self._handles[id(handle)] = (handle, cost)
            self._open_files += cost
            excess = self._open_files - self.max_open_files
            if excess <= 0:
                return
            # The least recently used handles, enough to cover the excess twice over (some
            # may be busy), oldest first.
            candidates: list[Handle] = []
            covered = 0
            for key, (other, other_cost) in self._handles.items():
                if key == id(handle):
                    continue
                candidates.append(other)
                covered += other_cost
                if covered >= 2 * excess + 8:
                    break
        for candidate in candidates:
            if self._open_files <= self.max_open_files:
                break
            if candidate.try_close_idle():
                self.evictions += 1

    def used(self, handle: Handle) -> None:
        """Mark a handle as just used (it moves to the end of the eviction order)."""
        key = id(handle)
        with self._lock:
            if key in self._handles:
                self._handles.move_to_end(key)

    def closed(self, handle: Handle) -> None:
        """Forget a handle that closed (by its owner or by eviction). Idempotent."""
        with self._lock:
            entry = self._handles.pop(id(handle), None)
            if entry is not None:
                self._open_files -= entry[1]


_process_budgets: dict[int, FileBudget] = {}  # by process id: a forked child starts afresh
_process_budgets_lock = threading.Lock()


def default_max_open_files() -> int:
    """Three quarters of the soft ``RLIMIT_NOFILE`` (at least :data:`MIN_OPEN_FILES`)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 1 << 20
    return max(MIN_OPEN_FILES, soft * 3 // 4)


def process_budget() -> FileBudget:
    """The budget shared by every log of this process that was not given one of its own."""
    pid = os.getpid()
    with _process_budgets_lock:
        budget = _process_budgets.get(pid)
        if budget is None:
            _process_budgets.clear()
            budget = _process_budgets[pid] = FileBudget(default_max_open_files())
        return budget
