"""Backends: the metadata store (SQLAlchemy) and, later, object stores.

:func:`open_metadata_store` opens the metadata store for a database URL (``sqlite:///<path>`` or
``postgresql+psycopg://...``), bringing its schema up to date.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logstore.backends.metadata import MetadataStore
    from logstore.backends.object_store import ObjectStore


def open_metadata_store(
    url: str,
    *,
    connect_timeout_s: float = 10.0,
    busy_timeout_ms: int = 30_000,
    auto_migrate: bool = True,
) -> MetadataStore:
    """Open the metadata store at ``url`` (a :class:`~.sql_metadata.SqlMetadataStore`).

    Raises :class:`~logstore.errors.MetadataStoreError` for a bad URL, an unreachable database
    (retriable) or a schema newer than this logstore (not retriable).
    """
    # Imported on call: importing logstore.backends must not pull in SQLAlchemy.
    from logstore.backends.sql_metadata import SqlMetadataStore

    return SqlMetadataStore(
        url,
        connect_timeout_s=connect_timeout_s,
        busy_timeout_ms=busy_timeout_ms,
        auto_migrate=auto_migrate,
    )


def open_object_store(url: str, **options: object) -> ObjectStore:
    """Open the object store at ``url`` (``file:///path``, ``s3://bucket/prefix?...``,
    ``memory://name``); see :mod:`logstore.backends.object_store`."""
    # Imported on call: importing logstore.backends must not pull in boto3.
    from logstore.backends.object_store import open_object_store as open_store

    return open_store(url, **options)  # type: ignore[arg-type]


__all__ = ["open_metadata_store", "open_object_store"]
