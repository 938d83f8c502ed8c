"""A bounded cache of byte ranges of immutable objects, with single-flight loads and prefetch.

Remote segments never change once written, so a range read once can be served again from
memory. The cache splits every object into aligned *chunks* of ``chunk_bytes`` and keeps the
most recently used chunks up to ``max_bytes`` in total (LRU). A chunk is loaded with one ranged
GET; concurrent readers of a chunk that is being loaded wait for that one load instead of
issuing their own (single flight). :meth:`ChunkCache.prefetch` loads a chunk in a background
thread, so a sequential reader finds the next chunk already there.

``max_bytes = 0`` disables caching: every read loads what it needs and keeps nothing (prefetch
then does nothing).

Thread-safety: every method may be called from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from logstore.errors import InvalidArgumentError

_log = logging.getLogger("logstore.tier.cache")

#: Loads the bytes [start, end) of one object (a ranged GET).
Loader = Callable[[int, int], bytes]

DEFAULT_CHUNK_BYTES = 1024 * 1024
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was made: chunk hits and misses, prefetches started, chunks
    evicted, and the bytes held now."""

    hits: int
    misses: int
    prefetches: int
    evictions: int
    held_bytes: int


class ChunkCache:
    """LRU of object chunks; see the module docstring."""

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_CACHE_BYTES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        prefetch_workers: int = 4,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise InvalidArgumentError(f"remote cache bytes must be an int >= 0, got {max_bytes!r}")
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
            raise InvalidArgumentError(f"chunk bytes must be an int >= 1, got {chunk_bytes!r}")
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        self._lock = threading.Lock()
        self._chunks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._loading: dict[tuple[str, int], Future[bytes]] = {}
        self._held = 0
        self._hits = self._misses = self._prefetches = self._evictions = 0
        self._workers = prefetch_workers
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    # --- reading -----------------------------------------------------------------------------

    def read(self, key: str, start: int, end: int, *, size: int, load: Loader) -> bytes:
        """The bytes [start, end) of object ``key`` whose cacheable extent is ``size`` bytes
        (``end`` is clamped to it). Chunks missing from the cache are loaded with ``load``."""
        end = min(end, size)
        if start >= end:
            return b""
        first, last = start // self.chunk_bytes, (end - 1) // self.chunk_bytes
        for index in range(first + 1, last + 1):  # later chunks load while the first does
            self.prefetch(key, index, size=size, load=load)
        parts = [self._chunk(key, index, size, load) for index in range(first, last + 1)]
        base = first * self.chunk_bytes
        joined = parts[0] if len(parts) == 1 else b"".join(parts)
        if start == base and end - start == len(joined):
            return joined
        return joined[start - base:end - base]

    def prefetch(self, key: str, index: int, *, size: int, load: Loader) -> None:
        """Start loading chunk ``index`` of ``key`` in the background unless it is cached,
        being loaded, beyond ``size``, or caching is off. Failures are logged, not raised (the
        reader will load the chunk itself)."""
        if self.max_bytes == 0 or index * self.chunk_bytes >= size:
            return
        chunk = (key, index)
        with self._lock:
            if self._closed or chunk in self._chunks or chunk in self._loading:
                return
            future: Future[bytes] = Future()
            self._loading[chunk] = future
            self._prefetches += 1
            executor = self._executor_locked()
        try:
            executor.submit(self._fill, chunk, size, load, future, True)
        except RuntimeError:  # shut down meanwhile
            self._settle(chunk, future, error=RuntimeError("cache closed"))

    def submit(self, task: Callable[[], object]) -> None:
        """Run ``task`` on the prefetch threads (failures are logged, not raised)."""
        with self._lock:
            if self._closed or self.max_bytes == 0:
                return
            executor = self._executor_locked()

        def run() -> None:
            try:
                task()
            except BaseException as exc:  # noqa: BLE001 - background work; the reader retries
                _log.debug("background task failed: %s", exc)

        try:
            executor.submit(run)
        except RuntimeError:  # shut down meanwhile
            pass

    def chunk_index(self, position: int) -> int:
        """The chunk holding byte ``position``."""
        return position // self.chunk_bytes

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._prefetches, self._evictions,
                              self._held)

    def close(self) -> None:
        """Stop prefetching and drop every chunk. Idempotent; reads still work (uncached)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            self._chunks.clear()
            self._held = 0
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # --- internals ---------------------------------------------------------------------------

    def _executor_locked(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=max(1, self._workers), thread_name_prefix="logstore-prefetch")
        return self._executor

    def _chunk(self, key: str, index: int, size: int, load: Loader) -> bytes:
        chunk = (key, index)
        with self._lock:
            data = self._chunks.get(chunk)
            if data is not None:
                self._chunks.move_to_end(chunk)
                self._hits += 1
                return data
            pending = self._loading.get(chunk)
            if pending is None:
                future: Future[bytes] = Future()
                self._loading[chunk] = future
                self._misses += 1
            else:
                self._hits += 1  # served by a load already under way (often a prefetch)
        if pending is not None:
            return pending.result()
        self._fill(chunk, size, load, future, False)
        return future.result()

    def _fill(
        self, chunk: tuple[str, int], size: int, load: Loader, future: Future[bytes],
        background: bool,
    ) -> None:
        start = chunk[1] * self.chunk_bytes
        try:
            data = load(start, min(start + self.chunk_bytes, size))
        except BaseException as exc:  # noqa: BLE001 - for every waiter; a prefetch only logs it
            if background:
                _log.debug("prefetch of %s chunk %d failed: %s", chunk[0], chunk[1], exc)
            self._settle(chunk, future, error=exc)
            return
        self._settle(chunk, future, data=data)

    def _settle(
        self, chunk: tuple[str, int], future: Future[bytes], *, data: bytes | None = None,
        error: BaseException | None = None,
    ) -> None:
        evicted = 0
        with self._lock:
            self._loading.pop(chunk, None)
            if data is not None and not self._closed and 0 < len(data) <= self.max_bytes:
                self._chunks[chunk] = data
                self._held += len(data)
                while self._held > self.max_bytes:
                    _, old = self._chunks.popitem(last=False)
                    self._held -= len(old)
                    evicted += 1
                self._evictions += evicted
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(data if data is not None else b"")
