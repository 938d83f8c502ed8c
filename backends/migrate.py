"""Bringing a metadata database to this code's schema revision with Alembic.

The migrations live in the repository's ``alembic/`` folder, installed as the package-less
folder ``logstore.migrations`` (it has no ``__init__.py`` so that, with the repository root on
``sys.path``, it can never shadow the ``alembic`` library). :func:`migrations_location` finds it.

Two entry points:

* :func:`ensure_schema` runs on every store open. Fast path: if ``alembic_version`` already says
  :data:`HEAD_REVISION` (and a SQLite database is in WAL mode) it returns after a few cheap
  queries in one transaction, without importing Alembic at all.
* :func:`upgrade` (also used by ``logstore db upgrade``) always takes the migration lock.

Migrations are serialized across threads, processes and hosts, and the version is re-read after
the locks are taken, so concurrent first opens run each migration exactly once:

* Within a process, a lock (Alembic keeps the running migration in module globals).
* SQLite: an ``fcntl`` lock on ``<database>-migrate.lock`` next to the database (it also guards
  the one-time switch to WAL, which cannot run inside a transaction), then all migrations in one
  ``BEGIN IMMEDIATE`` transaction (SQLite has transactional DDL).
* PostgreSQL: ``pg_advisory_xact_lock`` taken as the first statement of the one transaction that
  runs all migrations; it is released by the commit.

A database at a revision this code does not know was written by a newer logstore: that raises a
non-retriable :class:`MetadataStoreError` asking the user to upgrade logstore.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

# A module import, not a from-import: sql_metadata imports this module too, and only attribute
# access at call time works whichever of the two is imported first.
from logstore.backends import sql_metadata
from sqlalchemy import Connection, Engine, column, select, table, text

from logstore.errors import DatabaseLockedError, MetadataStoreError

try:
    import fcntl
except ImportError:  # not POSIX: BEGIN IMMEDIATE alone serializes SQLite migrations
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest revision in ``alembic/versions``. Bump it with every new migration; a test checks
#: that it matches the scripts (otherwise every open would take the slow path).
HEAD_REVISION: Final = "0010"

#: Alembic's bookkeeping table (one row holding the current revision).
VERSION_TABLE: Final = "alembic_version"

#: How long :func:`upgrade` waits for another process's migration to finish.
DEFAULT_LOCK_TIMEOUT_S: Final = 300.0

# Key of the PostgreSQL advisory lock that serializes migrations: derived from a fixed name so it
# will not collide by accident with advisory locks other applications take on a shared database.
_PG_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"logstore.migrations").digest()[:8], "big", signed=True
)

_version_table = table(VERSION_TABLE, column("version_num"))

# Alembic's ``context`` and ``op`` are module-level proxies to the running migration, so two
# threads of one process must never migrate at the same time (even different databases). Taken
# before any database lock, so every thread acquires the locks in the same order.
_process_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    """What :func:`upgrade` did: the revision before (None for an empty database) and after."""

    from_revision: str | None
    to_revision: str

    @property
    def changed(self) -> bool:
        """True if any migration ran."""
        return self.from_revision != self.to_revision


def migrations_location() -> Path:
    """The folder holding ``env.py`` and ``versions/`` of the installed logstore.

    Normally found through the import system (``logstore.migrations``). setuptools' editable
    finder cannot resolve a folder without ``__init__.py`` nested in a regular package, so the
    fallback looks next to this package: ``<logstore>/migrations`` in a regular install and the
    repository's ``alembic/`` folder beside ``backends/`` in an editable one.
    """
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec("logstore.migrations")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(location) for location in spec.submodule_search_locations)
    here = Path(__file__).resolve().parent
    candidates += [here.parent / "migrations", here.parent / "alembic"]
    for candidate in candidates:
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise MetadataStoreError(
        "the logstore installation is incomplete: the metadata migrations (logstore.migrations) "
        "are missing; reinstall logstore",
        retriable=False,
    )


def current_revision(url_or_engine: str | Engine) -> str | None:
    """The schema revision of the database (None if it was never migrated)."""
    with (
        _engine_for(url_or_engine) as engine,
        sql_metadata.translating("reading the schema revision"),
        engine.connect() as conn,
    ):
        revisions = _read_revisions(conn)
    return ",".join(sorted(revisions)) or None


def ensure_schema(
    engine: Engine, *, auto_migrate: bool = True, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> None:
    """Make sure the database is at :data:`HEAD_REVISION`, migrating it if allowed.

    With ``auto_migrate=False`` an out-of-date schema raises a non-retriable
    :class:`MetadataStoreError` naming ``logstore db upgrade``. A schema newer than this code
    always raises one telling the user to upgrade logstore.
    """
    action = f"opening the metadata store {engine.url.render_as_string(hide_password=True)}"
    with sql_metadata.translating(action), engine.connect() as conn:
        revisions = _read_revisions(conn)
        wal = engine.dialect.name != "sqlite" or _journal_mode(conn) == "wal"
    if revisions == {HEAD_REVISION} and wal:
        return
    if auto_migrate or revisions == {HEAD_REVISION}:
        # At head already (e.g. migrated by the alembic command line), this only switches a
        # SQLite database to WAL, which is not a schema change and is always allowed.
        _upgrade_engine(engine, lock_timeout_s=lock_timeout_s)
        return
    with sql_metadata.translating(action):
        _check_known(_alembic_config(None), revisions)
    current = ",".join(sorted(revisions)) or "empty"
    raise MetadataStoreError(
        f"the metadata database schema is at revision {current}, this logstore needs "
        f"{HEAD_REVISION}: run `logstore db upgrade`",
        retriable=False,
    )


def upgrade(
    url_or_engine: str | Engine, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> UpgradeResult:
    """Migrate the database to :data:`HEAD_REVISION` under the migration lock.

    Idempotent: a database already at head is left alone (``result.changed`` is False). A URL is
    opened with the same engine settings a store uses and disposed of afterwards.
    """
    with _engine_for(url_or_engine) as engine:
        return _upgrade_engine(engine, lock_timeout_s=lock_timeout_s)


@contextmanager
def _engine_for(url_or_engine: str | Engine) -> Iterator[Engine]:
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    engine = sql_metadata.create_metadata_engine(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _upgrade_engine(engine: Engine, *, lock_timeout_s: float) -> UpgradeResult:
    """Take the process lock, then (SQLite) the lock file and WAL switch, then migrate."""
    if not _process_lock.acquire(timeout=lock_timeout_s):
        raise DatabaseLockedError(
            f"another thread has been migrating a metadata database for over {lock_timeout_s:g} s"
        )
    try:
        with sql_metadata.translating("upgrading the metadata schema"):
            if engine.dialect.name != "sqlite":
                return _migrate_in_one_transaction(engine)
            with _sqlite_file_lock(engine, lock_timeout_s):
                _enable_wal(engine)
                return _migrate_in_one_transaction(engine)
    finally:
        _process_lock.release()


def _migrate_in_one_transaction(engine: Engine) -> UpgradeResult:
    # Alembic is imported only here, off the fast path: loading it costs tens of milliseconds.
    from alembic.util import CommandError

    from alembic import command

    with sql_metadata.begin_write(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        # Re-read under the lock: another process may have migrated while we waited.
        before = _read_revisions(conn)
        if before == {HEAD_REVISION}:
            return UpgradeResult(HEAD_REVISION, HEAD_REVISION)
        config = _alembic_config(conn)
        _check_known(config, before)
        try:
            command.upgrade(config, "head")
        except CommandError as exc:
            raise MetadataStoreError(
                f"upgrading the metadata schema failed: {exc}", retriable=False
            ) from exc
        after = _read_revisions(conn)
        if after != {HEAD_REVISION}:
            raise MetadataStoreError(
                f"upgrading the metadata schema ended at revision {','.join(sorted(after))}, "
                f"not {HEAD_REVISION}: HEAD_REVISION in logstore.backends.migrate is out of date",
                retriable=False,
            )
    return UpgradeResult(",".join(sorted(before)) or None, HEAD_REVISION)


def _alembic_config(connection: Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    # Config values go through configparser interpolation, so a literal % must be doubled.
    config.set_main_option("script_location", str(migrations_location()).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _check_known(config: Config, revisions: frozenset[str]) -> None:
    from alembic.script import ScriptDirectory

    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    unknown = sorted(revisions - known)
    if unknown:
        raise MetadataStoreError(
            f"the metadata database is at schema revision {','.join(unknown)}, which this "
            f"version of logstore does not know (its newest is {HEAD_REVISION}): the database "
            "was written by a newer logstore; upgrade logstore to use it",
            retriable=False,
        )


def _read_revisions(conn: Connection) -> frozenset[str]:
    if not conn.dialect.has_table(conn, VERSION_TABLE):
        return frozenset()
    return frozenset(conn.execute(select(_version_table.c.version_num)).scalars())


def _journal_mode(conn: Connection) -> str:
    return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()


def _enable_wal(engine: Engine) -> None:
    """Switch a SQLite database to WAL (persistent; a no-op once done)."""
    # A raw DBAPI connection: the journal mode cannot change inside a transaction, and a
    # SQLAlchemy connection would BEGIN before the first statement.
    raw = engine.raw_connection()
    try:
        mode = raw.driver_connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    finally:
        raw.close()
    if str(mode).lower() != "wal":
        raise MetadataStoreError(
            f"cannot put the metadata database in WAL mode (it stays in {mode!r} mode); "
            "is it on a network file system?",
            retriable=False,
        )


@contextmanager
def _sqlite_file_lock(engine: Engine, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``<database>-migrate.lock`` (POSIX only)."""
    database = engine.url.database or ""
    if fcntl is None or database.startswith("file:"):
        # Without a lock file the BEGIN IMMEDIATE transaction still serializes migrations.
        yield
        return
    with open(f"{database}-migrate.lock", "a+b") as handle:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DatabaseLockedError(
                        f"another process has been migrating {database} for over "
                        f"{timeout_s:g} s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
