"""The SQL metadata store in SQLite (default) or PostgreSQL, through SQLAlchemy Core: engines,
error translation and :class:`SqlMetadataStore`, whose operations live one concept per module in
:mod:`.sql_topics`, :mod:`.sql_groups`, :mod:`.sql_transactions`, :mod:`.sql_cleaner`,
:mod:`.sql_manifest`, :mod:`.sql_security` and :mod:`.sql_brokers` (module-level functions
taking the store as first argument).

This module is the boundary to SQLAlchemy and the database drivers: nothing from sqlalchemy,
sqlite3 or psycopg leaves it (or :mod:`logstore.backends.migrate`, which uses the helpers here).
Every failure becomes a :mod:`logstore.errors` exception.

Engines (:func:`create_metadata_engine`):

* SQLite (``sqlite:///<path>``, pysqlite driver). Every connection gets ``busy_timeout`` and
  ``synchronous=FULL``; the database is switched to WAL once, by the first migration. pysqlite's
  own transaction handling is switched off (``isolation_level=None``) and the store emits
  ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for writes, so a writer takes the write lock before it
  reads and two processes can never deadlock upgrading read locks to write locks (the busy timeout
  then simply queues writers); a plain deferred ``BEGIN`` for reads.
* PostgreSQL (``postgresql+psycopg://...``; a bare ``postgresql://`` means psycopg 3 too):
  ``pool_pre_ping`` and a libpq ``connect_timeout`` so an unreachable server fails promptly.

Thread safety: a store may be shared by any number of threads; each call checks a connection
out of the engine's pool for the duration of one transaction.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from logstore.backends import (
    migrate,
    sql_brokers,
    sql_cleaner,
    sql_groups,
    sql_manifest,
    sql_security,
    sql_topics,
    sql_transactions,
)
from logstore.backends.broker_records import BrokerRegistration
from logstore.backends.cleaner_records import CleanerCheckpoint, Lease
from logstore.backends.group_records import (
    CommittedOffset,
    GroupRecord,
    GroupSnapshot,
    GroupUpdate,
)
from logstore.backends.manifest_records import RemoteSegment
from logstore.backends.metadata import TopicRecord
from logstore.backends.schema import cluster
from logstore.backends.security_records import (
    AclBinding,
    AclFilter,
    ScramCredential,
    ScramMechanism,
)
from logstore.backends.txn_records import ProducerIdAllocator, TransactionRecord, TxnUpdate
from sqlalchemy import Connection, Engine, create_engine, event, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from logstore.errors import (
    DatabaseLockedError,
    IllegalStateError,
    LogstoreError,
    MetadataStoreError,
)
from logstore.types import TopicPartition

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_BUSY_TIMEOUT_MS = 30_000

# Execution option read by the SQLite "begin" listener to choose the BEGIN flavour.
_BEGIN_OPTION = "logstore_sqlite_begin"

# PostgreSQL SQLSTATE classes/codes after which the same call may succeed: connection
# exceptions, transaction rollbacks (serialization failure, deadlock), insufficient resources,
# operator intervention (admin shutdown, cancel), system errors, lock not available.
_PG_RETRIABLE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_PG_RETRIABLE_CODES = frozenset({"55P03"})
_PG_TRANSIENT_FATAL = ("starting up", "shutting down", "recovery", "too many", "connection slots")
_PG_UNIQUE_VIOLATION = "23505"
_SQLITE_UNIQUE_VIOLATIONS = frozenset({"SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"})

_URL_HELP = "expected sqlite:///<path> or postgresql+psycopg://<user>@<host>:<port>/<database>"


def _redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for messages and logs."""
    return re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", url)


