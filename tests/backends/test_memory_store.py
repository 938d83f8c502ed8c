"""The memory store's own features: fault injection, latency, counters, the named registry.
(The ObjectStore contract itself is in test_object_store_contract.py.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from logstore.backends.memory_store import MemoryObjectStore
from logstore.backends.object_store import (
    MiB,
    RetryPolicy,
    abort_stale_uploads,
    open_object_store,
)

from logstore.clock import ManualClock
from logstore.errors import (
    InvalidArgumentError,
    LogstoreTimeoutError,
    ObjectStoreAccessError,
    ObjectStoreError,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=1_700_000_000_000)


@pytest.fixture
def store(clock: ManualClock, fake_sleep: Callable[[float], None]) -> MemoryObjectStore:
    return MemoryObjectStore("unit", clock=clock, sleep=fake_sleep)


def test_fail_next_fails_that_many_calls_then_recovers(store: MemoryObjectStore) -> None:
    store.fail_next("put", 2)

    for _ in range(2):
        with pytest.raises(ObjectStoreError) as caught:
            store.put("k", b"v")
        assert caught.value.retriable
        assert "injected" in str(caught.value)
    store.put("k", b"v")

    assert store.get("k") == b"v"
    stats = store.stats()
    assert stats.calls["put"] == 3 and stats.failures["put"] == 2
    assert (stats.puts, stats.bytes_put, stats.objects, stats.bytes_stored) == (1, 1, 1, 1)


def test_faults_apply_to_their_operation_only(store: MemoryObjectStore) -> None:
    store.put("k", b"v")
    store.fail_next("get")

    assert store.head("k") is not None
    assert list(store.list()) == [store.head("k")]
    with pytest.raises(ObjectStoreError):
        store.get("k")
    assert store.get("k") == b"v"


def test_custom_errors_instances_and_factories(store: MemoryObjectStore) -> None:
    store.fail_next("get", 2, error=LogstoreTimeoutError("read timed out"))
    store.fail_next("delete", error=lambda: ObjectStoreAccessError("AccessDenied"))
    store.put("k", b"v")

    raised = []
    for _ in range(2):
        with pytest.raises(LogstoreTimeoutError) as caught:
            store.get("k")
        raised.append(caught.value)
    assert raised[0] is not raised[1]  # a fresh copy each time, no shared traceback
    with pytest.raises(ObjectStoreAccessError):
        store.delete("k")
    assert store.get("k") == b"v"


def test_a_fault_after_the_put_applies_it(store: MemoryObjectStore) -> None:
    """A lost response: the caller sees an error, the object is stored."""
    store.fail_next("put", after=True)

    with pytest.raises(ObjectStoreError):
        store.put("k", b"v")

    assert store.get("k") == b"v"
    assert store.stats().puts == 1


def test_a_fault_after_a_delete_applies_it(store: MemoryObjectStore) -> None:
    store.put("k", b"v")
    store.fail_next("delete", after=True)

    with pytest.raises(ObjectStoreError):
        store.delete("k")

    assert store.head("k") is None


def test_a_put_can_leave_an_incomplete_upload(store: MemoryObjectStore, clock: ManualClock) -> None:
    store.fail_next("put", leave_incomplete_upload=True)
    with pytest.raises(ObjectStoreError):
        store.put("topics/t/old", b"v")
    clock.advance(60_000)
    store.fail_next("put", leave_incomplete_upload=True)
    with pytest.raises(ObjectStoreError):
        store.put("topics/t/young", b"v")

    assert store.head("topics/t/old") is None
    uploads = list(store.list_incomplete_uploads("topics/"))
    assert [u.key for u in uploads] == ["topics/t/old", "topics/t/young"]
    assert list(store.list_incomplete_uploads("other/")) == []

    aborted = abort_stale_uploads(store, older_than_ms=30_000, now_ms=clock.time_ms())

    assert [u.key for u in aborted] == ["topics/t/old"]
    assert [u.key for u in store.list_incomplete_uploads()] == ["topics/t/young"]
    store.abort_upload(aborted[0])  # idempotent


def test_fail_randomly_is_reproducible_with_a_seed(clock: ManualClock) -> None:
    def outcomes(seed: int) -> list[bool]:
        store = MemoryObjectStore(clock=clock)
        store.fail_randomly(0.3, seed=seed)
        results = []
        for i in range(200):
            try:
                store.put(f"k{i}", b"v")
                results.append(True)
            except ObjectStoreError:
                results.append(False)
        return results

    first = outcomes(7)
    assert first == outcomes(7)
    assert first != outcomes(8)
    assert 30 < first.count(False) < 90


def test_fail_randomly_can_target_operations(store: MemoryObjectStore) -> None:
    store.put("k", b"v")
    store.fail_randomly(1.0, seed=1, ops={"get"})

    assert store.head("k") is not None
    with pytest.raises(ObjectStoreError):
        store.get("k")
    store.fail_randomly(0.0, seed=1)
    assert store.get("k") == b"v"


def test_clear_faults(store: MemoryObjectStore, recorded_sleeps: list[float]) -> None:
    store.fail_next("put", 5)
    store.fail_randomly(1.0, seed=1)
    store.set_latency(None, first_byte_ms=10)

    store.clear_faults()

    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert recorded_sleeps == []


def test_latency_sleeps_first_byte_and_transfer_time(
    store: MemoryObjectStore, recorded_sleeps: list[float]
) -> None:
    store.put("k", b"x" * 1000)
    store.set_latency("get", first_byte_ms=50)

    store.get("k")
    store.get("k", start=100, end=200)
    store.head("k")
    store.set_latency("get", first_byte_ms=50, bytes_per_s=10_000)
    store.get("k", start=500)

    assert recorded_sleeps == pytest.approx([0.05, 0.05, 0.05 + 500 / 10_000])


def test_latency_for_every_operation(
    store: MemoryObjectStore, recorded_sleeps: list[float]
) -> None:
    store.set_latency(None, first_byte_ms=5)

    store.put("k", b"v")
    store.head("k")
    list(store.list())
    store.delete("k")

    assert recorded_sleeps == pytest.approx([0.005] * 4)


def test_slow_calls_do_not_block_other_calls(clock: ManualClock) -> None:
    """Latency is slept outside the lock: a stalled get must not stall a head."""
    entered = threading.Event()
    release = threading.Event()

    def blocking_sleep(seconds: float) -> None:
        entered.set()
        release.wait(10)

    store = MemoryObjectStore(clock=clock, sleep=blocking_sleep)
    store.put("k", b"v")
    store.set_latency("get", first_byte_ms=1)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(store.get("k")))
    reader.start()
    try:
        assert entered.wait(10)
        assert store.head("k") is not None
        store.put("other", b"w")
    finally:
        release.set()
        reader.join()
    assert got == [b"v"]


def test_an_internal_retry_policy_absorbs_faults(
    clock: ManualClock, fake_sleep: Callable[[float], None], recorded_sleeps: list[float]
) -> None:
    store = MemoryObjectStore(
        clock=clock, sleep=fake_sleep, retry=RetryPolicy(max_attempts=4, base_delay_ms=10)
    )
    store.fail_next("put", 3)

    store.put("k", b"v")

    assert store.get("k") == b"v"
    assert len(recorded_sleeps) == 3
    assert all(0 <= s <= 0.01 * 2**i for i, s in enumerate(recorded_sleeps))
    store.fail_next("get", 4)
    with pytest.raises(ObjectStoreError):
        store.get("k")


def test_check_can_be_made_to_fail(store: MemoryObjectStore) -> None:
    store.check()
    store.fail_next("check", error=ObjectStoreAccessError("NoSuchBucket"))

    with pytest.raises(ObjectStoreAccessError):
        store.check()
    store.check()


def test_stats_count_bytes_and_reset(store: MemoryObjectStore) -> None:
    store.put("a", b"x" * 100)
    store.put("b", b"y" * 50)
    store.get("a", start=10, end=30)
    store.get("b")

    stats = store.stats()
    assert (stats.puts, stats.put_requests, stats.bytes_put, stats.bytes_got) == (2, 2, 150, 70)
    assert stats.calls == {"put": 2, "get": 2}

    store.reset_stats()

    assert store.stats().calls == {} and store.stats().bytes_put == 0
    assert store.stats().objects == 2  # the objects stay


def test_invalid_fault_arguments(store: MemoryObjectStore) -> None:
    with pytest.raises(InvalidArgumentError):
        store.fail_next("upload", 1)
    with pytest.raises(InvalidArgumentError):
        store.fail_next("get", leave_incomplete_upload=True)
    with pytest.raises(InvalidArgumentError):
        store.fail_randomly(1.5, seed=1)
    with pytest.raises(InvalidArgumentError):
        store.fail_randomly(0.5, seed=1, ops={"nope"})
    with pytest.raises(InvalidArgumentError):
        store.set_latency("get", first_byte_ms=-1)


@pytest.fixture
def registry_name() -> Iterator[str]:
    name = "registry-test"
    yield name
    MemoryObjectStore.forget(name)


def test_named_stores_are_shared_through_urls(registry_name: str) -> None:
    first = open_object_store(f"memory://{registry_name}")
    first.put("k", b"v")
    first.close()  # closing a memory store keeps its objects

    second = open_object_store(f"memory://{registry_name}")

    assert second is first
    assert second.get("k") == b"v"
    assert isinstance(second, MemoryObjectStore)
    second.fail_next("get")
    with pytest.raises(ObjectStoreError):
        first.get("k")

    MemoryObjectStore.forget(registry_name)
    assert open_object_store(f"memory://{registry_name}").head("k") is None


def test_anonymous_memory_urls_are_fresh_stores() -> None:
    first = open_object_store("memory://")
    first.put("k", b"v")

    assert open_object_store("memory://").head("k") is None


def test_put_requests_count_what_s3_multipart_uploads_would_cost(clock: ManualClock) -> None:
    store = MemoryObjectStore(clock=clock, multipart_threshold_bytes=100, part_size_bytes=40)

    store.put("small", b"s" * 100)  # one PutObject
    store.put("large", b"l" * 101)  # create + 2 parts (the 21-byte rest joins) + complete

    assert store.stats().puts == 2
    assert store.stats().put_requests == 1 + 4


@pytest.mark.parametrize(("size", "requests"), [
    (5 * MiB, 1),               # at the threshold: one PutObject
    (5 * MiB + 1, 3),           # one part (the 1-byte rest joins it)
    (10 * MiB, 4),              # two full parts
    (10 * MiB + 5, 4),          # a small rest joins the second part
    (15 * MiB + 1, 5),          # three parts, the byte joining the third
    (16 * MiB, 5),              # 5 + 5 + 6: a 1 MiB rest joins the third part
])
def test_put_requests_count_what_s3_would_need(size, requests):
    from logstore.backends.memory_store import MemoryObjectStore

    store = MemoryObjectStore(multipart_threshold_bytes=5 * MiB, part_size_bytes=5 * MiB)
    store.put("k", b"x" * size)
    assert store.stats().put_requests == requests
