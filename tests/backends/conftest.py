"""Fixtures for the backend tests: metadata stores (below) and object stores (at the end).

Metadata stores: one URL per backend, each test with a fresh database.

SQLite databases live in ``tmp_path``. The PostgreSQL fixtures (``postgresql_admin``,
``postgresql_url``: a fresh schema per test, selected through ``search_path`` in the URL and
dropped afterwards; skipped without ``LOGSTORE_TEST_POSTGRES_URL``) come from tests/conftest.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from logstore.backends.sql_metadata import SqlMetadataStore

BACKENDS = ["sqlite", "postgresql"]
T = TypeVar("T")


def _race(count: int, action: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``action(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("did not run")] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action(index)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.fixture
def race() -> Callable[..., list[Any]]:
    """``race(count, action)``: run ``action(i)`` in ``count`` threads released together and
    return their results (or the exceptions they raised), by index."""
    return _race


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite database that does not exist yet (nor does its directory)."""
    return f"sqlite:///{tmp_path / 'metadata' / 'metadata.db'}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once per backend."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[SqlMetadataStore]:
    """An open store on a fresh database, closed after the test."""
    opened = SqlMetadataStore(store_url)
    yield opened
    opened.close()


# --- object stores -----------------------------------------------------------------------------
#
# The object store contract runs against four stores: memory, the local file system, S3
# through moto in-process (``mock_aws``) and S3 through moto's threaded server over real HTTP.
# Every S3 test gets a fresh bucket. Sleeps are recorded, never slept.

OBJECT_STORES = ["memory", "local", "s3_mock", "s3_http"]
#: Small sizes so that multipart uploads and list pagination happen with little data.
SMALL_PART_BYTES = 5 * 1024 * 1024
SMALL_PAGE = 7
S3_REGION = "us-east-1"  # the moto server, credentials and its admin client: tests/conftest.py


def fresh_bucket_name() -> str:
    return f"logstore-test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def recorded_sleeps() -> list[float]:
    """The seconds every injected ``sleep`` was asked to sleep (see ``fake_sleep``)."""
    return []


@pytest.fixture
def fake_sleep(recorded_sleeps: list[float]) -> Callable[[float], None]:
    """A sleep that records its argument and returns at once."""
    return recorded_sleeps.append


@pytest.fixture(scope="session")
def s3_admin_client(aws_credentials: None) -> Any:
    """A boto3 client for moto's in-process mock (made once because creating clients is slow;
    the mock intercepts clients made before it starts, if moto was imported first)."""
    import boto3
    import moto  # noqa: F401  (registers moto's request hook with botocore)

    return boto3.client("s3", region_name=S3_REGION)


@pytest.fixture
def s3_mock_bucket(s3_admin_client: Any) -> Iterator[str]:
    """A fresh bucket in moto's in-process mock (active for the whole test)."""
    from moto import mock_aws

    with mock_aws():
        bucket = fresh_bucket_name()
        s3_admin_client.create_bucket(Bucket=bucket)
        yield bucket


@pytest.fixture
def s3_http_bucket(s3_http_admin_client: Any) -> str:
    """A fresh bucket on the moto server."""
    bucket = fresh_bucket_name()
    s3_http_admin_client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=OBJECT_STORES)
def object_store(
    request: pytest.FixtureRequest, tmp_path: Path, fake_sleep: Callable[[float], None]
) -> Iterator[Any]:
    """A fresh, empty object store of each kind, with small multipart and page sizes."""
    from logstore.backends.local_store import LocalObjectStore
    from logstore.backends.memory_store import MemoryObjectStore
    from logstore.backends.s3_store import S3ObjectStore

    kind = request.param
    if kind == "memory":
        store: Any = MemoryObjectStore(sleep=fake_sleep)
    elif kind == "local":
        root = tmp_path / "objects"
        root.mkdir()
        store = LocalObjectStore(root)
    else:
        s3_options: dict[str, Any] = {
            "region": S3_REGION,
            "multipart_threshold_bytes": SMALL_PART_BYTES,
            "part_size_bytes": SMALL_PART_BYTES,
            "list_page_size": SMALL_PAGE,
            "sleep": fake_sleep,
        }
        if kind == "s3_http":
            s3_options["endpoint_url"] = request.getfixturevalue("moto_server")
            bucket = request.getfixturevalue("s3_http_bucket")
        else:
            bucket = request.getfixturevalue("s3_mock_bucket")
        store = S3ObjectStore(bucket, "tier", **s3_options)
    yield store
    store.close()
