"""An in-memory object store for tests and fault injection (``memory://name``).

Faults and latency are injected per operation; the operations are the names in
:data:`OPERATIONS` (the :class:`~.object_store.ObjectStore` methods). For example::

    store = MemoryObjectStore.named("tier-test")
    store.fail_next("put", 2)                            # the next two puts raise, retriably
    # applied, then raises:
    store.fail_next("put", error=ObjectStoreError("lost response"), after=True)
    store.fail_next("put", leave_incomplete_upload=True)  # a writer "crashed" mid-upload
    store.fail_randomly(0.1, seed=7)                     # any operation fails with p = 0.1
    store.set_latency("get", first_byte_ms=50)           # every get waits 50 ms first
    store.stats().calls["put"], store.stats().bytes_put  # e.g. PUTs per GB

Injected latency sleeps through the injectable ``sleep`` (``time.sleep`` by default, so a
benchmark sees a really slow store) outside the store's lock: slow calls overlap as they would
against a real store. ``fail_next`` faults are used before random ones.

No internal retries by default, so injected errors reach the caller as they would after a real
store's retries ran out; pass ``retry=`` to absorb them like the S3 store does.

Thread-safety: all methods may be called from any thread; one lock guards the objects, the
fault plan and the counters. ``close()`` does nothing: the objects of a named store live until
:meth:`MemoryObjectStore.forget` (so a test can reopen ``memory://name`` and find its data).
"""

from __future__ import annotations

import builtins
import copy
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeVar

from logstore.backends.object_store import (
    IncompleteUpload,
    MiB,
    ObjectInfo,
    PutData,
    Retrier,
    RetryPolicy,
    Sleep,
    clamp_range,
    iter_chunks,
    open_put_source,
    put_request_count,
    validate_key,
    validate_prefix,
    validate_range,
)

from logstore.clock import SYSTEM_CLOCK, Clock
from logstore.errors import (
    InvalidArgumentError,
    ObjectNotFoundError,
    ObjectStoreError,
    PreconditionFailedError,
)

T = TypeVar("T")

OPERATIONS = frozenset(
    {"put", "get", "head", "list", "delete", "check", "list_incomplete_uploads", "abort_upload"}
)

#: An injected error: an exception (copied for each raise) or a factory of exceptions.
ErrorSpec = BaseException | Callable[[], BaseException] | None


@dataclass(frozen=True, slots=True)
class MemoryStoreStats:
    """Counters since creation or :meth:`MemoryObjectStore.reset_stats`.

    ``calls`` counts every call per operation (failed ones too), ``failures`` the injected
    faults raised; the byte counts and ``puts`` count successful transfers only.
    ``put_requests`` is what those puts would have cost in S3 PUT-class requests with the
    store's multipart settings (for "PUTs per GB" figures).
    """

    calls: Mapping[str, int]
    failures: Mapping[str, int]
    puts: int
    put_requests: int
    bytes_put: int
    bytes_got: int
    objects: int
    bytes_stored: int


@dataclass(slots=True)
class _Fault:
    error: ErrorSpec
    after: bool = False
    leave_incomplete_upload: bool = False


@dataclass(slots=True)
class _Latency:
    first_byte_ms: float = 0.0
    bytes_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class _Object:
    data: bytes
    info: ObjectInfo


@dataclass(slots=True)
class _Plan:
    queued: dict[str, deque[_Fault]] = field(default_factory=dict)
    probability: float = 0.0
    random_ops: frozenset[str] = OPERATIONS
    random_error: ErrorSpec = None
    rng: random.Random = field(default_factory=random.Random)
    latency: dict[str, _Latency] = field(default_factory=dict)


def _check_op(op: str) -> str:
    if op not in OPERATIONS:
        raise InvalidArgumentError(f"unknown operation {op!r}; one of {sorted(OPERATIONS)}")
    return op


