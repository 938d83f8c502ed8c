"""The S3 store's own behaviour: retries and backoff, error translation, multipart uploads,
prefixes, incomplete uploads, check(), URLs. Faults are injected by wrapping a moto-backed
client; sleeps are recorded, never slept. (The ObjectStore contract is in
test_object_store_contract.py.)"""

from __future__ import annotations

import io
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore import exceptions as bce
from logstore.backends.object_store import (
    IncompleteUpload,
    Retrier,
    RetryPolicy,
    abort_stale_uploads,
    open_object_store,
)
from logstore.backends.s3_store import S3ObjectStore

from logstore.clock import ManualClock
from logstore.errors import (
    InvalidArgumentError,
    InvalidConfigurationError,
    LogstoreError,
    ObjectStoreAccessError,
    ObjectStoreError,
    PreconditionFailedError,
)

MiB = 1024 * 1024
POLICY = RetryPolicy(max_attempts=5, base_delay_ms=100, max_delay_ms=1_000, max_elapsed_ms=None)
ENDPOINT = "https://s3.example.invalid"


def client_error(code: str, status: int, operation: str = "Operation") -> bce.ClientError:
    return bce.ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


class FaultyClient:
    """A botocore client whose methods fail first with queued errors, or, with ``after``,
    fail after the real call took effect (a lost response)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._faults: dict[str, deque[tuple[BaseException, bool]]] = {}
        self.calls: Counter[str] = Counter()

    def fail(self, method: str, *errors: BaseException, after: bool = False) -> None:
        self._faults.setdefault(method, deque()).extend((e, after) for e in errors)

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if not callable(real) or name.startswith("_"):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            queue = self._faults.get(name)
            if queue:
                error, after = queue.popleft()
                if after:
                    real(*args, **kwargs)
                raise error
            return real(*args, **kwargs)

        return call

    def close(self) -> None:
        """The shared admin client stays open."""


@pytest.fixture
def faulty(s3_admin_client: Any, s3_mock_bucket: str) -> FaultyClient:
    return FaultyClient(s3_admin_client)


@pytest.fixture
def make_store(
    s3_mock_bucket: str, faulty: FaultyClient, fake_sleep: Callable[[float], None]
) -> Callable[..., S3ObjectStore]:
    def make(**options: Any) -> S3ObjectStore:
        options.setdefault("retry", POLICY)
        options.setdefault("rng", random.Random(42))
        return S3ObjectStore(s3_mock_bucket, "pre", client=faulty, sleep=fake_sleep, **options)

    return make


@pytest.fixture
def store(make_store: Callable[..., S3ObjectStore]) -> S3ObjectStore:
    return make_store()


def expected_jitter(seed: int, retries: int, policy: RetryPolicy = POLICY) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0, policy.delay_cap_ms(n)) / 1000 for n in range(1, retries + 1)]


# --- retries -----------------------------------------------------------------------------------


def test_throttling_is_retried_with_full_jitter_backoff(
    store: S3ObjectStore, faulty: FaultyClient, recorded_sleeps: list[float]
) -> None:
    faulty.fail("put_object", *(client_error("SlowDown", 503) for _ in range(3)))

    store.put("k", b"v")

    assert store.get("k") == b"v"
    assert recorded_sleeps == pytest.approx(expected_jitter(42, 3))
    assert all(s <= POLICY.delay_cap_ms(n) / 1000 for n, s in enumerate(recorded_sleeps, 1))
    assert store.request_counts()["PutObject"] == 4


RETRIABLE = [
    client_error("SlowDown", 503),
    client_error("TooManyRequests", 429),
    client_error("Throttling", 400),
    client_error("InternalError", 500),
    client_error("BadGateway", 502),
    client_error("ServiceUnavailable", 503),
    client_error("RequestTimeout", 400),
    client_error("ConditionalRequestConflict", 409),
    bce.EndpointConnectionError(endpoint_url=ENDPOINT),
    bce.ConnectTimeoutError(endpoint_url=ENDPOINT),
    bce.ReadTimeoutError(endpoint_url=ENDPOINT),
    bce.ConnectionClosedError(endpoint_url=ENDPOINT),
    bce.ResponseStreamingError(error="connection reset"),
    bce.IncompleteReadError(actual_bytes=1, expected_bytes=2),
    ConnectionResetError(104, "Connection reset by peer"),
]


@pytest.mark.parametrize("error", RETRIABLE, ids=lambda e: type(e).__name__ + str(e)[:30])
def test_transient_failures_are_retried(
    store: S3ObjectStore, faulty: FaultyClient, recorded_sleeps: list[float], error: BaseException
) -> None:
    store.put("k", b"value")
    faulty.fail("get_object", error)

    assert store.get("k", start=1) == b"alue"
    assert len(recorded_sleeps) == 1
    assert faulty.calls["get_object"] == 2


PERMANENT = [
    client_error("AccessDenied", 403),
    client_error("NoSuchBucket", 404),
    client_error("InvalidAccessKeyId", 403),
    client_error("SignatureDoesNotMatch", 403),
    client_error("AllAccessDisabled", 403),
    client_error("ExpiredToken", 400),
    client_error("PermanentRedirect", 301),
    client_error("AuthorizationHeaderMalformed", 400),
    client_error("403", 403),  # a HEAD answer has no body, so no code but the status
    bce.NoCredentialsError(),
    bce.SSLError(endpoint_url=ENDPOINT, error="certificate verify failed"),
]


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__ + str(e)[:30])
def test_permanent_failures_are_not_retried(
    store: S3ObjectStore, faulty: FaultyClient, recorded_sleeps: list[float], error: BaseException
) -> None:
    faulty.fail("put_object", error)

    with pytest.raises(ObjectStoreAccessError) as caught:
        store.put("k", b"v")

    assert not caught.value.retriable
    assert recorded_sleeps == []
    assert faulty.calls["put_object"] == 1
    assert not isinstance(caught.value, bce.ClientError)


def test_other_client_errors_are_not_retried(
    store: S3ObjectStore, faulty: FaultyClient, recorded_sleeps: list[float]
) -> None:
    faulty.fail("delete_object", client_error("InvalidArgument", 400))

    with pytest.raises(ObjectStoreError) as caught:
        store.delete("k")

    assert not caught.value.retriable
    assert "InvalidArgument" in str(caught.value)
    assert recorded_sleeps == []


def test_retries_give_up_after_max_attempts(
    make_store: Callable[..., S3ObjectStore], faulty: FaultyClient, recorded_sleeps: list[float]
) -> None:
    store = make_store(retry=RetryPolicy(max_attempts=4, base_delay_ms=10))
    faulty.fail("head_object", *(client_error("SlowDown", 503) for _ in range(10)))

    with pytest.raises(ObjectStoreError) as caught:
        store.head("k")

    assert caught.value.retriable
    assert len(recorded_sleeps) == 3
    assert any("gave up after 4 attempts" in note for note in caught.value.__notes__)


def test_retries_stop_at_the_time_budget(faulty: FaultyClient, s3_mock_bucket: str) -> None:
    clock = ManualClock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(int(seconds * 1000))

    policy = RetryPolicy(
        max_attempts=100, base_delay_ms=1_000, max_delay_ms=1_000, max_elapsed_ms=5_000
    )
    store = S3ObjectStore(s3_mock_bucket, client=faulty, retry=policy, clock=clock, sleep=sleep)
    faulty.fail("get_object", *(client_error("InternalError", 500) for _ in range(100)))

    with pytest.raises(ObjectStoreError):
        store.get("k")

    # The budget is kept on the clock, which advanced by whole milliseconds per sleep (summing
    # the float seconds instead could pass 5.0 by the truncated fractions: a flaky test).
    assert sum(int(s * 1000) for s in slept) <= 5_000
    assert 4 <= len(slept) < 100


def test_retrier_rejects_nothing_foreign_and_bad_policies() -> None:
    def boom() -> None:
        raise KeyError("a bug, not a store failure")

    with pytest.raises(KeyError):
        Retrier(POLICY, sleep=lambda s: pytest.fail("slept")).call(boom, what="boom")
    for bad in (
        {"max_attempts": 0},
        {"base_delay_ms": -1},
        {"base_delay_ms": 10, "max_delay_ms": 5},
        {"max_elapsed_ms": -1},
    ):
        with pytest.raises(InvalidArgumentError):
            RetryPolicy(**bad)
    assert RetryPolicy(base_delay_ms=100, max_delay_ms=20_000).delay_cap_ms(100) == 20_000


def test_a_retried_conditional_put_that_meets_its_own_write(
    store: S3ObjectStore, faulty: FaultyClient
) -> None:
    # The first PutObject reaches S3 but its answer is lost; the retry meets the object.
    faulty.fail("put_object", bce.ReadTimeoutError(endpoint_url=ENDPOINT), after=True)

    with pytest.raises(PreconditionFailedError) as caught:
        store.put("k", b"mine", if_none_match=True)

    assert caught.value.maybe_own_write is True
    assert store.get("k") == b"mine"


@pytest.mark.parametrize(
    ("code", "status"), [("SlowDown", 503), ("ConditionalRequestConflict", 409)]
)
def test_a_conditional_put_after_an_unapplied_attempt_is_not_ambiguous(
    store: S3ObjectStore, faulty: FaultyClient, code: str, status: int
) -> None:
    store.put("k", b"theirs")
    faulty.fail("put_object", client_error(code, status))

    with pytest.raises(PreconditionFailedError) as caught:
        store.put("k", b"mine", if_none_match=True)

    assert caught.value.maybe_own_write is False
    assert store.get("k") == b"theirs"


# --- multipart uploads -------------------------------------------------------------------------


class RecordingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(-1 if size is None else size)
        return super().read(size)


@pytest.fixture
def multipart_store(make_store: Callable[..., S3ObjectStore]) -> S3ObjectStore:
    return make_store(multipart_threshold_bytes=5 * MiB, part_size_bytes=5 * MiB)


def test_large_puts_stream_in_parts(multipart_store: S3ObjectStore) -> None:
    data = bytes(range(256)) * (16 * MiB // 256) + b"tail"
    source = RecordingReader(data)

    info = multipart_store.put("big", source)  # type: ignore[arg-type]

    # Parts of 5 MiB; the last 1 MiB + 4 bytes (under S3's 5 MiB minimum) joins the third.
    assert info.size_bytes == len(data) and info.etag.endswith("-3")
    assert multipart_store.get("big") == data
    counts = multipart_store.request_counts()
    assert (counts["CreateMultipartUpload"], counts["UploadPart"]) == (1, 3)
    assert counts["CompleteMultipartUpload"] == 1 and "PutObject" not in counts
    assert -1 not in source.reads and max(source.reads) <= 10 * MiB  # a part + 5 MiB


def test_a_small_last_piece_joins_the_part_before_it(multipart_store: S3ObjectStore) -> None:
    exact = b"e" * (10 * MiB)
    assert multipart_store.put("exact", exact).etag.endswith("-2")
    uneven = b"u" * (10 * MiB + 5)
    assert multipart_store.put("uneven", uneven).etag.endswith("-2")
    enough = b"n" * (15 * MiB)
    assert multipart_store.put("enough", enough).etag.endswith("-3")
    for key, data in (("exact", exact), ("uneven", uneven), ("enough", enough)):
        assert multipart_store.get(key) == data


def test_data_at_the_threshold_is_one_put(multipart_store: S3ObjectStore) -> None:
    multipart_store.put("edge", b"e" * (5 * MiB))

    assert multipart_store.request_counts() == {"PutObject": 1}


def test_a_failed_part_is_retried_alone(
    multipart_store: S3ObjectStore, faulty: FaultyClient, recorded_sleeps: list[float]
) -> None:
    faulty.fail("upload_part", bce.ConnectionClosedError(endpoint_url=ENDPOINT))

    multipart_store.put("big", b"p" * (11 * MiB))

    assert multipart_store.request_counts()["UploadPart"] == 3  # two parts, one retried
    assert len(recorded_sleeps) == 1
    assert multipart_store.get("big", start=11 * MiB - 1) == b"p"


def test_a_failed_multipart_upload_is_aborted(
    multipart_store: S3ObjectStore,
    faulty: FaultyClient,
    s3_admin_client: Any,
    s3_mock_bucket: str,
) -> None:
    faulty.fail("complete_multipart_upload", client_error("AccessDenied", 403))

    with pytest.raises(ObjectStoreAccessError):
        multipart_store.put("big", b"p" * (6 * MiB))

    assert multipart_store.head("big") is None
    assert faulty.calls["abort_multipart_upload"] == 1
    assert s3_admin_client.list_multipart_uploads(Bucket=s3_mock_bucket).get("Uploads", []) == []
    assert list(multipart_store.list_incomplete_uploads()) == []


def test_a_lost_complete_answer_is_recognised(
    multipart_store: S3ObjectStore, faulty: FaultyClient
) -> None:
    # The completion takes effect, its answer is lost, and the retry finds the upload gone.
    faulty.fail(
        "complete_multipart_upload", bce.ReadTimeoutError(endpoint_url=ENDPOINT), after=True
    )
    faulty.fail("complete_multipart_upload", client_error("NoSuchUpload", 404))

    info = multipart_store.put("big", b"q" * (6 * MiB), if_none_match=True)

    assert info.size_bytes == 6 * MiB
    assert multipart_store.get("big", start=6 * MiB - 3) == b"qqq"


def test_an_upload_aborted_by_someone_else_fails_the_put(
    multipart_store: S3ObjectStore, faulty: FaultyClient
) -> None:
    faulty.fail("complete_multipart_upload", client_error("NoSuchUpload", 404))

    with pytest.raises(ObjectStoreError) as caught:
        multipart_store.put("big", b"q" * (6 * MiB))

    assert not caught.value.retriable and "aborted" in str(caught.value)
    assert multipart_store.head("big") is None


def test_too_many_parts_is_refused(
    make_store: Callable[..., S3ObjectStore], monkeypatch: Any
) -> None:
    from logstore.backends import s3_store

    monkeypatch.setattr(s3_store, "MAX_PARTS", 2)
    store = make_store(multipart_threshold_bytes=5 * MiB, part_size_bytes=5 * MiB)

    with pytest.raises(InvalidArgumentError):
        store.put("big", b"x" * (16 * MiB))  # three parts
    assert list(store.list_incomplete_uploads()) == []


def test_leftover_uploads_are_listed_and_aborted(
    store: S3ObjectStore, s3_admin_client: Any, s3_mock_bucket: str
) -> None:
    """What a writer killed mid-upload leaves, and the cleaner's view of it."""
    for key in ("pre/topics/t/a.log", "pre/topics/t/b.log", "elsewhere/c.log"):
        s3_admin_client.create_multipart_upload(Bucket=s3_mock_bucket, Key=key)

    uploads = sorted(store.list_incomplete_uploads("topics/"), key=lambda u: u.key)
    assert [u.key for u in uploads] == ["topics/t/a.log", "topics/t/b.log"]
    assert all(u.initiated_ms > 0 and u.upload_id for u in uploads)

    # moto dates every upload 2010-11-10, so any cutoff after that finds them stale.
    aborted = abort_stale_uploads(store, older_than_ms=3_600_000, now_ms=int(time.time() * 1000))

    assert sorted(u.key for u in aborted) == ["topics/t/a.log", "topics/t/b.log"]
    assert list(store.list_incomplete_uploads()) == []
    store.abort_upload(aborted[0])  # idempotent: NoSuchUpload is fine
    remaining = s3_admin_client.list_multipart_uploads(Bucket=s3_mock_bucket)["Uploads"]
    assert [u["Key"] for u in remaining] == ["elsewhere/c.log"]


