"""A partition's doorbell, which is also its log-end checkpoint.

One small file per partition, in one directory per data directory
(``<data>/doorbells/<topic>-<partition>``). After every commit the appender rewrites it with
the partition's log end offset. Two things follow:

* **Wake-ups.** Consumers in other processes watch the doorbells *directory* with inotify (one
  watch per data directory, whatever the number of partitions; see ``notify``), and the event
  names the partition whose doorbell rang.
* **Lost writes are detected.** The file outlives what it describes: if a partition's active
  segment loses committed records (its ``-wal`` deleted after a crash, the file replaced) or
  the whole partition directory disappears, the next open finds a log end below the recorded
  one and takes the partition offline instead of handing the lost offsets out again.

The checkpoint is written after the commit returns and is not fsynced: it is never ahead of
the durable data (so it cannot raise a false alarm after a process crash), but it may lag it:
after a power loss with ``durability=os`` it may say less than was acknowledged, and two
processes appending to the same partition may write their log ends out of order, leaving the
lower one. A lagging checkpoint only weakens the check. Truncation (the one legitimate way a
log end goes down) bumps the partition's truncation count, and a record carrying an older
count is not compared.

Format (little-endian, ``24 + n + 4`` bytes; offsets from ``_HEADER``)::

    offset  size  field
    0       4     magic b"LSDB"
    4       1     version (1)
    5       1     n: length of the topic id
    6       2     reserved (0)
    8       8     log end offset            (int64)
    16      8     truncation count          (int64, see partition_state)
    24      n     topic id                  (ASCII)
    24+n    4     CRC-32C of bytes [0, 24+n)

A file that is shorter, has another magic or version, or fails its CRC is treated as "no
checkpoint" (the ``.notify`` files of older versions held one byte).

Thread-safe.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import crc32c

from logstore.errors import StorageError
from logstore.log.handles import FileBudget
from logstore.log.sqlite_file import fsync_dir, translate

MAGIC = b"LSDB"
VERSION = 1
_HEADER = struct.Struct("<4sBBHqq")
_CRC = struct.Struct("<I")
MAX_TOPIC_ID_BYTES = 255
DOORBELLS_DIR = "doorbells"


def doorbell_name(topic: str, partition: int) -> str:
    """``<topic>-<partition>`` (Kafka's directory naming; topic names never hold a '/')."""
    return f"{topic}-{partition}"


@dataclass(frozen=True, slots=True)
class LogEndCheckpoint:
    """What a doorbell records."""

    topic_id: str
    log_end_offset: int
    truncations: int


def encode(checkpoint: LogEndCheckpoint) -> bytes:
    topic_id = checkpoint.topic_id.encode("ascii")
    if len(topic_id) > MAX_TOPIC_ID_BYTES:
        raise StorageError(f"topic id {checkpoint.topic_id!r} is too long for a doorbell")
    body = _HEADER.pack(MAGIC, VERSION, len(topic_id), 0, checkpoint.log_end_offset,
                        checkpoint.truncations) + topic_id
    return body + _CRC.pack(crc32c.crc32c(body))


def decode(data: bytes) -> LogEndCheckpoint | None:
    """The checkpoint in ``data``, or None if it holds none (old, short or damaged)."""
    if len(data) < _HEADER.size + _CRC.size:
        return None
    magic, version, length, _, log_end, truncations = _HEADER.unpack_from(data, 0)
    end = _HEADER.size + length
    if magic != MAGIC or version != VERSION or len(data) < end + _CRC.size:
        return None
    if _CRC.unpack_from(data, end)[0] != crc32c.crc32c(data[:end]):
        return None
    try:
        topic_id = data[_HEADER.size:end].decode("ascii")
    except UnicodeDecodeError:
        return None
    return LogEndCheckpoint(topic_id, log_end, truncations)


def read_checkpoint(path: Path) -> LogEndCheckpoint | None:
    """The checkpoint recorded in the doorbell at ``path`` (None: no file, or none in it)."""
    try:
        with open(path, "rb") as file:
            return decode(file.read(_HEADER.size + MAX_TOPIC_ID_BYTES + _CRC.size))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise translate(exc, f"reading {path}") from exc


def create(path: Path, checkpoint: LogEndCheckpoint, *, sync: bool = True) -> None:
    """Write a doorbell (replacing any) atomically; laying out a partition ends with this.
    ``sync=False`` leaves the fsyncs to the caller (one fsync of the directory for many)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, encode(checkpoint))
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if sync:
            fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise translate(exc, f"writing {path}") from exc


class Doorbell:
    """The doorbell of one open partition: an fd kept open between rings, within the budget."""

    def __init__(self, path: Path, *, topic_id: str, budget: FileBudget) -> None:
        self.path = path
        self._topic_id = topic_id
        self._budget = budget
        self._lock = threading.Lock()
        self._fd = -1

    def ring(self, log_end_offset: int, truncations: int) -> None:
        """Record the log end and wake watchers. Best effort: a failure only delays readers in
        other processes (they fall back to their poll interval) and weakens the checkpoint."""
        record = encode(LogEndCheckpoint(self._topic_id, log_end_offset, truncations))
        with self._lock:
            try:
                if self._fd < 0:
                    # Never created here: a missing doorbell belongs to a deleted topic.
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
                    self._budget.opened(self, 1)
                else:
                    self._budget.used(self)
                os.pwrite(self._fd, record, 0)
            except OSError:
                return

    def try_close_idle(self) -> bool:
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._close_locked()
        finally:
            self._lock.release()
        return True

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
            self._budget.closed(self)
