"""The S3 object store through boto3 (``s3://bucket/prefix?endpoint_url=...&region=...``).

Works with AWS S3 and S3-compatible stores (MinIO, R2, Ceph, moto); credentials come from
boto3's usual chain. The object ``k`` is stored under the S3 key ``<prefix>/k`` (the prefix,
when given, always ends with ``/``), so ``list`` returns keys relative to the prefix.

This module is the boundary to boto3/botocore: nothing of theirs leaves it. Every failure is
translated (:func:`_translate`) into :mod:`logstore.errors`:

* ObjectNotFoundError: NoSuchKey, 404 (``head`` answers None instead).
* PreconditionFailedError: 412 from ``If-None-Match: *``.
* ObjectStoreAccessError (never retried): AccessDenied, NoSuchBucket, InvalidAccessKeyId,
  SignatureDoesNotMatch, wrong region (PermanentRedirect, AuthorizationHeaderMalformed), any
  403/301, missing credentials, TLS failures, an invalid endpoint URL.
* ObjectStoreError, retried: throttling (503 SlowDown, 429), other 5xx, RequestTimeout, 409
  conflicts of concurrent conditional writes, timeouts, refused or dropped connections,
  truncated bodies. Other 4xx answers are ObjectStoreError with ``retriable=False``.

botocore's own retries are switched off (``total_max_attempts=1``): one retry loop, ours
(:class:`~.object_store.Retrier`), with full-jitter backoff, an injectable sleep, clock and
random source, and a per-request count (:meth:`S3ObjectStore.request_counts`).

Puts: up to ``multipart_threshold_bytes`` the data is one PutObject, retried as a whole. Larger
data is a multipart upload of ``part_size_bytes`` parts read one at a time from the source (at
most threshold + part size bytes in memory), each part retried on its own; any failure aborts
the upload (a crash leaves it for :func:`~.object_store.abort_stale_uploads`). With
``if_none_match`` the PutObject or CompleteMultipartUpload carries ``If-None-Match: *``; a 412
after an earlier attempt may have reached S3 sets ``maybe_own_write`` on the error, and a
CompleteMultipartUpload retried after a lost answer that finds the upload gone checks, by size,
whether the object is there.

Thread-safety: boto3 clients are thread-safe; one client serves every thread.
"""

from __future__ import annotations

import builtins
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, Callable, Iterator, Mapping, TypeVar

import boto3
import urllib3.exceptions
from boto3.exceptions import Boto3Error
from botocore import exceptions as bce
from botocore.config import Config

from logstore.backends.object_store import (
    DEFAULT_RETRY_POLICY,
    MAX_KEY_BYTES,
    NO_RETRIES,
    IncompleteUpload,
    MiB,
    ObjectInfo,
    PutData,
    Retrier,
    RetryPolicy,
    Sleep,
    clamp_range,
    open_put_source,
    read_up_to,
    validate_key,
    validate_prefix,
    validate_range,
)
from logstore.clock import SYSTEM_CLOCK, Clock
from logstore.errors import (
    InvalidArgumentError,
    LogstoreError,
    ObjectNotFoundError,
    ObjectRangeError,
    ObjectStoreAccessError,
    ObjectStoreError,
    PreconditionFailedError,
)

T = TypeVar("T")

