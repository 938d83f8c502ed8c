"""Wake-ups for readers waiting for new records, from this process or from others.

Appends in this process call :meth:`AppendNotifier.notify` after they commit. Appends by other
processes sharing the data directory are seen through Linux inotify: after every commit the
appender rewrites the partition's doorbell file (``<data>/doorbells/<topic>-<partition>``, see
``doorbell``). The notifier watches the doorbells' *directory* (one inotify watch per
directory, however many partitions are watched: the kernel's ``max_user_watches`` is never the
limit) and keeps the events whose file name is a watched doorbell. A daemon thread reads the
inotify descriptor and bumps the same sequence number, so a waiting consumer sleeps in
``Condition.wait`` and wakes within a fraction of a millisecond. (Watching the segment's
``-wal`` file instead would wake readers before the commit is visible to them.)

Where inotify is unavailable (not Linux, or the watch limit is exhausted) waits are cut into
slices of ``fallback_poll_ms`` so other processes' appends are still seen, just later.

Thread-safe.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

_IN_MODIFY = 0x00000002
_IN_Q_OVERFLOW = 0x00004000
#: struct inotify_event: wd, mask, cookie, len, then ``len`` bytes of NUL-padded name.
_EVENT = struct.Struct("iIII")
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC


def _load_libc() -> ctypes.CDLL | None:
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


@dataclass
class _DirectoryWatch:
    """One inotify watch on a doorbells directory and the doorbell names wanted in it."""

    wd: int
    names: dict[str, int] = field(default_factory=dict)  # name -> watchers


class AppendNotifier:
    """A sequence number that moves whenever a watched partition may have new data."""

    def __init__(self, *, fallback_poll_ms: float = 20.0, use_inotify: bool = True) -> None:
        self._cond = threading.Condition()
        self._sequence = 0
        self._fallback_poll_s = fallback_poll_ms / 1000.0
        self._libc = _load_libc() if use_inotify else None
        self._inotify_fd = -1
        self._watches: dict[str, _DirectoryWatch] = {}  # by directory
        self._names_by_wd: dict[int, dict[str, int]] = {}
        self._polling = False  # a watch could not be added: waits are cut into slices
        self._rings: dict[str, int] = {}  # doorbell file name -> times rung
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def cross_process(self) -> bool:
        """True when other processes' appends wake waiters immediately (inotify works)."""
        return self._inotify_fd >= 0

    def sequence(self) -> int:
        with self._cond:
            return self._sequence

    def notify(self, doorbell: str | None = None) -> None:
        """Signal that new data may be readable (in the partition whose doorbell file is named
        ``doorbell``, if given: its ring count moves too)."""
        with self._cond:
            self._sequence += 1
            if doorbell is not None:
                self._rings[doorbell] = self._rings.get(doorbell, 0) + 1
            self._cond.notify_all()

    def rings(self, doorbell: str) -> int | None:
        """How often the partition whose doorbell file is named ``doorbell`` was rung (by this
        process's appends, or seen ringing through inotify). A reader that found nothing new
        may skip the partition while this stays the same. None when rings can be missed (no
        inotify: other processes' appends are only seen by polling)."""
        with self._cond:
            if self._inotify_fd < 0 or self._polling:
                return None
            return self._rings.get(doorbell, 0)

    def wait(self, sequence: int, timeout_s: float) -> bool:
        """Wait until the sequence moves past ``sequence`` or ``timeout_s`` passes.

        Returns True if it moved. Without inotify the wait lasts at most ``fallback_poll_ms``
        (and returns True so the caller looks again for other processes' data).
        """
        if timeout_s <= 0:
            return self.sequence() != sequence
        polling = self._inotify_fd < 0 or self._polling
        if polling:
            timeout_s = min(timeout_s, self._fallback_poll_s)
        with self._cond:
            if self._sequence == sequence:
                self._cond.wait(timeout_s)
            return self._sequence != sequence or polling

    # --- inotify ---------------------------------------------------------------------------

    def watch(self, doorbell: Path) -> None:
        """Also wake waiters when another process rings this doorbell file (appends)."""
        if self._libc is None or self._closed:
            return
        directory, name = str(doorbell.parent), doorbell.name
        with self._cond:
            entry = self._watches.get(directory)
            if entry is None:
                if not self._ensure_inotify():
                    return
                wd = self._libc.inotify_add_watch(self._inotify_fd, directory.encode(),
                                                  _IN_MODIFY)
                if wd < 0:
                    # Out of watches or the directory vanished: waiters fall back to polling.
                    self._polling = True
                    return
                entry = self._watches[directory] = _DirectoryWatch(wd)
                self._names_by_wd[wd] = entry.names
            entry.names[name] = entry.names.get(name, 0) + 1

    def unwatch(self, doorbell: Path) -> None:
        directory, name = str(doorbell.parent), doorbell.name
        with self._cond:
            entry = self._watches.get(directory)
            if entry is None or name not in entry.names:
                return
            entry.names[name] -= 1
            if entry.names[name] <= 0:
                del entry.names[name]
            if entry.names:
                return
            del self._watches[directory]
            self._names_by_wd.pop(entry.wd, None)
            if self._libc is not None and self._inotify_fd >= 0:
                self._libc.inotify_rm_watch(self._inotify_fd, entry.wd)

    def _ensure_inotify(self) -> bool:
        if self._inotify_fd >= 0:
            return True
        assert self._libc is not None
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            self._libc = None
            return False
        self._inotify_fd = fd
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(
            target=self._run, name="logstore-inotify", daemon=True
        )
        self._thread.start()
        return True

    def _run(self) -> None:
        fd, wake = self._inotify_fd, self._wake_r
        while True:
            try:
                ready, _, _ = select.select([fd, wake], [], [])
            except (OSError, ValueError):
                return
            if wake in ready:
                return
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            if data and self._count_rings(data):
                with self._cond:
                    self._sequence += 1
                    self._cond.notify_all()

    def _count_rings(self, data: bytes) -> bool:
        """Count the rings of watched doorbells in ``data`` (inotify events); True if any (an
        overflowed event queue counts as a ring of every watched doorbell)."""
        offset = 0
        rang = False
        with self._cond:
            while offset + _EVENT.size <= len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size:offset + _EVENT.size + length]
                offset += _EVENT.size + length
                if mask & _IN_Q_OVERFLOW:
                    for names in self._names_by_wd.values():
                        for name in names:
                            self._rings[name] = self._rings.get(name, 0) + 1
                    return True
                names = self._names_by_wd.get(wd)
                name = raw.rstrip(b"\0").decode(errors="replace")
                if names is not None and name in names:
                    self._rings[name] = self._rings.get(name, 0) + 1
                    rang = True
        return rang

    def close(self) -> None:
        """Stop the inotify thread and release descriptors. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            os.write(self._wake_w, b"x")
            thread.join(timeout=5)
        for fd in (self._inotify_fd, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._inotify_fd = self._wake_r = self._wake_w = -1
        self._watches.clear()
        self._names_by_wd.clear()
        self.notify()
