"""Alembic environment for the logstore metadata schema.

Runs in two ways:

* Programmatically, from :mod:`logstore.backends.migrate`: the caller passes an open
  SQLAlchemy connection in ``config.attributes["connection"]``, already inside the (locked)
  transaction that should hold every migration; Alembic sees the external transaction and leaves
  committing to the caller.
* From the ``alembic`` command line (``alembic -c alembic.ini upgrade head``): the URL comes
  from ``-x url=...`` or ``sqlalchemy.url`` in alembic.ini, and the engine is built with the same
  settings a store uses (SQLite pragmas and ``BEGIN IMMEDIATE``), all migrations in one
  transaction. ``--sql`` (offline mode) renders the SQL instead.
"""

from __future__ import annotations

from logging.config import fileConfig

from logstore.backends.schema import metadata
from logstore.backends.sql_metadata import begin_write, create_metadata_engine
from sqlalchemy import Connection

from alembic import context

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set sqlalchemy.url in alembic.ini")
    return url


def _configure(**options: object) -> None:
    context.configure(
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode recreates tables instead.
        render_as_batch=True,
        # SQLite DDL is transactional too once pysqlite stops managing transactions (the
        # engine emits BEGIN itself), so every dialect runs all migrations in one transaction.
        transactional_ddl=True,
        compare_type=True,
        **options,
    )


def _run_online(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Run the migrations requested of Alembic, online or offline."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    # Only the command line configures logging; a library must not touch the host's logging.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_metadata_engine(_url())
    try:
        with begin_write(engine) as connection:
            _run_online(connection)
    finally:
        engine.dispose()


main()
