"""Migrations: the revision chain, schema.py against the migrations, locking, atomicity, the
fast path that skips Alembic, and the alembic command line (env.py outside logstore)."""

from __future__ import annotations

import fcntl
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from logstore.backends import migrate, schema
from logstore.backends.sql_metadata import SqlMetadataStore
from sqlalchemy import create_engine, inspect

from logstore.errors import DatabaseLockedError, MetadataStoreError

REPO = Path(__file__).resolve().parents[2]


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate._alembic_config(None))


def test_migrations_are_found_in_the_installed_package() -> None:
    location = migrate.migrations_location()

    assert (location / "env.py").is_file()
    assert (location / "versions" / "0001_topics.py").is_file()


def test_head_revision_constant_matches_the_scripts() -> None:
    assert _scripts().get_heads() == [migrate.HEAD_REVISION]


def test_revision_chain_is_linear_and_sequentially_numbered() -> None:
    revisions = list(reversed(list(_scripts().walk_revisions())))

    assert [r.revision for r in revisions] == [f"{n:04d}" for n in range(1, len(revisions) + 1)]
    assert [r.down_revision for r in revisions] == [None] + [r.revision for r in revisions[:-1]]
    for revision in revisions:
        assert Path(revision.path).name.startswith(f"{revision.revision}_")


def test_schema_module_matches_the_migrations(store_url: str) -> None:
    migrate.upgrade(store_url)
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, schema.metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_a_failed_migration_rolls_back_every_migration(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.migrations_location(), scripts)
    broken = f"{int(migrate.HEAD_REVISION) + 1:04d}"
    (scripts / "versions" / f"{broken}_broken.py").write_text(
        f'revision = "{broken}"\n'
        f'down_revision = "{migrate.HEAD_REVISION}"\n'
        "from alembic import op\n"
        "def upgrade():\n"
        '    op.execute("CREATE TABLE half_done (x INTEGER)")\n'
        '    op.execute("THIS IS NOT SQL")\n'
        "def downgrade():\n"
        "    pass\n"
    )
    monkeypatch.setattr(migrate, "migrations_location", lambda: scripts)
    monkeypatch.setattr(migrate, "HEAD_REVISION", broken)

    with pytest.raises(MetadataStoreError, match="upgrading the metadata schema failed"):
        migrate.upgrade(store_url)

    assert migrate.current_revision(store_url) is None
    engine = create_engine(store_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert not {"topics", "metadata_changes", "half_done"} & tables
    finally:
        engine.dispose()


def test_sqlite_migrations_wait_for_the_lock_file(sqlite_url: str) -> None:
    database = sqlite_url.removeprefix("sqlite:///")
    Path(database).parent.mkdir(parents=True)
    with open(f"{database}-migrate.lock", "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DatabaseLockedError, match="migrating"):
            migrate.upgrade(sqlite_url, lock_timeout_s=0.2)
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)

    assert migrate.upgrade(sqlite_url).changed


def test_an_upgrade_waits_for_the_lock_holder_then_migrates(sqlite_url: str) -> None:
    database = sqlite_url.removeprefix("sqlite:///")
    Path(database).parent.mkdir(parents=True)
    results: list[migrate.UpgradeResult] = []
    with open(f"{database}-migrate.lock", "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        waiter = threading.Thread(target=lambda: results.append(migrate.upgrade(sqlite_url)))
        waiter.start()
        waiter.join(timeout=0.3)
        assert waiter.is_alive(), "upgrade must wait while another process holds the lock"
        assert migrate.current_revision(sqlite_url) is None
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    waiter.join(timeout=10)

    assert [r.changed for r in results] == [True]


def test_opening_a_current_store_does_not_load_alembic(sqlite_url: str, tmp_path: Path) -> None:
    SqlMetadataStore(sqlite_url).close()
    probe = (
        "import sys\n"
        "from logstore.backends import open_metadata_store\n"
        f"store = open_metadata_store({sqlite_url!r})\n"
        "store.list_topics()\n"
        "store.close()\n"
        "print(sorted(m for m in sys.modules if m == 'alembic' or m.startswith('alembic.')))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True,
        cwd=tmp_path,  # not the repository root, whose folders would shadow the package
    )

    assert result.stdout.strip() == "[]"


def test_a_database_migrated_elsewhere_is_switched_to_wal_on_open(sqlite_url: str) -> None:
    database = sqlite_url.removeprefix("sqlite:///")
    migrate.upgrade(sqlite_url)
    plain = sqlite3.connect(database)
    plain.execute("PRAGMA journal_mode = DELETE")
    plain.close()

    SqlMetadataStore(sqlite_url, auto_migrate=False).close()

    plain = sqlite3.connect(database)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()


def test_the_alembic_command_line_uses_env_py(tmp_path: Path) -> None:
    alembic = Path(sys.executable).with_name("alembic")
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def run(*args: str) -> str:
        return subprocess.run(
            [str(alembic), "-c", str(REPO / "alembic.ini"), "-x", f"url={url}", *args],
            capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
        ).stdout

    run("upgrade", "head")
    assert re.search(rf"^{migrate.HEAD_REVISION} \(head\)", run("current"), re.MULTILINE)
    with SqlMetadataStore(url, auto_migrate=False) as opened:
        assert opened.change_counter() == 0

    offline = subprocess.run(
        [str(alembic), "-c", str(REPO / "alembic.ini"),
         "-x", "url=postgresql+psycopg://nobody@127.0.0.1:1/none", "upgrade", "head", "--sql"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    ).stdout
    assert "CREATE TABLE topics" in offline
    assert "INSERT INTO metadata_changes (id, counter) VALUES (1, 0)" in offline


def test_current_revision_of_a_bad_url_is_a_store_error() -> None:
    with pytest.raises(MetadataStoreError):
        migrate.current_revision("not a url")
