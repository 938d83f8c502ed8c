"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

import logstore
from logstore.clock import ManualClock
from logstore.config import TopicConfig, validate_overrides
from logstore.log.notify import AppendNotifier
from logstore.log.partition_log import PartitionLog
from logstore.records.builder import encode_batch

POSTGRES_ENV = "LOGSTORE_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgresql_admin() -> Iterator[Engine]:
    """An engine on the test PostgreSQL server, for creating and dropping schemas.

    Skips (with the reason) when LOGSTORE_TEST_POSTGRES_URL is not set; CI always sets it.
    """
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV}, "
            "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    yield engine
    engine.dispose()


@pytest.fixture
def postgresql_url(postgresql_admin: Engine) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema of its own, dropped after the test."""
    schema = f"logstore_test_{uuid.uuid4().hex[:12]}"
    with postgresql_admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgresql_admin.url.render_as_string(hide_password=False))
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with postgresql_admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=1_700_000_000_000)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[logstore.Log]:
    """An embedded log on the default SQLite metadata store, without background maintenance."""
    opened = logstore.open(tmp_path / "data", maintenance_interval_ms=None)
    yield opened
    opened.close()


class PartitionFactory:
    """Builds PartitionLog objects on a directory with a mutable config."""

    def __init__(self, directory: Path, clock: ManualClock) -> None:
        self.directory = directory
        self.clock = clock
        self.overrides: dict[str, str] = {}
        self.notifier = AppendNotifier()
        self.opened: list[PartitionLog] = []

    def configure(self, **overrides: object) -> None:
        """Set topic configs, given with underscores for dots (segment_bytes=...)."""
        self.overrides.update(
            validate_overrides({k.replace("_", "."): v for k, v in overrides.items()})
        )

    def config(self) -> TopicConfig:
        return TopicConfig.from_overrides(self.overrides)

    def open(self, **options: Any) -> PartitionLog:
        """Open the partition (creating it if need be); ``options`` go to PartitionLog."""
        PartitionLog.create(self.directory, topic_id="t-id", created_ms=self.clock.time_ms())
        opened = PartitionLog(
            self.directory, topic="t", partition=0, config=self.config, clock=self.clock,
            notifier=self.notifier, **options,
        )
        self.opened.append(opened)
        return opened

    def close(self) -> None:
        for opened in self.opened:
            opened.close()
        self.notifier.close()


@pytest.fixture
def partitions(tmp_path: Path, clock: ManualClock) -> Iterator[PartitionFactory]:
    factory = PartitionFactory(tmp_path / "p0", clock)
    yield factory
    factory.close()


def make_batch(
    values: list[bytes | None],
    *,
    timestamp_ms: int = 1_700_000_000_000,
    key: bytes | None = None,
    **options: object,
) -> bytes:
    """A RecordBatch v2 holding ``values`` (same key and timestamp for all)."""
    return encode_batch([(timestamp_ms, key, v, ()) for v in values], **options)


@pytest.fixture
def batch() -> Callable[..., bytes]:
    return make_batch


# --- S3 over real HTTP (moto's threaded server), shared by backends/ and tier/ ---------------

S3_REGION = "us-east-1"


@pytest.fixture(scope="session")
def aws_credentials() -> Iterator[None]:
    """Fake credentials for moto, and no reading of the user's ~/.aws files."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_SESSION_TOKEN", "testing")
        patch.setenv("AWS_DEFAULT_REGION", S3_REGION)
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        patch.delenv("AWS_PROFILE", raising=False)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        patch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        yield


@pytest.fixture(scope="session")
def moto_server(aws_credentials: None) -> Iterator[str]:
    """The endpoint URL of a moto server on a free port of 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_http_admin_client(moto_server: str) -> Any:
    """A boto3 client for the moto server."""
    import boto3

    return boto3.client("s3", region_name=S3_REGION, endpoint_url=moto_server)
