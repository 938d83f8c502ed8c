"""Fixtures for the metadata store tests: one URL per backend, each test with a fresh database.

SQLite databases live in ``tmp_path``. The PostgreSQL fixtures (``postgresql_admin``,
``postgresql_url``: a fresh schema per test, selected through ``search_path`` in the URL and
dropped afterwards; skipped without ``LOGSTORE_TEST_POSTGRES_URL``) come from tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from logstore.backends.sql_metadata import SqlMetadataStore

BACKENDS = ["sqlite", "postgresql"]


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
