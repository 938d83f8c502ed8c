"""The chunk cache of remote segment bytes: exact ranges, the byte bound (LRU), single-flight
loads, background prefetch, failures, and caching turned off."""

from __future__ import annotations

import threading

import pytest

from logstore.errors import InvalidArgumentError, ObjectStoreError
from logstore.tier.cache import ChunkCache

DATA = bytes(range(256)) * 40  # 10,240 bytes


class Loader:
    """Serves DATA and counts the ranged reads it was asked for."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, start: int, end: int) -> bytes:
        with self.lock:
            self.calls.append((start, end))
        if self.gate is not None:
            self.gate.wait(5)
        return DATA[start:end]


@pytest.mark.parametrize(("start", "end"), [(0, 1), (0, 1000), (999, 1001), (5, 3100),
                                            (4000, 10_240), (10_239, 20_000), (7, 7)])
def test_reads_return_exactly_the_range(start, end):
    cache = ChunkCache(max_bytes=100_000, chunk_bytes=1000)
    load = Loader()
    assert cache.read("k", start, end, size=len(DATA), load=load) == DATA[start:end]
    assert all(e - s <= 1000 and s % 1000 == 0 for s, e in load.calls)


def test_repeated_reads_hit_the_cache():
    cache = ChunkCache(max_bytes=100_000, chunk_bytes=1000)
    load = Loader()
    cache.read("k", 0, 2500, size=len(DATA), load=load)
    before = cache.stats()
    cache.read("k", 100, 2900, size=len(DATA), load=load)
    assert sorted(load.calls) == [(0, 1000), (1000, 2000), (2000, 3000)]
    after = cache.stats()
    assert after.hits - before.hits == 3 and after.misses == before.misses
    assert after.held_bytes == 3000


def test_the_chunks_of_a_long_range_load_concurrently():
    gate = threading.Event()
    cache = ChunkCache(max_bytes=100_000, chunk_bytes=1000, prefetch_workers=4)
    load = Loader(gate)
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(
        cache.read("k", 0, 4000, size=len(DATA), load=load)))
    reader.start()
    for _ in range(5000):  # all four loads start before any finishes
        if len(load.calls) == 4:
            break
        threading.Event().wait(0.001)
    assert sorted(load.calls) == [(0, 1000), (1000, 2000), (2000, 3000), (3000, 4000)]
    gate.set()
    reader.join(5)
    assert result == [DATA[:4000]]


def test_the_byte_bound_evicts_the_least_recently_used_chunk():
    cache = ChunkCache(max_bytes=2000, chunk_bytes=1000)
    load = Loader()
    cache.read("k", 0, 10, size=len(DATA), load=load)      # chunk 0
    cache.read("k", 1000, 1010, size=len(DATA), load=load)  # chunk 1
    cache.read("k", 0, 10, size=len(DATA), load=load)      # chunk 0 is now the newest
    cache.read("k", 2000, 2010, size=len(DATA), load=load)  # evicts chunk 1
    assert cache.stats().held_bytes <= 2000 and cache.stats().evictions == 1
    cache.read("k", 0, 10, size=len(DATA), load=load)
    cache.read("k", 1000, 1010, size=len(DATA), load=load)
    assert load.calls == [(0, 1000), (1000, 2000), (2000, 3000), (1000, 2000)]


def test_objects_do_not_share_chunks():
    cache = ChunkCache(max_bytes=100_000, chunk_bytes=1000)
    other = Loader()
    cache.read("a", 0, 10, size=len(DATA), load=Loader())
    cache.read("b", 0, 10, size=len(DATA), load=other)
    assert other.calls == [(0, 1000)]


def test_concurrent_readers_of_a_chunk_share_one_load():
    gate = threading.Event()
    cache = ChunkCache(max_bytes=100_000, chunk_bytes=1000)
    load = Loader(gate)
    results: list[bytes] = []

    def read() -> None:
        results.append(cache.read("k", 10, 20, size=len(DATA), load=load))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    while not load.calls:
        threading.Event().wait(0.001)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == [DATA[10:20]] * 8
    assert load.calls == [(0, 1000)]


def test_prefetch_loads_in_the_background_once():
    cache = ChunkCache(max_bytes=100_000, chunk_bytes=1000)
    load = Loader()
    cache.prefetch("k", 3, size=len(DATA), load=load)
    cache.prefetch("k", 3, size=len(DATA), load=load)
    cache.prefetch("k", 99, size=len(DATA), load=load)  # beyond the object: nothing
    assert cache.read("k", 3000, 3500, size=len(DATA), load=load) == DATA[3000:3500]
    assert load.calls == [(3000, 4000)]
    assert cache.stats().prefetches == 1
    cache.close()


def test_a_failed_load_reaches_every_waiter_and_is_not_cached():
    cache = ChunkCache(max_bytes=100_000, chunk_bytes=1000)

    def failing(start: int, end: int) -> bytes:
        raise ObjectStoreError("boom")

    with pytest.raises(ObjectStoreError):
        cache.read("k", 0, 10, size=len(DATA), load=failing)
    load = Loader()
    assert cache.read("k", 0, 10, size=len(DATA), load=load) == DATA[:10]
    assert load.calls == [(0, 1000)]


def test_a_failed_prefetch_leaves_the_chunk_to_the_reader():
    cache = ChunkCache(max_bytes=100_000, chunk_bytes=1000)

    def failing(start: int, end: int) -> bytes:
        raise ObjectStoreError("boom")

    cache.prefetch("k", 0, size=len(DATA), load=failing)
    cache.close()  # waits for the prefetch
    assert cache.read("k", 0, 10, size=len(DATA), load=Loader()) == DATA[:10]


def test_zero_bytes_turns_caching_off():
    cache = ChunkCache(max_bytes=0, chunk_bytes=1000)
    load = Loader()
    cache.read("k", 0, 10, size=len(DATA), load=load)
    cache.read("k", 0, 10, size=len(DATA), load=load)
    cache.prefetch("k", 1, size=len(DATA), load=load)
    assert load.calls == [(0, 1000), (0, 1000)]
    assert cache.stats().held_bytes == 0


@pytest.mark.parametrize("kwargs", [{"max_bytes": -1}, {"chunk_bytes": 0},
                                    {"max_bytes": True}, {"chunk_bytes": 1.5}])
def test_bad_sizes_are_refused(kwargs):
    with pytest.raises(InvalidArgumentError):
        ChunkCache(**kwargs)
