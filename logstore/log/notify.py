"""Wake-ups for readers waiting for new records, from this process or from others.

Appends in this process call :meth:`AppendNotifier.notify` after they commit. Appends by other
processes sharing the data directory are seen through Linux inotify: after every commit the
appender rewrites one byte of the partition's doorbell file (``.notify``), and a watch on that
file reports it. A daemon thread reads the inotify descriptor and bumps the same sequence
number, so a waiting consumer sleeps in ``Condition.wait`` and wakes within a fraction of a
millisecond. (Watching the segment's ``-wal`` file instead would wake readers before the commit
is visible to them.)

Where inotify is unavailable (not Linux, or the watch limit is exhausted) waits are cut into
slices of ``fallback_poll_ms`` so other processes' appends are still seen, just later.

Thread-safe.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import threading
from pathlib import Path

_IN_MODIFY = 0x00000002
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


class AppendNotifier:
    """A sequence number that moves whenever a watched partition may have new data."""

    def __init__(self, *, fallback_poll_ms: float = 20.0, use_inotify: bool = True) -> None:
        self._cond = threading.Condition()
        self._sequence = 0
        self._fallback_poll_s = fallback_poll_ms / 1000.0
        self._libc = _load_libc() if use_inotify else None
        self._inotify_fd = -1
        self._watches: dict[str, tuple[int, int]] = {}  # path -> (watch descriptor, refcount)
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

    def notify(self) -> None:
        """Signal that new data may be readable."""
        with self._cond:
            self._sequence += 1
            self._cond.notify_all()

    def wait(self, sequence: int, timeout_s: float) -> bool:
        """Wait until the sequence moves past ``sequence`` or ``timeout_s`` passes.

        Returns True if it moved. Without inotify the wait lasts at most ``fallback_poll_ms``
        (and returns True so the caller looks again for other processes' data).
        """
        if timeout_s <= 0:
            return self.sequence() != sequence
        polling = self._inotify_fd < 0
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
        key = str(doorbell)
        with self._cond:
            if key in self._watches:
                wd, refs = self._watches[key]
                self._watches[key] = (wd, refs + 1)
                return
            if not self._ensure_inotify():
                return
            wd = self._libc.inotify_add_watch(self._inotify_fd, key.encode(), _IN_MODIFY)
            if wd < 0:
                # Out of watches or the file vanished: this partition falls back to polling.
                return
            self._watches[key] = (wd, 1)

    def unwatch(self, doorbell: Path) -> None:
        key = str(doorbell)
        with self._cond:
            entry = self._watches.get(key)
            if entry is None:
                return
            wd, refs = entry
            if refs > 1:
                self._watches[key] = (wd, refs - 1)
                return
            del self._watches[key]
            if self._libc is not None and self._inotify_fd >= 0:
                self._libc.inotify_rm_watch(self._inotify_fd, wd)

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
            if data:
                self.notify()

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
        self.notify()