class MemoryObjectStore:
    """Objects in a dict. See the module docstring for fault injection."""

    _registry: ClassVar[dict[str, MemoryObjectStore]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        name: str = "",
        *,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = time.sleep,
        retry: RetryPolicy | None = None,
        multipart_threshold_bytes: int = 64 * MiB,
        part_size_bytes: int = 64 * MiB,
    ) -> None:
        """``multipart_threshold_bytes`` and ``part_size_bytes`` only shape ``put_requests``,
        the number of PUT-class requests S3 would have needed (see :class:`MemoryStoreStats`)."""
        if part_size_bytes < 1 or multipart_threshold_bytes < 0:
            raise InvalidArgumentError("part_size_bytes must be >= 1, the threshold >= 0")
        self._threshold = multipart_threshold_bytes
        self._part_size = part_size_bytes
        self.url = f"memory://{name}"
        self._clock = clock
        self._sleep = sleep
        self._retrier = Retrier(retry, sleep=sleep, clock=clock) if retry is not None else None
        self._lock = threading.Lock()
        self._objects: dict[str, _Object] = {}
        self._uploads: dict[str, IncompleteUpload] = {}
        self._plan = _Plan()
        self._calls: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._puts = self._put_requests = self._bytes_put = self._bytes_got = 0

    # --- registry ---------------------------------------------------------------------------

    @classmethod
    def named(
        cls, name: str, *, clock: Clock = SYSTEM_CLOCK, sleep: Sleep = time.sleep
    ) -> MemoryObjectStore:
        """The process-wide store called ``name``, created on first use (later calls ignore
        ``clock`` and ``sleep`` and return the same instance)."""
        with cls._registry_lock:
            store = cls._registry.get(name)
            if store is None:
                store = cls._registry[name] = cls(name, clock=clock, sleep=sleep)
            return store

    @classmethod
    def forget(cls, name: str) -> None:
        """Drop the named store from the registry (its data goes with the last reference)."""
        with cls._registry_lock:
            cls._registry.pop(name, None)

    # --- fault injection and inspection -----------------------------------------------------

    def fail_next(
        self,
        op: str,
        count: int = 1,
        *,
        error: ErrorSpec = None,
        after: bool = False,
        leave_incomplete_upload: bool = False,
    ) -> None:
        """Make the next ``count`` calls of ``op`` raise ``error`` (default: a retriable
        ObjectStoreError). With ``after`` the call takes effect first (a lost response). With
        ``leave_incomplete_upload`` (puts only) the put fails and leaves an incomplete upload,
        as a writer killed mid-upload does."""
        _check_op(op)
        if count < 0:
            raise InvalidArgumentError(f"count must be >= 0, not {count}")
        if leave_incomplete_upload and op != "put":
            raise InvalidArgumentError("leave_incomplete_upload applies to put only")
        with self._lock:
            queue = self._plan.queued.setdefault(op, deque())
            queue.extend(_Fault(error, after, leave_incomplete_upload) for _ in range(count))

    def fail_randomly(
        self,
        probability: float,
        *,
        seed: int,
        ops: frozenset[str] | set[str] | None = None,
        error: ErrorSpec = None,
    ) -> None:
        """Fail each call of ``ops`` (default: all) with ``probability``, drawn from a
        ``random.Random(seed)`` so a failing run can be replayed. 0 turns this off."""
        if not 0.0 <= probability <= 1.0:
            raise InvalidArgumentError(f"probability must be in [0, 1], not {probability}")
        with self._lock:
            self._plan.probability = probability
            self._plan.random_ops = frozenset(_check_op(o) for o in (ops or OPERATIONS))
            self._plan.random_error = error
            self._plan.rng = random.Random(seed)

    def set_latency(
        self, op: str | None, *, first_byte_ms: float = 0.0, bytes_per_s: float | None = None
    ) -> None:
        """Delay every call of ``op`` (None: every operation) by ``first_byte_ms`` plus the
        bytes moved divided by ``bytes_per_s``. Zero and None turn it off."""
        if first_byte_ms < 0 or (bytes_per_s is not None and bytes_per_s <= 0):
            raise InvalidArgumentError("first_byte_ms must be >= 0 and bytes_per_s > 0")
        with self._lock:
            for name in OPERATIONS if op is None else (_check_op(op),):
                self._plan.latency[name] = _Latency(first_byte_ms, bytes_per_s)

    def clear_faults(self) -> None:
        """Remove every injected fault and latency."""
        with self._lock:
            self._plan = _Plan()

    def stats(self) -> MemoryStoreStats:
        """A snapshot of the counters."""
        with self._lock:
            return MemoryStoreStats(
                calls=dict(self._calls),
                failures=dict(self._failures),
                puts=self._puts,
                put_requests=self._put_requests,
                bytes_put=self._bytes_put,
                bytes_got=self._bytes_got,
                objects=len(self._objects),
                bytes_stored=sum(o.info.size_bytes for o in self._objects.values()),
            )

    def reset_stats(self) -> None:
        with self._lock:
            self._calls.clear()
            self._failures.clear()
            self._puts = self._put_requests = self._bytes_put = self._bytes_got = 0

    # --- the ObjectStore interface ----------------------------------------------------------

    def put(self, key: str, data: PutData, *, if_none_match: bool = False) -> ObjectInfo:
        validate_key(key)
        with open_put_source(data) as stream:
            body = b"".join(iter_chunks(stream))

        def attempt() -> ObjectInfo:
            fault = self._enter("put", len(body))
            if fault is not None and fault.leave_incomplete_upload:
                upload = IncompleteUpload(key, uuid.uuid4().hex, self._clock.time_ms())
                with self._lock:
                    self._uploads[upload.upload_id] = upload
                raise self._error(fault, "put", key)
            if fault is not None and not fault.after:
                raise self._error(fault, "put", key)
            # A random etag: hashing would slow benchmarks of large objects for no benefit.
            info = ObjectInfo(key, len(body), uuid.uuid4().hex, self._clock.time_ms())
            with self._lock:
                if if_none_match and key in self._objects:
                    raise PreconditionFailedError(f"{self.url}: object {key!r} already exists")
                self._objects[key] = _Object(body, info)
                self._puts += 1
                self._put_requests += self._requests_for(len(body))
                self._bytes_put += len(body)
            if fault is not None:
                raise self._error(fault, "put", key)
            return info

        return self._run(attempt, "put", key)

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        validate_key(key)
        validate_range(start, end)

        def attempt() -> bytes:
            with self._lock:
                obj = self._objects.get(key)
            nbytes = 0
            if obj is not None:
                size = obj.info.size_bytes
                nbytes = max(0, (size if end is None else min(end, size)) - start)
            fault = self._enter("get", nbytes)
            if fault is not None and not fault.after:
                raise self._error(fault, "get", key)
            if obj is None:
                raise ObjectNotFoundError(f"{self.url}: no object {key!r}")
            lo, hi = clamp_range(key, obj.info.size_bytes, start, end)
            with self._lock:
                self._bytes_got += max(0, hi - lo)
            if fault is not None:
                raise self._error(fault, "get", key)
            return obj.data[lo:hi]

        return self._run(attempt, "get", key)

    def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)

        def attempt() -> ObjectInfo | None:
            self._raise_before("head", key)
            with self._lock:
                obj = self._objects.get(key)
            return None if obj is None else obj.info

        return self._run(attempt, "head", key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)

        def attempt() -> builtins.list[ObjectInfo]:
            self._raise_before("list", prefix)
            with self._lock:
                infos = [o.info for k, o in self._objects.items() if k.startswith(prefix)]
            return sorted(infos, key=lambda info: info.key)

        return iter(self._run(attempt, "list", prefix))

    def delete(self, key: str) -> None:
        validate_key(key)

        def attempt() -> None:
            fault = self._enter("delete", 0)
            if fault is not None and not fault.after:
                raise self._error(fault, "delete", key)
            with self._lock:
                self._objects.pop(key, None)
            if fault is not None:
                raise self._error(fault, "delete", key)

        self._run(attempt, "delete", key)

    def check(self, *, write: bool = True) -> None:
        # Faults injected into "check" are how a test makes a memory store look unreachable.
        self._raise_before("check", "")

    def list_incomplete_uploads(self, prefix: str = "") -> Iterator[IncompleteUpload]:
        validate_prefix(prefix)

        def attempt() -> builtins.list[IncompleteUpload]:
            self._raise_before("list_incomplete_uploads", prefix)
            with self._lock:
                found = [u for u in self._uploads.values() if u.key.startswith(prefix)]
            return sorted(found, key=lambda u: (u.key, u.upload_id))

        return iter(self._run(attempt, "list_incomplete_uploads", prefix))

    def abort_upload(self, upload: IncompleteUpload) -> None:
        def attempt() -> None:
            self._raise_before("abort_upload", upload.key)
            with self._lock:
                self._uploads.pop(upload.upload_id, None)

        self._run(attempt, "abort_upload", upload.key)

    def close(self) -> None:
        """Nothing to release; the objects stay (see the module docstring)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryObjectStore({self.url!r})"

    # --- internals --------------------------------------------------------------------------

    def _run(self, attempt: Callable[[], T], op: str, key: str) -> T:
        if self._retrier is None:
            return attempt()
        return self._retrier.call(attempt, what=f"{self.url} {op} {key!r}")

    def _requests_for(self, size: int) -> int:
        """PutObject, or CreateMultipartUpload + one UploadPart per part + Complete."""
        return put_request_count(size, threshold=self._threshold, part_size=self._part_size)

    def _enter(self, op: str, nbytes: int) -> _Fault | None:
        """Count the call, pick its fault (if any) and sleep its latency, outside the lock."""
        with self._lock:
            self._calls[op] += 1
            plan = self._plan
            fault: _Fault | None = None
            queue = plan.queued.get(op)
            if queue:
                fault = queue.popleft()
            elif plan.probability > 0 and op in plan.random_ops:
                # Draw only for the targeted operations, so a seed replays the same faults.
                fault = _Fault(plan.random_error) if plan.rng.random() < plan.probability else None
            latency = plan.latency.get(op)
            if fault is not None:
                self._failures[op] += 1
        if latency is not None:
            delay_s = latency.first_byte_ms / 1000.0
            if latency.bytes_per_s:
                delay_s += nbytes / latency.bytes_per_s
            if delay_s > 0:
                self._sleep(delay_s)
        return fault

    def _raise_before(self, op: str, key: str) -> None:
        fault = self._enter(op, 0)
        if fault is not None:
            raise self._error(fault, op, key)

    def _error(self, fault: _Fault, op: str, key: str) -> BaseException:
        spec = fault.error
        if spec is None:
            return ObjectStoreError(f"{self.url}: injected fault in {op} {key!r}")
        if isinstance(spec, BaseException):
            return copy.copy(spec)
        return spec()