def create_metadata_engine(
    url: str,
    *,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> Engine:
    """Create a configured engine for a metadata database URL (see the module docstring).

    Does not connect. The parent directory of a SQLite database is created if missing. Raises
    :class:`MetadataStoreError` (not retriable) for a malformed URL, an unsupported dialect or
    driver, an in-memory SQLite database (each pooled connection would see its own) or a
    missing driver package.
    """
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError, TypeError):
        raise MetadataStoreError(
            f"invalid metadata store URL {_redact_url(str(url))!r}: {_URL_HELP}", retriable=False
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _create_sqlite_engine(parsed, busy_timeout_ms=busy_timeout_ms)
    if backend == "postgresql":
        return _create_postgresql_engine(parsed, connect_timeout_s=connect_timeout_s)
    raise MetadataStoreError(
        f"unsupported metadata store URL scheme {parsed.drivername!r}: {_URL_HELP}",
        retriable=False,
    )


def _create_sqlite_engine(parsed: URL, *, busy_timeout_ms: int) -> Engine:
    if parsed.get_driver_name() != "pysqlite":
        raise MetadataStoreError(
            f"unsupported SQLite driver {parsed.drivername!r}: use sqlite:///<path> (pysqlite)",
            retriable=False,
        )
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        raise MetadataStoreError(
            "an in-memory SQLite metadata store is not supported: use sqlite:///<path>",
            retriable=False,
        )
    if not database.startswith("file:"):
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MetadataStoreError(
                f"cannot create the directory of metadata database {database!r}: {exc}",
                retriable=False,
            ) from exc
    engine = create_engine(parsed)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite: it would otherwise BEGIN lazily before
        # the first DML statement only, which breaks snapshot reads and transactional DDL.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        dbapi_connection.execute("PRAGMA synchronous = FULL")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    def on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


def _create_postgresql_engine(parsed: URL, *, connect_timeout_s: float) -> Engine:
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_driver_name() != "psycopg":
        raise MetadataStoreError(
            f"unsupported PostgreSQL driver {parsed.drivername!r}: use postgresql+psycopg://",
            retriable=False,
        )
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        # libpq takes whole seconds (and treats values below 2 as 2).
        connect_args["connect_timeout"] = max(1, math.ceil(connect_timeout_s))
    try:
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except ImportError:
        raise MetadataStoreError(
            "PostgreSQL metadata stores need psycopg 3: pip install 'logstore[postgres]'",
            retriable=False,
        ) from None


def begin_write(engine: Engine) -> AbstractContextManager[Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` on SQLite, an ordinary one elsewhere."""
    return engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}).begin()


def translate_error(exc: BaseException, *, action: str) -> LogstoreError:
    """The :mod:`logstore.errors` exception for a SQLAlchemy or driver exception.

    SQLite busy/locked -> :class:`DatabaseLockedError`; connection failures, timeouts and
    PostgreSQL's transient SQLSTATEs -> retriable :class:`MetadataStoreError`; anything else ->
    non-retriable :class:`MetadataStoreError`. ``action`` names what failed, for the message.
    """
    if isinstance(exc, LogstoreError):
        return exc
    orig: BaseException = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig else exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    message = f"{action} failed: {detail}"
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", "")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in detail:
            return DatabaseLockedError(f"{message} (metadata database locked past busy timeout)")
        return MetadataStoreError(message, retriable=False)
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return MetadataStoreError(message, retriable=True)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        retriable = sqlstate[:2] in _PG_RETRIABLE_CLASSES or sqlstate in _PG_RETRIABLE_CODES
        return MetadataStoreError(message, retriable=retriable)
    connection_error = isinstance(
        exc, (sa_exc.OperationalError, sa_exc.DisconnectionError, sa_exc.TimeoutError)
    ) or (_is_driver_error(orig) and type(orig).__name__ == "OperationalError")
    if connection_error:
        # No SQLSTATE: the connection attempt failed. If the server never answered (refused,
        # unreachable, timed out) a retry may work; if it rejected us (libpq reports that as
        # "FATAL: ...": unknown database or role, bad password) it will not, unless the server
        # was only starting, stopping or out of connection slots.
        text = str(orig)
        rejected = "FATAL:" in text and not any(hint in text for hint in _PG_TRANSIENT_FATAL)
        return MetadataStoreError(message, retriable=not rejected)
    return MetadataStoreError(message, retriable=False)


def _is_driver_error(exc: BaseException) -> bool:
    module = type(exc).__module__.split(".", 1)[0]
    return module in ("psycopg", "sqlite3")


@contextmanager
def translating(action: str) -> Iterator[None]:
    """Run the block, turning SQLAlchemy/driver/OS exceptions into :mod:`logstore.errors`."""
    try:
        yield
    except LogstoreError:
        raise
    except (sa_exc.SQLAlchemyError, sqlite3.Error) as exc:
        raise translate_error(exc, action=action) from exc
    except OSError as exc:
        raise MetadataStoreError(f"{action} failed: {exc}", retriable=False) from exc
    except Exception as exc:
        if _is_driver_error(exc):
            raise translate_error(exc, action=action) from exc
        raise


def _is_unique_violation(exc: sa_exc.IntegrityError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == _PG_UNIQUE_VIOLATION:
        return True
    return getattr(orig, "sqlite_errorname", "") in _SQLITE_UNIQUE_VIOLATIONS


class SqlMetadataStore:
    """:class:`~logstore.backends.metadata.MetadataStore` on SQLAlchemy Core.

    Opening a store brings the schema to this code's head revision (see
    :mod:`logstore.backends.migrate`); that is one cheap query when it is already current.
    Every call runs in one transaction; every topic write also bumps the ``metadata_changes``
    counter, and every topic update/delete is a compare-and-swap on the row's ``version`` (see
    :mod:`.sql_topics`).

    ``url`` is the database URL with any password masked. Thread-safe; :meth:`close` is
    idempotent and any other call after it raises :class:`IllegalStateError`.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        auto_migrate: bool = True,
    ) -> None:
        """Open (and by default migrate) the store at ``url``.

        With ``auto_migrate=False`` a schema that is not at head raises a non-retriable
        :class:`MetadataStoreError` asking for ``logstore db upgrade`` instead of migrating.
        """
        self._engine = create_metadata_engine(
            url, connect_timeout_s=connect_timeout_s, busy_timeout_ms=busy_timeout_ms
        )
        self.url: str = self._engine.url.render_as_string(hide_password=True)
        self._write_engine = self._engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self._lock = threading.Lock()
        self._closed = False
        try:
            migrate.ensure_schema(self._engine, auto_migrate=auto_migrate)
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"SqlMetadataStore({self.url!r})"

    # --- topics and the change counter (implemented in sql_topics) ---------------------------

    def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str], *, created_ms: int,
        topic_id: str | None = None,
    ) -> TopicRecord:
        """See :meth:`MetadataStore.create_topic` (and :mod:`.sql_topics` for how)."""
        return sql_topics.create_topic(self, name, partition_count, configs,
                                       created_ms=created_ms, topic_id=topic_id)

    def get_topic(self, name: str) -> TopicRecord | None:
        return sql_topics.get_topic(self, name)

    def list_topics(self) -> list[TopicRecord]:
        return sql_topics.list_topics(self)

    def update_topic(
        self,
        name: str,
        *,
        expected_version: int,
        partition_count: int | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> TopicRecord:
        return sql_topics.update_topic(
            self, name, expected_version=expected_version, partition_count=partition_count,
            configs=configs,
        )

    def delete_topic(self, name: str, *, expected_version: int | None = None) -> TopicRecord:
        return sql_topics.delete_topic(self, name, expected_version=expected_version)

    def change_counter(self) -> int:
        return sql_topics.change_counter(self)

    # --- consumer groups (implemented in sql_groups) -----------------------------------------

    def update_group(
        self, group_id: str, step: Callable[[GroupSnapshot], tuple[GroupUpdate, T]]
    ) -> T:
        """See :meth:`MetadataStore.update_group`."""
        return sql_groups.update_group(self, group_id, step)

    def read_group(self, group_id: str) -> GroupSnapshot:
        return sql_groups.read_group(self, group_id)

    def list_groups(self) -> list[GroupRecord]:
        return sql_groups.list_groups(self)

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        return sql_groups.fetch_offsets(self, group_id, partitions)

    # --- transactions (implemented in sql_transactions) ---------------------------------------

    def update_transaction(
        self,
        transactional_id: str,
        step: Callable[[TransactionRecord | None, ProducerIdAllocator], tuple[TxnUpdate, T]],
    ) -> T:
        """See :meth:`MetadataStore.update_transaction`."""
        return sql_transactions.update_transaction(self, transactional_id, step)

    def read_transaction(self, transactional_id: str) -> TransactionRecord | None:
        return sql_transactions.read_transaction(self, transactional_id)

    def list_transactions(
        self, states: Iterable[str] | None = None, *, updated_before_ms: int | None = None
    ) -> list[TransactionRecord]:
        return sql_transactions.list_transactions(
            self, states, updated_before_ms=updated_before_ms)

    def delete_transaction(
        self, transactional_id: str, *, expected_version: int
    ) -> TransactionRecord:
        return sql_transactions.delete_transaction(
            self, transactional_id, expected_version=expected_version)

    def allocate_producer_id(self) -> int:
        return sql_transactions.allocate_producer_id(self)

    def cluster_id(self, new_id: Callable[[], str]) -> str:
        """See :meth:`MetadataStore.cluster_id`."""
        with self._operation("reading the cluster id"):
            with self._engine.begin() as conn:
                found = conn.execute(select(cluster.c.cluster_id)).scalar_one_or_none()
            if found is not None:
                return str(found)
            try:
                with self._write_engine.begin() as conn:
                    conn.execute(insert(cluster).values(id=0, cluster_id=new_id(),
                                                        created_ms=int(time.time() * 1000)))
            except sa_exc.IntegrityError:
                pass  # another broker stored one first: use theirs
            with self._engine.begin() as conn:
                return str(conn.execute(select(cluster.c.cluster_id)).scalar_one())

    # --- leases and cleaner checkpoints (implemented in sql_cleaner) --------------------------

    def acquire_lease(
        self, name: str, holder: str, *, now_ms: int, duration_ms: int
    ) -> Lease | None:
        """See :meth:`MetadataStore.acquire_lease` (and :mod:`.sql_cleaner` for how)."""
        return sql_cleaner.acquire_lease(self, name, holder, now_ms=now_ms, duration_ms=duration_ms)

    def renew_lease(self, lease: Lease, *, now_ms: int, duration_ms: int) -> Lease:
        return sql_cleaner.renew_lease(self, lease, now_ms=now_ms, duration_ms=duration_ms)

    def release_lease(self, lease: Lease) -> None:
        sql_cleaner.release_lease(self, lease)

    def read_lease(self, name: str) -> Lease | None:
        return sql_cleaner.read_lease(self, name)

    def list_leases(self, prefix: str = "") -> list[Lease]:
        return sql_cleaner.list_leases(self, prefix)

    def cleaner_checkpoints(self, topic_id: str) -> dict[int, CleanerCheckpoint]:
        return sql_cleaner.cleaner_checkpoints(self, topic_id)

    def set_cleaner_checkpoint(
        self, topic_id: str, partition: int, offset: int, *, updated_ms: int,
        lease: Lease | None = None, delete_horizon_ms: int | None = None,
    ) -> CleanerCheckpoint:
        """See :meth:`MetadataStore.set_cleaner_checkpoint`."""
        return sql_cleaner.set_cleaner_checkpoint(
            self, topic_id, partition, offset, updated_ms=updated_ms, lease=lease,
            delete_horizon_ms=delete_horizon_ms,
        )

    # --- the tiered-segment manifest (implemented in sql_manifest) ----------------------------

    def begin_remote_copy(
        self, segment: RemoteSegment, *, lease: Lease | None = None
    ) -> RemoteSegment:
        """See :meth:`MetadataStore.begin_remote_copy` (and :mod:`.sql_manifest` for how)."""
        return sql_manifest.begin_remote_copy(self, segment, lease=lease)

    def finish_remote_copy(
        self, segment: RemoteSegment, *, updated_ms: int, lease: Lease | None = None
    ) -> RemoteSegment:
        return sql_manifest.finish_remote_copy(self, segment, updated_ms=updated_ms, lease=lease)

    def begin_remote_delete(
        self, segment: RemoteSegment, *, updated_ms: int
    ) -> RemoteSegment | None:
        return sql_manifest.begin_remote_delete(self, segment, updated_ms=updated_ms)

    def delete_remote_segment(self, segment_id: str) -> None:
        sql_manifest.delete_remote_segment(self, segment_id)

    def remote_segments(
        self, topic_id: str | None = None, partition: int | None = None, *,
        states: Iterable[str] | None = None,
    ) -> list[RemoteSegment]:
        return sql_manifest.list_remote_segments(self, topic_id, partition, states=states)

    # --- users and ACLs (implemented in sql_security) -----------------------------------------

    def put_scram_credentials(
        self, user: str, credentials: Iterable[ScramCredential], *, replace: bool = False
    ) -> None:
        """See :meth:`MetadataStore.put_scram_credentials`."""
        sql_security.put_scram_credentials(self, user, credentials, replace=replace)

    def get_scram_credential(
        self, user: str, mechanism: ScramMechanism
    ) -> ScramCredential | None:
        return sql_security.get_scram_credential(self, user, mechanism)

    def list_scram_credentials(self, user: str | None = None) -> list[ScramCredential]:
        return sql_security.list_scram_credentials(self, user)

    def delete_scram_credentials(self, user: str) -> list[ScramCredential]:
        return sql_security.delete_scram_credentials(self, user)

    def add_acls(self, bindings: Iterable[AclBinding]) -> list[AclBinding]:
        return sql_security.add_acls(self, bindings)

    def list_acls(self, acl_filter: AclFilter | None = None) -> list[AclBinding]:
        return sql_security.list_acls(self, acl_filter)

    def delete_acls(self, acl_filter: AclFilter) -> list[AclBinding]:
        return sql_security.delete_acls(self, acl_filter)

    # --- brokers (implemented in sql_brokers) -------------------------------------------------

    def register_broker(self, broker_id: int, host: str, port: int, rack: str | None, *,
                        session_timeout_ms: int, now_ms: int | None = None,
                        ) -> BrokerRegistration:
        return sql_brokers.register_broker(self, broker_id, host, port, rack,
                                           session_timeout_ms=session_timeout_ms, now_ms=now_ms)

    def renew_broker_session(self, registration: BrokerRegistration, *,
                             session_timeout_ms: int, now_ms: int | None = None,
                             ) -> BrokerRegistration:
        return sql_brokers.renew_broker_session(
            self, registration, session_timeout_ms=session_timeout_ms, now_ms=now_ms)

    def unregister_broker(self, registration: BrokerRegistration, *,
                          now_ms: int | None = None) -> bool:
        return sql_brokers.unregister_broker(self, registration, now_ms=now_ms)

    def list_brokers(self, *, now_ms: int | None = None) -> list[BrokerRegistration]:
        return sql_brokers.list_brokers(self, now_ms=now_ms)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Dispose of the engine's connections. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._engine.dispose()

    def __enter__(self) -> SqlMetadataStore:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    @contextmanager
    def _operation(self, action: str) -> Iterator[None]:
        if self._closed:
            raise IllegalStateError(f"the metadata store {self.url} is closed")
        with translating(action):
            yield