DEFAULT_PART_SIZE_BYTES = 64 * MiB
MIN_PART_SIZE_BYTES = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum number of parts
MAX_SINGLE_PUT_BYTES = 5 * 1024 * MiB
# Aborting after a failed upload is best effort: a leftover is the cleaner's job.
_ABORT_POLICY = RetryPolicy(max_attempts=3, base_delay_ms=100.0, max_delay_ms=1_000.0)

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchUpload", "NotFound", "404"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
_RANGE_CODES = frozenset({"InvalidRange", "416"})
_ACCESS_HINTS: Mapping[str, str] = {
    "NoSuchBucket": "the bucket does not exist: create it or fix the URL",
    "AccessDenied": "the credentials lack permission (s3:ListBucket, GetObject, PutObject, "
    "DeleteObject, ListBucketMultipartUploads, AbortMultipartUpload)",
    "AllAccessDisabled": "all access to this bucket is disabled",
    "InvalidAccessKeyId": "the access key id is unknown: check the credentials",
    "SignatureDoesNotMatch": "the secret key is wrong: check the credentials",
    "ExpiredToken": "the session token has expired: refresh the credentials",
    "InvalidToken": "the session token is invalid: check the credentials",
    "InvalidBucketName": "the bucket name is not valid",
    "PermanentRedirect": "the bucket is in another region: set region= in the URL",
    "AuthorizationHeaderMalformed": "wrong region for this bucket: set region= in the URL",
    "403": "access denied: check the credentials and their permissions",
    "Forbidden": "access denied: check the credentials and their permissions",
    "301": "the bucket is in another region: set region= in the URL",
}
# Answers meaning the request was not carried out, so repeating it cannot apply it twice.
_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequests", "RequestLimitExceeded",
     "ServiceUnavailable", "503"}
)
_RETRIABLE_CODES = frozenset(
    {"InternalError", "RequestTimeout", "RequestTimeoutException", "ConditionalRequestConflict",
     "OperationAborted", "BadDigest", "IncompleteBody"}
)
_CREDENTIAL_ERRORS = (
    bce.NoCredentialsError,
    bce.PartialCredentialsError,
    bce.CredentialRetrievalError,
    bce.ProfileNotFound,
    bce.NoAuthTokenError,
    bce.TokenRetrievalError,
    bce.SSOError,
)
_NOT_SENT_ERRORS = (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ProxyConnectionError)
_TRANSIENT_ERRORS = (
    bce.HTTPClientError,
    bce.ConnectionError,
    bce.IncompleteReadError,
    bce.ChecksumError,
    bce.FlexibleChecksumError,
    urllib3.exceptions.HTTPError,
    OSError,
)
# What the boundary catches: everything boto3/botocore/urllib3 raise, and socket errors.
_FOREIGN_ERRORS = (bce.ClientError, bce.BotoCoreError, Boto3Error, urllib3.exceptions.HTTPError,
                   OSError)


def _translate(exc: BaseException, where: str) -> tuple[LogstoreError, bool]:
    """The logstore error for a boto3/botocore failure, and whether the request may have been
    carried out by S3 (so a retried conditional write may meet its own earlier success)."""
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = f"{where}: {code or status}: {error.get('Message') or 'no message'}"
        if code in _NOT_FOUND_CODES:
            return ObjectNotFoundError(text), False
        if code in _PRECONDITION_CODES or status == 412:
            return PreconditionFailedError(text), False
        if code in _RANGE_CODES or status == 416:
            return ObjectRangeError(text), False
        hint = _ACCESS_HINTS.get(code) or _ACCESS_HINTS.get(str(status))
        if hint is not None:
            return ObjectStoreAccessError(f"{text} ({hint})"), False
        if code in _THROTTLE_CODES or status in (429, 503):
            return ObjectStoreError(text, retriable=True), False
        if code in _RETRIABLE_CODES or status >= 500:
            return ObjectStoreError(text, retriable=True), True
        return ObjectStoreError(text, retriable=False), False
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return ObjectStoreAccessError(f"{where}: no usable credentials: {exc}"), False
    if isinstance(exc, bce.SSLError):
        return ObjectStoreAccessError(f"{where}: TLS failed (check endpoint_url): {exc}"), False
    if isinstance(exc, _NOT_SENT_ERRORS):
        return ObjectStoreError(f"{where}: cannot connect: {exc}", retriable=True), False
    if isinstance(exc, _TRANSIENT_ERRORS):
        return ObjectStoreError(f"{where}: {type(exc).__name__}: {exc}", retriable=True), True
    if isinstance(exc, bce.ParamValidationError):
        return InvalidArgumentError(f"{where}: {exc}"), False
    return ObjectStoreError(f"{where}: {type(exc).__name__}: {exc}", retriable=False), False


def _millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _etag(response: Mapping[str, Any]) -> str:
    return str(response.get("ETag", "")).strip('"')


