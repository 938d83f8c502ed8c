"""The object store interface: immutable objects under string keys (remote segments live here).

URLs (:func:`open_object_store`):

* ``file:///abs/path`` -- :class:`~.local_store.LocalObjectStore`; the directory must exist
  (it plays the bucket's part). ``file://localhost/abs/path`` is accepted too.
* ``s3://bucket[/prefix]?endpoint_url=URL&region=R&profile=P&addressing_style=path|virtual|auto
  &connect_timeout_s=5&read_timeout_s=60&max_attempts=8&multipart_threshold_bytes=N
  &part_size_bytes=N`` -- :class:`~.s3_store.S3ObjectStore` (AWS, MinIO, R2, ...).
  Credentials come from the usual boto3 chain (environment, profile, instance role), never from
  the URL. Every key is stored under ``prefix/``.
* ``memory://name`` -- :class:`~.memory_store.MemoryObjectStore`, one shared instance per name
  in this process (tests, fault injection); ``memory://`` is a fresh anonymous store.

Keys (:func:`validate_key`, the same rules in every store so that a key valid in tests is
valid in production): a non-empty ``str`` of at most 1024 UTF-8 bytes, ``/``-separated
segments, none of them empty, ``.`` or ``..``; no leading ``/``, no backslash, no control
character (NUL included). Keys sort by code point, which is S3's UTF-8 byte order.

Ranged reads, ``get(key, start=s, end=e)``: ``e`` is exclusive and ``None`` means the end of
the object. ``0 <= s`` and ``s <= e`` or :class:`~logstore.errors.InvalidArgumentError`.
The result is ``object[s:e]`` whenever ``s <= size``: an ``e`` beyond the size is clamped
(a short read, as S3 does) and ``s == size`` or ``s == e`` gives ``b""`` (if the object
exists). ``s > size`` raises :class:`~logstore.errors.ObjectRangeError`: a reader whose index
points past the object has a bug or a wrong object, and an empty answer would hide it.

Incomplete uploads are what a crashed writer leaves: S3 multipart uploads never completed or
aborted, temporary files of the local store, uploads a memory store was told to leave behind.
:func:`abort_stale_uploads` removes those older than a given age.

Retries: :class:`Retrier` runs a call under a :class:`RetryPolicy`: exponential backoff with
full jitter (a uniformly random delay between 0 and ``min(max_delay, base * 2**n)``) for
errors whose ``retriable`` flag is set. Sleep, clock and random source are injectable so tests
check the delays without sleeping.
"""

from __future__ import annotations

import builtins
import io
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, Self, TypeVar, Union, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit

from logstore.clock import SYSTEM_CLOCK, Clock
from logstore.errors import (
    InvalidArgumentError,
    InvalidConfigurationError,
    LogstoreError,
    ObjectRangeError,
    StorageError,
)

_log = logging.getLogger("logstore.backends.object_store")

T = TypeVar("T")

#: What ``put`` accepts: bytes-like data, a binary file object (read from its current position
#: to EOF, not closed) or a path (``os.PathLike``; a plain ``str`` is refused as ambiguous).
PutData = Union[bytes, bytearray, memoryview, BinaryIO, "os.PathLike[str]"]

MAX_KEY_BYTES = 1024
MiB = 1024 * 1024
#: Chunk size for copying a put's source (local and memory stores).
COPY_CHUNK_BYTES = MiB

