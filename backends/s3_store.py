"""The S3 object store (``s3://bucket/prefix?endpoint_url=...&region=...``), through botocore.

Works with AWS S3 and S3-compatible stores (MinIO, R2, Ceph, moto); credentials come from
boto3's usual chain. The object ``k`` is stored under the S3 key ``<prefix>/k`` (the prefix,
when given, always ends with ``/``), so ``list`` returns keys relative to the prefix.

The client is botocore's (boto3's engine; boto3 adds only transfer helpers, not used here).
This module is the boundary to it: every failure is translated (:func:`_translate`) into
:mod:`logstore.errors`, nothing of botocore's leaves it:

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
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, Self

import botocore.session
import urllib3.exceptions
from botocore import exceptions as bce
from botocore import xform_name
from botocore.config import Config
from logstore.backends.object_store import (
    DEFAULT_RETRY_POLICY,
    MAX_KEY_BYTES,
    MIN_PART_SIZE_BYTES,
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

DEFAULT_PART_SIZE_BYTES = 64 * MiB
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
_WRONG_ENDPOINT = "no bucket there: check the bucket name and endpoint_url"
# Retriable answers meaning the request was not carried out (throttling; a 409 because a
# concurrent conditional write to the key is in progress), so it cannot have taken effect.
_NOT_APPLIED_CODES = frozenset(
    [
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "503",
        "ConditionalRequestConflict",
        "OperationAborted",
    ]
)
# Retriable answers after which the request may or may not have been carried out.
_RETRIABLE_CODES = frozenset(
    ["InternalError", "RequestTimeout", "RequestTimeoutException", "BadDigest", "IncompleteBody"]
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
# What the boundary catches: everything botocore/urllib3 raise, and socket errors.
_FOREIGN_ERRORS = (bce.ClientError, bce.BotoCoreError, urllib3.exceptions.HTTPError, OSError)

# Loading botocore's service models costs ~0.1 s per session; every store shares one loader
# (the models are immutable), while each store keeps its own session and credential chain.
_loader_lock = threading.Lock()
_shared_loader: Any = None


def _create_client(
    profile: str | None, endpoint_url: str | None, region: str | None, config: Config
) -> Any:
    global _shared_loader
    with _loader_lock:  # botocore sessions are not thread-safe while clients are created
        session = botocore.session.Session(profile=profile)
        if _shared_loader is None:
            _shared_loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _shared_loader)
        return session.create_client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )


def _translate(exc: BaseException, operation: str, where: str) -> tuple[LogstoreError, bool]:
    """The logstore error for a botocore failure of ``operation``, and whether the request may
    have been carried out by S3 (so a retried conditional write may meet its own success)."""
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = f"{where}: {code or status}: {error.get('Message') or 'no message'}"
        if code in _NOT_FOUND_CODES or (status == 404 and code not in _ACCESS_HINTS):
            if operation.startswith("List"):  # no object involved: the bucket or endpoint
                return ObjectStoreAccessError(f"{text} ({_WRONG_ENDPOINT})"), False
            return ObjectNotFoundError(text), False
        if code in _PRECONDITION_CODES or status == 412:
            return PreconditionFailedError(text), False
        if code in _RANGE_CODES or status == 416:
            return ObjectRangeError(text), False
        hint = _ACCESS_HINTS.get(code) or _ACCESS_HINTS.get(str(status))
        if hint is not None:
            return ObjectStoreAccessError(f"{text} ({hint})"), False
        if code in _NOT_APPLIED_CODES or status in (429, 503):
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
    """Parts of ``part_size`` bytes: ``head`` then the stream. A last piece smaller than S3's
    minimum part (5 MiB) joins the part before it (only the last part may be small, and a part
    may be up to 5 GiB), which saves a request: a 1 GiB segment plus its index is 16 parts,
    not 17. Holds at most one part plus 5 MiB."""
    window = part_size + MIN_PART_SIZE_BYTES
    pending = bytearray(head)
    eof = False
    while True:
        if not eof and len(pending) < window:
            wanted = window - len(pending)
            more = read_up_to(stream, wanted)
            eof = len(more) < wanted
            pending += more
        if eof and len(pending) < window:
            if pending:
                yield bytes(pending)
            return
        yield bytes(pending[:part_size])
        del pending[:part_size]


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
        rng: random.Random | None = None,
        client: Any = None,
    ) -> None:
        """``client`` replaces the botocore client built from the other options (tests)."""
        if not bucket or "/" in bucket:
            raise InvalidArgumentError(f"invalid bucket name {bucket!r}")
        prefix = prefix.strip("/")
        self._prefix = validate_prefix(f"{prefix}/" if prefix else "")
        if not MIN_PART_SIZE_BYTES <= part_size_bytes <= MAX_SINGLE_PUT_BYTES:
            raise InvalidArgumentError(
                f"part_size_bytes must be in [5 MiB, 5 GiB]: {part_size_bytes}"
            )
        if not 0 <= multipart_threshold_bytes <= MAX_SINGLE_PUT_BYTES:
            raise InvalidArgumentError("multipart_threshold_bytes must be in [0, 5 GiB]")
        if not 1 <= list_page_size <= 1000:
            raise InvalidArgumentError("list_page_size must be in [1, 1000]")
        if addressing_style not in (None, "auto", "path", "virtual"):
            raise InvalidArgumentError("addressing_style must be auto, path or virtual")
        self.bucket = bucket
        self.url = f"s3://{bucket}/{self._prefix}"
        if endpoint_url:
            self.url += f"?endpoint_url={endpoint_url}"
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
            self._client = _create_client(profile, endpoint_url, region, config)
        except (*_FOREIGN_ERRORS, ValueError) as exc:
            raise ObjectStoreAccessError(f"{self.url}: cannot create an S3 client: {exc}") from None

    # --- the ObjectStore interface ----------------------------------------------------------

    def put(self, key: str, data: PutData, *, if_none_match: bool = False) -> ObjectInfo:
        full = self._full_key(key)
        with open_put_source(data) as stream:
            head = read_up_to(stream, self._threshold + 1)
            if len(head) <= self._threshold:
                return self._put_single(key, full, head, if_none_match)
            return self._put_multipart(key, full, head, stream, if_none_match)

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        full = self._full_key(key)
        validate_range(start, end)
        if end == start:
            return self._empty_read(key, start)
        params: dict[str, Any] = {"Key": full}
        if start or end is not None:
            params["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            # The body is read inside the attempt: a connection dropped mid-body is retried.
            return self._request("GetObject", key, read_body=True, **params)
        except ObjectRangeError:
            # S3 answers 416 for a start at or past the end; the contract wants b"" at the end.
            return self._empty_read(key, start)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            answer = self._request("HeadObject", key, Key=self._full_key(key))
        except ObjectNotFoundError:
            return None
        size, modified = int(answer["ContentLength"]), _millis(answer["LastModified"])
        return ObjectInfo(key, size, _etag(answer), modified)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        params = {"Prefix": self._prefix + validate_prefix(prefix), "MaxKeys": self._page_size}
        pages = self._pages(
            "ListObjectsV2",
            prefix,
            params,
            lambda p: {"ContinuationToken": p["NextContinuationToken"]},
        )
        cut = len(self._prefix)
        return (
            ObjectInfo(
                item["Key"][cut:], int(item["Size"]), _etag(item), _millis(item["LastModified"])
            )
            for page in pages
            for item in page.get("Contents", ())
        )

    def delete(self, key: str) -> None:
        try:
            self._request("DeleteObject", key, Key=self._full_key(key))
        except ObjectNotFoundError:
            pass  # S3 answers 204 for a missing key; some compatible stores say NoSuchKey

    def check(self, *, write: bool = True) -> None:
        # One attempt per request: a prompt answer matters more here than riding out a blip.
        self._request("ListObjectsV2", "", policy=NO_RETRIES, Prefix=self._prefix, MaxKeys=1)
        if not write:
            return
        key = f"_logstore_check/{uuid.uuid4().hex}"
        full = self._full_key(key)
        self._put_single(key, full, b"logstore check", False, policy=NO_RETRIES)
        try:
            self._request("GetObject", key, policy=NO_RETRIES, read_body=True, Key=full)
        finally:
            self._request("DeleteObject", key, policy=NO_RETRIES, Key=full)

    def list_incomplete_uploads(self, prefix: str = "") -> Iterator[IncompleteUpload]:
        params = {"Prefix": self._prefix + validate_prefix(prefix), "MaxUploads": self._page_size}
        pages = self._pages(
            "ListMultipartUploads",
            prefix,
            params,
            lambda p: {"KeyMarker": p["NextKeyMarker"], "UploadIdMarker": p["NextUploadIdMarker"]},
        )
        cut = len(self._prefix)
        return (
            IncompleteUpload(item["Key"][cut:], item["UploadId"], _millis(item["Initiated"]))
            for page in pages
            for item in page.get("Uploads", ())
        )

    def abort_upload(self, upload: IncompleteUpload) -> None:
        full = self._full_key(upload.key)
        try:
            self._request("AbortMultipartUpload", upload.key, Key=full, UploadId=upload.upload_id)
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.url!r})"

    # --- puts -------------------------------------------------------------------------------

    def _put_single(
        self,
        key: str,
        full: str,
        body: bytes,
        if_none_match: bool,
        *,
        policy: RetryPolicy | None = None,
    ) -> ObjectInfo:
        condition = {"IfNoneMatch": "*"} if if_none_match else {}
        answer = self._conditional("PutObject", key, policy, Key=full, Body=body, **condition)
        return ObjectInfo(key, len(body), _etag(answer), self._server_time_ms(answer))

    def _put_multipart(
        self, key: str, full: str, head: bytes, stream: BinaryIO, if_none_match: bool
    ) -> ObjectInfo:
        upload_id = self._request("CreateMultipartUpload", key, Key=full)["UploadId"]
        ids = {"Key": full, "UploadId": upload_id}
        try:
            parts: builtins.list[dict[str, Any]] = []
            total = 0
            for number, chunk in enumerate(_iter_parts(head, stream, self._part_size), 1):
                if number > MAX_PARTS:
                    raise InvalidArgumentError(
                        f"put {key!r}: more than {MAX_PARTS} parts; raise part_size_bytes"
                    )
                answer = self._request("UploadPart", key, PartNumber=number, Body=chunk, **ids)
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                total += len(chunk)
            condition = {"IfNoneMatch": "*"} if if_none_match else {}
            answer = self._conditional(
                "CompleteMultipartUpload",
                key,
                None,
                expected_size=total,
                MultipartUpload={"Parts": parts},
                **ids,
                **condition,
            )
            return ObjectInfo(key, total, _etag(answer), self._server_time_ms(answer))
        except BaseException:
            try:
                self._request("AbortMultipartUpload", key, policy=_ABORT_POLICY, **ids)
            except LogstoreError:
                pass  # the cleaner's abort_stale_uploads removes what is left
            raise

    def _conditional(
        self,
        operation: str,
        key: str,
        policy: RetryPolicy | None,
        *,
        expected_size: int | None = None,
        **params: Any,
    ) -> Any:
        """A write retried so that its own earlier success is recognised where possible."""
        maybe_applied = False

        def attempt() -> Any:
            nonlocal maybe_applied
            try:
                return self._attempt(operation, key, params, read_body=False)
            except PreconditionFailedError as exc:
                if maybe_applied:
                    raise PreconditionFailedError(str(exc), maybe_own_write=True) from None
                raise
            except ObjectNotFoundError as exc:
                if expected_size is None:
                    raise
                # NoSuchUpload: completed by our own attempt whose answer was lost?
                info = self.head(key) if maybe_applied else None
                if info is not None and info.size_bytes == expected_size:
                    return {"ETag": info.etag}
                raise ObjectStoreError(f"{exc} (the upload was aborted)", retriable=False) from None
            except ObjectStoreError as exc:
                maybe_applied = maybe_applied or getattr(exc, "maybe_applied", False)
                raise

        return self._retrier.call(attempt, what=f"{self.url} {operation} {key!r}", policy=policy)

    # --- requests ---------------------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        full = self._prefix + validate_key(key)
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise InvalidArgumentError(f"object key {key!r} is too long with the prefix")
        return full

    def _attempt(self, operation: str, key: str, params: dict[str, Any], *, read_body: bool) -> Any:
        """One request (``operation`` names the client method, e.g. HeadObject: head_object):
        counted, and every foreign exception translated. With ``read_body``, the body's bytes."""
        with self._counts_lock:
            self._counts[operation] += 1
        try:
            answer = getattr(self._client, xform_name(operation))(Bucket=self.bucket, **params)
            if not read_body:
                return answer
            with closing(answer["Body"]) as body:
                return bytes(body.read())
        except _FOREIGN_ERRORS as exc:
            error, maybe_applied = _translate(exc, operation, f"{self.url}: {operation} {key!r}")
            error.maybe_applied = maybe_applied  # type: ignore[attr-defined]
            raise error from exc

    def _request(
        self,
        operation: str,
        key: str,
        *,
        policy: RetryPolicy | None = None,
        read_body: bool = False,
        **params: Any,
    ) -> Any:
        """``_attempt`` under the retry policy (the store's, unless ``policy`` is given)."""
        return self._retrier.call(
            lambda: self._attempt(operation, key, params, read_body=read_body),
            what=f"{self.url} {operation} {key!r}",
            policy=policy,
        )

    def _pages(
        self,
        operation: str,
        prefix: str,
        params: dict[str, Any],
        next_markers: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Iterator[dict[str, Any]]:
        """The answers of a paginated listing. The first page is fetched now, so that a
        missing bucket fails the call itself; later pages while iterating."""

        def follow(page: dict[str, Any]) -> Iterator[dict[str, Any]]:
            while True:
                yield page
                if not page.get("IsTruncated"):
                    return
                page = self._request(operation, prefix, **params, **next_markers(page))

        return follow(self._request(operation, prefix, **params))

    def _empty_read(self, key: str, start: int) -> bytes:
        info = self.head(key)
        if info is None:
            raise ObjectNotFoundError(f"{self.url}: no object {key!r}")
        clamp_range(key, info.size_bytes, start, start)
        return b""

    def _server_time_ms(self, answer: Mapping[str, Any]) -> int:
        """The answer's Date header: the store's clock, as ``last_modified_ms`` elsewhere."""
        date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            return _millis(parsedate_to_datetime(date))
        except (TypeError, ValueError):
            return self._clock.time_ms()
