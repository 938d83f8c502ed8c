"""The metadata schema as it stands at the newest migration (SQLAlchemy Core tables).

The database schema is owned by the Alembic migrations in ``alembic/versions``; these Table
objects describe the result of applying all of them and are what the queries in
:mod:`logstore.backends.sql_metadata` are written against (and what ``alembic revision
--autogenerate`` compares with). A migration must never import this module: migrations are
frozen snapshots, while this module always shows the newest shape. When you add a migration,
update the tables here in the same change; a test compares the two.

Tables:

``topics``
    One row per topic. ``configs`` is a JSON object of config overrides (string to string,
    Kafka's dotted names); ``version`` is the compare-and-swap counter, 1 on creation and bumped
    by every write.
``metadata_changes``
    Exactly one row (``id`` = 1) whose ``counter`` is bumped in the same transaction as every
    topic write, so readers can poll one cheap row to learn whether anything changed.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

#: Kafka's limit on topic name length.
TOPIC_NAME_MAX_LENGTH = 249

#: The primary key of the single ``metadata_changes`` row.
CHANGES_ROW_ID = 1

# Deterministic constraint names keep future ALTERs (and SQLite batch migrations, which
# recreate tables) able to refer to constraints by name on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

topics = Table(
    "topics",
    metadata,
    Column("name", String(TOPIC_NAME_MAX_LENGTH), primary_key=True),
    Column("topic_id", String(36), nullable=False, unique=True),
    Column("partition_count", Integer, nullable=False),
    Column("configs", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint("partition_count >= 1", name="partition_count_positive"),
    CheckConstraint("version >= 1", name="version_positive"),
)

metadata_changes = Table(
    "metadata_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("counter", BigInteger, nullable=False),
    CheckConstraint(f"id = {CHANGES_ROW_ID}", name="single_row"),
)