#: A function that sleeps for the given number of seconds (``time.sleep`` or a test double).
Sleep = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object.

    ``etag`` is opaque: it changes whenever the object is rewritten (S3's ETag without quotes,
    a random token in memory, inode/mtime/size for files). ``last_modified_ms`` is on the
    store's clock.
    """

    key: str
    size_bytes: int
    etag: str
    last_modified_ms: int


@dataclass(frozen=True, slots=True)
class IncompleteUpload:
    """An upload that was started and neither completed nor aborted (a crash's leftover, or one
    still running: judge by ``initiated_ms``). ``upload_id`` is store-specific and opaque."""

    key: str
    upload_id: str
    initiated_ms: int


@runtime_checkable
class ObjectStore(Protocol):
    """Immutable objects under string keys. Implementations are thread-safe.

    ``url`` names the store for messages (it never holds credentials). Every failure is a
    :class:`~logstore.errors.LogstoreError`; test ``exc.retriable`` to decide on retrying
    (implementations that talk to a network already retry internally under their policy).
    A store is a context manager that closes itself on exit.
    """

    url: str

    def put(self, key: str, data: PutData, *, if_none_match: bool = False) -> ObjectInfo:
        """Store ``data`` under ``key`` atomically: readers see the old object or the whole new
        one, never a part. Files and streams are copied in bounded chunks, never read whole.

        With ``if_none_match`` the put fails with PreconditionFailedError if the key exists.
        """
        ...

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        """The bytes ``[start, end)`` of the object (see the module docstring for the edges).

        Raises ObjectNotFoundError if there is no such object, ObjectRangeError if ``start`` is
        beyond its end.
        """
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or None if it does not exist."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a plain string prefix, not a folder),
        sorted by key. Errors reaching the store surface here; later pages may also fail
        while iterating. Objects written during the iteration may or may not appear."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object. Idempotent: deleting a missing key succeeds."""
        ...

    def check(self, *, write: bool = True) -> None:
        """Ping the store once, without retrying, and raise a clear error if it is unusable:
        ObjectStoreAccessError (not retriable) for permanent problems, ObjectStoreError
        (retriable) for an unreachable store. With ``write``, also put, read back and delete a
        small probe object under ``_logstore_check/``."""
        ...

    def list_incomplete_uploads(self, prefix: str = "") -> Iterator[IncompleteUpload]:
        """Uploads under ``prefix`` that were started and not completed or aborted, in no
        guaranteed order (stores differ)."""
        ...

    def abort_upload(self, upload: IncompleteUpload) -> None:
        """Discard an incomplete upload and its parts. Idempotent."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...


# --- keys and ranges ---------------------------------------------------------------------------


def _check_chars(value: str, what: str) -> None:
    if "\\" in value:
        raise InvalidArgumentError(f"{what} {value!r} contains a backslash")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise InvalidArgumentError(f"{what} {value!r} contains a control character")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{what} {value!r} is not valid Unicode") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidArgumentError(f"{what} is longer than {MAX_KEY_BYTES} UTF-8 bytes")


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid object key (module docstring), else raise
    InvalidArgumentError. Valid keys cannot escape a local store's root."""
    if not isinstance(key, str):
        raise InvalidArgumentError(f"an object key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidArgumentError("an object key must not be empty")
    _check_chars(key, "object key")
    if key.startswith("/"):
        raise InvalidArgumentError(f"object key {key!r} must not start with '/'")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidArgumentError(f"object key {key!r} has an empty, '.' or '..' segment")
    return key


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it may start valid keys ('' included), else raise
    InvalidArgumentError. Only complete segments are checked for '.' and '..'."""
    if not isinstance(prefix, str):
        raise InvalidArgumentError(f"a key prefix must be a str, not {type(prefix).__name__}")
    if not prefix:
        return prefix
    _check_chars(prefix, "key prefix")
    if prefix.startswith("/"):
        raise InvalidArgumentError(f"key prefix {prefix!r} must not start with '/'")
    for segment in prefix.split("/")[:-1]:
        if segment in ("", ".", ".."):
            raise InvalidArgumentError(f"key prefix {prefix!r} has an empty, '.' or '..' segment")
    return prefix


def validate_range(start: object, end: object) -> None:
    """Raise InvalidArgumentError unless ``0 <= start`` and (``end`` is None or
    ``start <= end``)."""
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise InvalidArgumentError(f"start must be an int >= 0, not {start!r}")
    if end is not None and (not isinstance(end, int) or isinstance(end, bool) or end < start):
        raise InvalidArgumentError(f"end must be None or an int >= start ({start}), not {end!r}")


def clamp_range(key: str, size: int, start: int, end: int | None) -> tuple[int, int]:
    """The ``[start, end)`` actually read from an object of ``size`` bytes (module docstring);
    raises ObjectRangeError when ``start > size``."""
    if start > size:
        raise ObjectRangeError(f"range start {start} is beyond the end of {key!r} ({size} bytes)")
    return start, size if end is None else min(end, size)


# --- put sources -------------------------------------------------------------------------------


@contextmanager
def open_put_source(data: PutData) -> Iterator[BinaryIO]:
    """A binary stream over ``put``'s ``data``; a path is opened (and closed afterwards).

    Raises InvalidArgumentError for an unsupported type or a missing file, StorageError if the
    file cannot be opened.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield io.BytesIO(data)
    elif isinstance(data, os.PathLike):
        # Opened outside the `with` below (which closes it) so only open()'s errors are translated.
        try:
            stream = open(data, "rb")  # noqa: SIM115 - closed by the `with` below
        except FileNotFoundError:
            raise InvalidArgumentError(f"put: no such file {os.fspath(data)!r}") from None
        except OSError as exc:
            raise StorageError(f"put: cannot open {os.fspath(data)!r}: {exc}") from exc
        with stream:
            yield stream
    elif hasattr(data, "read") and not isinstance(data, (str, io.TextIOBase)):
        yield data
    else:
        raise InvalidArgumentError(
            "put data must be bytes, a binary file object or an os.PathLike path, "
            f"not {type(data).__name__}"
        )


def read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Read until ``size`` bytes or EOF (a raw stream may return short reads).

    Raises StorageError if reading the source fails, InvalidArgumentError if it is not binary.
    """
    chunks: builtins.list[bytes] = []
    missing = size
    while missing > 0:
        try:
            chunk = stream.read(missing)
        except OSError as exc:
            raise StorageError(f"put: reading the source failed: {exc}") from exc
        if not chunk:
            break
        if not isinstance(chunk, (bytes, bytearray)):
            raise InvalidArgumentError("put: the source stream must be binary (returns bytes)")
        chunks.append(bytes(chunk))
        missing -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def iter_chunks(stream: BinaryIO, chunk_size: int = COPY_CHUNK_BYTES) -> Iterator[bytes]:
    """The stream's remaining bytes in chunks of ``chunk_size`` (the last may be shorter)."""
    while True:
        chunk = read_up_to(stream, chunk_size)
        if not chunk:
            return
        yield chunk
        if len(chunk) < chunk_size:
            return


# --- multipart uploads ---------------------------------------------------------------------------

#: S3's smallest part, except the last one.
MIN_PART_SIZE_BYTES = 5 * MiB


def multipart_part_count(size: int, part_size: int) -> int:
    """The parts of a multipart upload of ``size`` bytes (``S3ObjectStore`` splits so): parts
    of ``part_size`` bytes, a last piece under :data:`MIN_PART_SIZE_BYTES` joining the part
    before it."""
    full, rest = divmod(size, part_size)
    if rest == 0 or (full and rest < MIN_PART_SIZE_BYTES):
        return max(full, 1)
    return full + 1


def put_request_count(size: int, *, threshold: int, part_size: int) -> int:
    """PUT-class requests of one upload: a PutObject up to ``threshold`` bytes, else
    CreateMultipartUpload + one UploadPart per part + CompleteMultipartUpload."""
    if size <= threshold:
        return 1
    return 2 + multipart_part_count(size, part_size)


# --- retries -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry a retriable failure.

    ``max_attempts`` counts the first try. ``max_elapsed_ms`` (None: no limit) stops retrying
    when the next sleep would end past that budget, measured on the monotonic clock from the
    first attempt.
    """

    max_attempts: int = 8
    base_delay_ms: float = 100.0
    max_delay_ms: float = 20_000.0
    max_elapsed_ms: float | None = 120_000.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be >= 1, not {self.max_attempts!r}")
        if self.base_delay_ms < 0 or self.max_delay_ms < self.base_delay_ms:
            raise InvalidArgumentError("need 0 <= base_delay_ms <= max_delay_ms")
        if self.max_elapsed_ms is not None and self.max_elapsed_ms < 0:
            raise InvalidArgumentError("max_elapsed_ms must be >= 0 or None")

    def delay_cap_ms(self, retry: int) -> float:
        """The upper bound of the jittered delay before retry number ``retry`` (1-based)."""
        return min(self.max_delay_ms, self.base_delay_ms * (2.0 ** min(retry - 1, 62)))


DEFAULT_RETRY_POLICY = RetryPolicy()
NO_RETRIES = RetryPolicy(max_attempts=1)


class Retrier:
    """Runs calls under a :class:`RetryPolicy`; thread-safe (the random source is locked).

    Only :class:`~logstore.errors.LogstoreError` with ``retriable`` set is retried; anything
    else propagates at once. After the last attempt the last error is raised unchanged, with a
    note saying how many attempts were made.
    """

    def __init__(
        self,
        policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        *,
        sleep: Sleep = time.sleep,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._rng_lock = threading.Lock()

    def call(self, fn: Callable[[], T], *, what: str, policy: RetryPolicy | None = None) -> T:
        """Call ``fn`` until it returns, raises a non-retriable error or the policy gives up.
        ``what`` names the operation in log messages."""
        policy = policy or self.policy
        started_ms = self._clock.monotonic_ms()
        attempt = 1
        while True:
            try:
                return fn()
            except LogstoreError as exc:
                if not exc.retriable or attempt >= policy.max_attempts:
                    if attempt > 1:
                        exc.add_note(f"{what}: gave up after {attempt} attempts")
                    raise
                with self._rng_lock:
                    delay_ms = self._rng.uniform(0.0, policy.delay_cap_ms(attempt))
                elapsed_ms = self._clock.monotonic_ms() - started_ms
                if policy.max_elapsed_ms is not None and (
                    elapsed_ms + delay_ms > policy.max_elapsed_ms
                ):
                    exc.add_note(f"{what}: gave up after {attempt} attempts, {elapsed_ms:.0f} ms")
                    raise
                _log.debug(
                    "%s failed (attempt %d), retrying in %.0f ms: %s", what, attempt, delay_ms, exc
                )
                self._sleep(delay_ms / 1000.0)
                attempt += 1


# --- opening by URL ----------------------------------------------------------------------------


def _url_error(url: str, reason: str) -> InvalidConfigurationError:
    return InvalidConfigurationError(f"invalid object store URL {url!r}: {reason}")


_S3_INT_OPTIONS = ("max_attempts", "multipart_threshold_bytes", "part_size_bytes")
_S3_FLOAT_OPTIONS = ("connect_timeout_s", "read_timeout_s")
_S3_STR_OPTIONS = ("endpoint_url", "region", "profile", "addressing_style")


def _s3_options(url: str, query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name in options:
            raise _url_error(url, f"option {name!r} is given twice")
        try:
            if name in _S3_INT_OPTIONS:
                options[name] = int(value)
            elif name in _S3_FLOAT_OPTIONS:
                options[name] = float(value)
            elif name in _S3_STR_OPTIONS:
                options[name] = value
            else:
                known = ", ".join(_S3_STR_OPTIONS + _S3_FLOAT_OPTIONS + _S3_INT_OPTIONS)
                raise _url_error(url, f"unknown option {name!r} (known: {known})")
        except ValueError:
            raise _url_error(url, f"option {name!r} needs a number, not {value!r}") from None
    return options


def open_object_store(
    url: str,
    *,
    clock: Clock = SYSTEM_CLOCK,
    sleep: Sleep = time.sleep,
) -> ObjectStore:
    """Open the object store named by ``url`` (formats in the module docstring).

    Raises InvalidConfigurationError for a malformed URL and ObjectStoreAccessError when the
    store is known to be unusable at once (a local root that is not a directory, an invalid
    endpoint). Reachability is not tested here: call ``check()``.
    """
    if not isinstance(url, str):
        raise InvalidConfigurationError(f"an object store URL must be a str, not {type(url)}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.fragment:
        raise _url_error(url, "fragments ('#...') are not allowed")
    if scheme == "file":
        from logstore.backends.local_store import LocalObjectStore

        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise _url_error(url, "expected file:///absolute/path")
        if parts.query:
            raise _url_error(url, "file:// URLs take no options")
        return LocalObjectStore(unquote(parts.path))
    if scheme == "memory":
        from logstore.backends.memory_store import MemoryObjectStore

        if parts.path not in ("", "/") or parts.query:
            raise _url_error(url, "expected memory://name")
        if not parts.netloc:
            return MemoryObjectStore(clock=clock, sleep=sleep)
        return MemoryObjectStore.named(parts.netloc, clock=clock, sleep=sleep)
    if scheme == "s3":
        from logstore.backends.s3_store import S3ObjectStore

        if "@" in parts.netloc:
            # Never echo the URL: it may hold a secret.
            raise InvalidConfigurationError(
                "invalid s3:// URL: credentials in the URL are not supported; "
                "use the boto3 credential chain (environment, profile, instance role)"
            )
        if not parts.netloc:
            raise _url_error(url, "expected s3://bucket[/prefix][?options]")
        prefix = unquote(parts.path.lstrip("/"))
        options = _s3_options(url, parts.query)
        max_attempts = options.pop("max_attempts", None)
        retry = DEFAULT_RETRY_POLICY
        if isinstance(max_attempts, int):
            try:
                retry = RetryPolicy(max_attempts=max_attempts)
            except InvalidArgumentError as exc:
                raise _url_error(url, str(exc)) from None
        try:
            return S3ObjectStore(
                parts.netloc, prefix, retry=retry, clock=clock, sleep=sleep, **options
            )
        except InvalidArgumentError as exc:
            raise _url_error(url, str(exc)) from None
    raise _url_error(url, "the scheme must be file://, s3:// or memory://")


def abort_stale_uploads(
    store: ObjectStore, *, prefix: str = "", older_than_ms: int, now_ms: int
) -> builtins.list[IncompleteUpload]:
    """Abort every incomplete upload under ``prefix`` initiated before ``now_ms -
    older_than_ms`` and return them. Younger ones may still be running and are kept."""
    cutoff_ms = now_ms - older_than_ms
    stale = [u for u in store.list_incomplete_uploads(prefix) if u.initiated_ms < cutoff_ms]
    for upload in stale:
        store.abort_upload(upload)
    return stale


__all__ = [
    "DEFAULT_RETRY_POLICY",
    "NO_RETRIES",
    "IncompleteUpload",
    "ObjectInfo",
    "ObjectStore",
    "PutData",
    "Retrier",
    "RetryPolicy",
    "abort_stale_uploads",
    "multipart_part_count",
    "open_object_store",
    "put_request_count",
    "validate_key",
    "validate_prefix",
]