def _iter_parts(head: bytes, stream: BinaryIO, part_size: int) -> Iterator[bytes]:
    """Parts of ``part_size`` bytes (the last may be shorter): ``head`` then the stream."""
    view = memoryview(head)
    while len(view) >= part_size:
        yield bytes(view[:part_size])
        view = view[part_size:]
    chunk = bytes(view) + read_up_to(stream, part_size - len(view))
    while chunk:
        yield chunk
        if len(chunk) < part_size:
            return
        chunk = read_up_to(stream, part_size)


class S3ObjectStore:
    """Objects in an S3 bucket under a prefix. See the module docstring."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        addressing_style: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        multipart_threshold_bytes: int = DEFAULT_PART_SIZE_BYTES,
        part_size_bytes: int = DEFAULT_PART_SIZE_BYTES,
        list_page_size: int = 1000,
        max_pool_connections: int = 16,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = time.sleep,
        rng: Any = None,
        client: Any = None,
    ) -> None:
        """``client`` replaces the boto3 client built from the other options (tests)."""
        if not bucket or "/" in bucket:
            raise InvalidArgumentError(f"invalid bucket name {bucket!r}")
        prefix = prefix.strip("/")
        self._prefix = validate_prefix(f"{prefix}/" if prefix else "")
        if not MIN_PART_SIZE_BYTES <= part_size_bytes <= MAX_SINGLE_PUT_BYTES:
            raise InvalidArgumentError(f"part_size_bytes must be in [5 MiB, 5 GiB]: {part_size_bytes}")
        if not 0 <= multipart_threshold_bytes <= MAX_SINGLE_PUT_BYTES:
            raise InvalidArgumentError("multipart_threshold_bytes must be in [0, 5 GiB]")
        if not 1 <= list_page_size <= 1000:
            raise InvalidArgumentError("list_page_size must be in [1, 1000]")
        if addressing_style not in (None, "auto", "path", "virtual"):
            raise InvalidArgumentError("addressing_style must be auto, path or virtual")
        self.bucket = bucket
        self.url = f"s3://{bucket}/{self._prefix}" + (
            f"?endpoint_url={endpoint_url}" if endpoint_url else ""
        )
        self._threshold = multipart_threshold_bytes
        self._part_size = part_size_bytes
        self._page_size = list_page_size
        self._clock = clock
        self._retrier = Retrier(retry, sleep=sleep, clock=clock, rng=rng)
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        if client is not None:
            self._client = client
            return
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"total_max_attempts": 1},
            max_pool_connections=max_pool_connections,
            s3={"addressing_style": addressing_style or "auto"},
            user_agent_extra="logstore",
        )
        try:
            session = boto3.session.Session(profile_name=profile)
            self._client = session.client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        except (*_FOREIGN_ERRORS, ValueError) as exc:
            raise ObjectStoreAccessError(f"{self.url}: cannot create an S3 client: {exc}") from None

    # --- the ObjectStore interface ----------------------------------------------------------

    def put(self, key: str, data: PutData, *, if_none_match: bool = False) -> ObjectInfo:
        full = self._full_key(key)
        with open_put_source(data) as stream:
            head = read_up_to(stream, self._threshold + 1)
            if len(head) <= self._threshold:
                return self._put_single(key, full, head, if_none_match, self._retrier.policy)
            return self._put_multipart(key, full, head, stream, if_none_match)

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        full = self._full_key(key)
        validate_range(start, end)
        if end == start:
            return self._empty_read(key, start)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if start or end is not None:
            params["Range"] = f"bytes={start}-{'' if end is None else end - 1}"

        def get_object() -> bytes:
            body = self._client.get_object(**params)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

        try:
            return self._retried("GetObject", key, get_object)
        except ObjectRangeError:
            # S3 answers 416 for a start at or past the end; the contract wants b"" at the end.
            return self._empty_read(key, start)

    def head(self, key: str) -> ObjectInfo | None:
        full = self._full_key(key)
        try:
            response = self._retried(
                "HeadObject", key, lambda: self._client.head_object(Bucket=self.bucket, Key=full)
            )
        except ObjectNotFoundError:
            return None
        return ObjectInfo(
            key, int(response["ContentLength"]), _etag(response), _millis(response["LastModified"])
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        params = {"Bucket": self.bucket, "Prefix": self._prefix + validate_prefix(prefix),
                  "MaxKeys": self._page_size}
        cut = len(self._prefix)

        def page(token: str | None) -> dict[str, Any]:
            extra = {"ContinuationToken": token} if token else {}
            return self._retried(
                "ListObjectsV2", prefix, lambda: self._client.list_objects_v2(**params, **extra)
            )

        def items(first: dict[str, Any]) -> Iterator[ObjectInfo]:
            current = first
            while True:
                for item in current.get("Contents", ()):
                    yield ObjectInfo(item["Key"][cut:], int(item["Size"]), _etag(item),
                                     _millis(item["LastModified"]))
                if not current.get("IsTruncated"):
                    return
                current = page(current["NextContinuationToken"])

        return items(page(None))  # the first page now: a missing bucket fails here

    def delete(self, key: str) -> None:
        full = self._full_key(key)
        try:
            self._retried(
                "DeleteObject", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full)
            )
        except ObjectNotFoundError:
            pass  # S3 answers 204 for a missing key; some compatible stores say NoSuchKey

    def check(self, *, write: bool = True) -> None:
        self._attempt(
            "ListObjectsV2", "",
            lambda: self._client.list_objects_v2(Bucket=self.bucket, Prefix=self._prefix, MaxKeys=1),
        )
        if not write:
            return
        key = f"_logstore_check/{uuid.uuid4().hex}"
        full = self._full_key(key)
        self._put_single(key, full, b"logstore check", False, NO_RETRIES)
        try:
            self._attempt(
                "GetObject", key,
                lambda: self._client.get_object(Bucket=self.bucket, Key=full)["Body"].read(),
            )
        finally:
            self._attempt(
                "DeleteObject", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full)
            )

    def list_incomplete_uploads(self, prefix: str = "") -> Iterator[IncompleteUpload]:
        params = {"Bucket": self.bucket, "Prefix": self._prefix + validate_prefix(prefix),
                  "MaxUploads": self._page_size}
        cut = len(self._prefix)

        def page(markers: dict[str, str]) -> dict[str, Any]:
            return self._retried(
                "ListMultipartUploads", prefix,
                lambda: self._client.list_multipart_uploads(**params, **markers),
            )

        def items(first: dict[str, Any]) -> Iterator[IncompleteUpload]:
            current = first
            while True:
                for item in current.get("Uploads", ()):
                    yield IncompleteUpload(item["Key"][cut:], item["UploadId"],
                                           _millis(item["Initiated"]))
                if not current.get("IsTruncated"):
                    return
                current = page({"KeyMarker": current["NextKeyMarker"],
                                "UploadIdMarker": current["NextUploadIdMarker"]})

        return items(page({}))

    def abort_upload(self, upload: IncompleteUpload) -> None:
        full = self._full_key(upload.key)
        try:
            self._retried(
                "AbortMultipartUpload", upload.key,
                lambda: self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload.upload_id
                ),
            )
        except ObjectNotFoundError:
            pass  # completed or aborted already

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    def request_counts(self) -> dict[str, int]:
        """HTTP requests made per S3 operation (every attempt counts), e.g. ``UploadPart``."""
        with self._counts_lock:
            return dict(self._counts)

    def __enter__(self) -> S3ObjectStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.url!r})"

    # --- puts -------------------------------------------------------------------------------

    def _put_single(
        self, key: str, full: str, body: bytes, if_none_match: bool, policy: RetryPolicy
    ) -> ObjectInfo:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "Body": body}
        if if_none_match:
            params["IfNoneMatch"] = "*"
        response = self._conditional(
            "PutObject", key, lambda: self._client.put_object(**params), policy=policy
        )
        return ObjectInfo(key, len(body), _etag(response), self._server_time_ms(response))

    def _put_multipart(
        self, key: str, full: str, head: bytes, stream: BinaryIO, if_none_match: bool
    ) -> ObjectInfo:
        created = self._retried(
            "CreateMultipartUpload", key,
            lambda: self._client.create_multipart_upload(Bucket=self.bucket, Key=full),
        )
        upload_id = created["UploadId"]
        ids = {"Bucket": self.bucket, "Key": full, "UploadId": upload_id}
        try:
            parts: builtins.list[dict[str, Any]] = []
            total = 0
            for number, chunk in enumerate(_iter_parts(head, stream, self._part_size), 1):
                if number > MAX_PARTS:
                    raise InvalidArgumentError(
                        f"put {key!r}: more than {MAX_PARTS} parts; raise part_size_bytes"
                    )
                response = self._retried(
                    "UploadPart", key,
                    lambda: self._client.upload_part(**ids, PartNumber=number, Body=chunk),
                )
                parts.append({"PartNumber": number, "ETag": response["ETag"]})
                total += len(chunk)
            params: dict[str, Any] = {**ids, "MultipartUpload": {"Parts": parts}}
            if if_none_match:
                params["IfNoneMatch"] = "*"
            response = self._conditional(
                "CompleteMultipartUpload", key,
                lambda: self._client.complete_multipart_upload(**params),
                expected_size=total,
            )
            return ObjectInfo(key, total, _etag(response), self._server_time_ms(response))
        except BaseException:
            self._abort_quietly(key, ids)
            raise

    def _conditional(
        self,
        operation: str,
        key: str,
        call: Callable[[], Any],
        *,
        policy: RetryPolicy | None = None,
        expected_size: int | None = None,
    ) -> Any:
        """A write retried so that its own earlier success is recognised where possible."""
        maybe_applied = False

        def attempt() -> Any:
            nonlocal maybe_applied
            try:
                return self._attempt(operation, key, call)
            except PreconditionFailedError as exc:
                if maybe_applied:
                    raise PreconditionFailedError(str(exc), maybe_own_write=True) from None
                raise
            except ObjectNotFoundError as exc:  # NoSuchUpload: completed by our lost attempt?
                info = self.head(key) if maybe_applied else None
                if info is not None and info.size_bytes == expected_size:
                    return {"ETag": info.etag}
                raise ObjectStoreError(f"{exc} (the upload was aborted)", retriable=False) from None
            except ObjectStoreError as exc:
                maybe_applied = maybe_applied or getattr(exc, "maybe_applied", False)
                raise

        return self._retrier.call(attempt, what=f"{self.url} {operation} {key!r}", policy=policy)

    def _abort_quietly(self, key: str, ids: dict[str, Any]) -> None:
        try:
            self._retried(
                "AbortMultipartUpload", key,
                lambda: self._client.abort_multipart_upload(**ids), policy=_ABORT_POLICY,
            )
        except LogstoreError:
            pass  # the cleaner's abort_stale_uploads removes what is left

    # --- requests ---------------------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        full = self._prefix + validate_key(key)
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise InvalidArgumentError(f"object key {key!r} is too long with the prefix")
        return full

    def _attempt(self, operation: str, key: str, call: Callable[[], T]) -> T:
        """One request: counted, and every foreign exception translated."""
        with self._counts_lock:
            self._counts[operation] += 1
        try:
            return call()
        except _FOREIGN_ERRORS as exc:
            error, maybe_applied = _translate(exc, f"{self.url}: {operation} {key!r}")
            error.maybe_applied = maybe_applied  # type: ignore[attr-defined]
            raise error from exc

    def _retried(
        self, operation: str, key: str, call: Callable[[], T], *, policy: RetryPolicy | None = None
    ) -> T:
        return self._retrier.call(
            lambda: self._attempt(operation, key, call),
            what=f"{self.url} {operation} {key!r}",
            policy=policy,
        )

    def _empty_read(self, key: str, start: int) -> bytes:
        info = self.head(key)
        if info is None:
            raise ObjectNotFoundError(f"{self.url}: no object {key!r}")
        clamp_range(key, info.size_bytes, start, start)
        return b""

    def _server_time_ms(self, response: Mapping[str, Any]) -> int:
        """The answer's Date header: the store's clock, as ``last_modified_ms`` elsewhere."""
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            return _millis(parsedate_to_datetime(date))
        except (TypeError, ValueError):
            return self._clock.time_ms()