class PagedUploads:
    """A client answering ListMultipartUploads in pages of two (moto ignores MaxUploads)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.requests: list[dict[str, Any]] = []

    def list_multipart_uploads(self, **params: Any) -> dict[str, Any]:
        self.requests.append(params)
        start = 0 if "KeyMarker" not in params else self.keys.index(params["KeyMarker"]) + 1
        page = self.keys[start : start + 2]
        truncated = start + 2 < len(self.keys)
        answer: dict[str, Any] = {
            "Uploads": [{"Key": k, "UploadId": f"id-{k}", "Initiated": _EPOCH} for k in page],
            "IsTruncated": truncated,
        }
        if truncated:
            answer.update(NextKeyMarker=page[-1], NextUploadIdMarker=f"id-{page[-1]}")
        return answer


_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def test_incomplete_upload_listing_follows_the_markers() -> None:
    client = PagedUploads([f"p/k{i}" for i in range(5)])
    store = S3ObjectStore("bucket", "p", client=client, list_page_size=2)

    uploads = list(store.list_incomplete_uploads())

    assert [u.key for u in uploads] == [f"k{i}" for i in range(5)]
    assert uploads[0] == IncompleteUpload("k0", "id-p/k0", 1_704_067_200_000)
    assert [r.get("KeyMarker") for r in client.requests] == [None, "p/k1", "p/k3"]
    assert client.requests[1]["UploadIdMarker"] == "id-p/k1"


# --- listing, prefixes -------------------------------------------------------------------------


def test_list_of_more_than_a_thousand_keys(
    store: S3ObjectStore, s3_admin_client: Any, s3_mock_bucket: str
) -> None:
    keys = [f"topics/t/{i:06d}" for i in range(1005)]
    for key in keys:
        s3_admin_client.put_object(Bucket=s3_mock_bucket, Key=f"pre/{key}", Body=b"")

    listed = store.list("topics/")

    assert store.request_counts() == {"ListObjectsV2": 1}  # the first page at once
    assert [info.key for info in listed] == keys
    assert store.request_counts() == {"ListObjectsV2": 2}


@pytest.mark.parametrize(("prefix", "stored_as"), [("", "k"), ("a/b", "a/b/k"), ("/a/b/", "a/b/k")])
def test_keys_live_under_the_prefix(
    s3_mock_bucket: str, s3_admin_client: Any, prefix: str, stored_as: str
) -> None:
    store = S3ObjectStore(s3_mock_bucket, prefix, client=FaultyClient(s3_admin_client))
    s3_admin_client.put_object(Bucket=s3_mock_bucket, Key="a/bk-outside", Body=b"")

    store.put("k", b"v")

    assert s3_admin_client.get_object(Bucket=s3_mock_bucket, Key=stored_as)["Body"].read() == b"v"
    assert [i.key for i in store.list("k")] == ["k"]


def test_the_full_key_must_fit_s3s_limit(s3_mock_bucket: str, s3_admin_client: Any) -> None:
    store = S3ObjectStore(s3_mock_bucket, "p" * 100, client=FaultyClient(s3_admin_client))

    with pytest.raises(InvalidArgumentError):
        store.put("k" * 1000, b"v")


# --- a missing bucket, an unreachable endpoint, check() ----------------------------------------


@pytest.fixture(params=["mock", "http"])
def missing_bucket_store(
    request: pytest.FixtureRequest, s3_mock_bucket: str, fake_sleep: Callable[[float], None]
) -> Iterator[S3ObjectStore]:
    endpoint = request.getfixturevalue("moto_server") if request.param == "http" else None
    store = S3ObjectStore(
        "no-such-bucket-here", endpoint_url=endpoint, region="us-east-1", sleep=fake_sleep
    )
    yield store
    store.close()


def test_check_reports_a_missing_bucket(
    missing_bucket_store: S3ObjectStore, recorded_sleeps: list[float]
) -> None:
    with pytest.raises(ObjectStoreAccessError) as caught:
        missing_bucket_store.check()

    assert not caught.value.retriable
    assert "NoSuchBucket" in str(caught.value) and "create it" in str(caught.value)
    assert missing_bucket_store.request_counts() == {"ListObjectsV2": 1}
    assert recorded_sleeps == []


def test_operations_on_a_missing_bucket_fail_at_once(
    missing_bucket_store: S3ObjectStore, recorded_sleeps: list[float]
) -> None:
    for call in (
        lambda: missing_bucket_store.put("k", b"v"),
        lambda: missing_bucket_store.get("k"),
        lambda: missing_bucket_store.list(),
        lambda: missing_bucket_store.list_incomplete_uploads(),
    ):
        with pytest.raises(ObjectStoreAccessError):
            call()
    assert recorded_sleeps == []


def test_check_of_an_unreachable_endpoint_is_prompt_and_retriable(
    aws_credentials: None, recorded_sleeps: list[float], fake_sleep: Callable[[float], None]
) -> None:
    store = S3ObjectStore(
        "bucket",
        endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
        connect_timeout_s=2,
        sleep=fake_sleep,
    )
    started = time.monotonic()

    with pytest.raises(ObjectStoreError) as caught:
        store.check()

    assert time.monotonic() - started < 5
    assert caught.value.retriable and not isinstance(caught.value, ObjectStoreAccessError)
    assert "cannot connect" in str(caught.value)
    assert recorded_sleeps == []  # check() tries once


def test_operations_on_an_unreachable_endpoint_retry_then_fail(
    aws_credentials: None, recorded_sleeps: list[float], fake_sleep: Callable[[float], None]
) -> None:
    store = S3ObjectStore(
        "bucket",
        endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
        retry=RetryPolicy(max_attempts=3),
        sleep=fake_sleep,
    )

    with pytest.raises(ObjectStoreError) as caught:
        store.get("k")

    assert caught.value.retriable
    assert len(recorded_sleeps) == 2
    assert store.request_counts() == {"GetObject": 3}


def test_check_with_a_write_probe_over_http(
    moto_server: str, s3_http_bucket: str, fake_sleep: Callable[[float], None]
) -> None:
    store = S3ObjectStore(
        s3_http_bucket, "pre", endpoint_url=moto_server, region="us-east-1", sleep=fake_sleep
    )

    store.check()

    assert store.request_counts() == {
        "ListObjectsV2": 1,
        "PutObject": 1,
        "GetObject": 1,
        "DeleteObject": 1,
    }
    assert list(store.list()) == []


class _NotS3(BaseHTTPRequestHandler):
    """A web server that is not S3: every request gets ``status`` and an HTML page."""

    status = 404

    def _answer(self) -> None:
        body = b"<html><body>not here</body></html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.mark.parametrize(("status", "retriable"), [(404, False), (403, False), (502, True)])
def test_check_against_a_server_that_is_not_s3(
    aws_credentials: None, fake_sleep: Callable[[float], None], status: int, retriable: bool
) -> None:
    handler = type("Handler", (_NotS3,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        store = S3ObjectStore("bucket", endpoint_url=endpoint, region="us-east-1", sleep=fake_sleep)
        with pytest.raises(ObjectStoreError) as caught:
            store.check()
        store.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert caught.value.retriable is retriable
    assert isinstance(caught.value, ObjectStoreAccessError) is not retriable


def test_an_invalid_endpoint_is_an_access_error(aws_credentials: None) -> None:
    with pytest.raises(ObjectStoreAccessError):
        S3ObjectStore("bucket", endpoint_url="not a url")


def test_an_invalid_bucket_name_is_an_invalid_argument(aws_credentials: None) -> None:
    with pytest.raises(InvalidArgumentError):
        S3ObjectStore("a/b")
    store = S3ObjectStore("Bad_Bucket!", endpoint_url="http://127.0.0.1:1", region="us-east-1")
    with pytest.raises(InvalidArgumentError):
        store.check()


@pytest.mark.parametrize(
    "options",
    [
        {"part_size_bytes": MiB},
        {"multipart_threshold_bytes": -1},
        {"list_page_size": 0},
        {"list_page_size": 1001},
        {"addressing_style": "sideways"},
    ],
)
def test_invalid_options(aws_credentials: None, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        S3ObjectStore("bucket", **options)


# --- URLs --------------------------------------------------------------------------------------


def test_open_an_s3_url(aws_credentials: None) -> None:
    store = open_object_store(
        "s3://bucket/tiered/logs?endpoint_url=http://127.0.0.1:9000&region=eu-west-1"
        "&addressing_style=path&connect_timeout_s=0.5&read_timeout_s=3&max_attempts=3"
        "&multipart_threshold_bytes=6000000&part_size_bytes=5242880"
    )

    assert isinstance(store, S3ObjectStore)
    assert store.url == "s3://bucket/tiered/logs/?endpoint_url=http://127.0.0.1:9000"
    assert store._retrier.policy.max_attempts == 3
    assert (store._threshold, store._part_size) == (6_000_000, 5 * MiB)
    assert store._client.meta.region_name == "eu-west-1"
    assert store._client.meta.config.connect_timeout == 0.5
    store.close()


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix-without-bucket",
        "s3://bucket?colour=blue",
        "s3://bucket?region=a&region=b",
        "s3://bucket?max_attempts=many",
        "s3://bucket?max_attempts=0",
        "s3://bucket?part_size_bytes=1024",
        "s3://bucket#fragment",
        "ftp://bucket",
        "bucket/prefix",
        "memory://name/path",
    ],
)
def test_bad_urls(aws_credentials: None, url: str) -> None:
    with pytest.raises(InvalidConfigurationError):
        open_object_store(url)


def test_credentials_in_a_url_are_refused_without_echoing_them(aws_credentials: None) -> None:
    with pytest.raises(InvalidConfigurationError) as caught:
        open_object_store("s3://AKIAEXAMPLE:topsecret@bucket/prefix")

    assert "topsecret" not in str(caught.value) and "credential chain" in str(caught.value)


def test_nothing_from_botocore_escapes(store: S3ObjectStore, faulty: FaultyClient) -> None:
    errors: list[BaseException] = [
        bce.PaginationError(message="odd"),
        bce.ParamValidationError(report="bad parameter"),
        client_error("WeirdError", 418),
    ]
    for error in errors:
        faulty.fail("head_object", error)
        with pytest.raises(LogstoreError) as caught:
            store.head("k")
        assert not isinstance(caught.value, (bce.BotoCoreError, bce.ClientError))
