"""Compare-and-swap versions of transactional ids and consumer groups as BIGINT.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

A frozen snapshot (see 0001): tables are spelled out here, not imported from schema.py.

``transactions.version`` grows by one on every write of a transactional id (about four per
transaction: begin, offsets, prepare, complete, plus a claim for each extra finisher), and
the transaction coordinator's marker claims are these versions; ``consumer_groups.version``
grows with every group step. As 32-bit integers (PostgreSQL's INTEGER) a busy transactional id
would reach the limit in days (1,000 transactions/s) and then fail every write with "integer out
of range". BIGINT makes that unreachable. SQLite stores both in 64 bits already: nothing
changes there.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("transactions", "consumer_groups")


def upgrade() -> None:
    """``transactions.version`` and ``consumer_groups.version``: INTEGER -> BIGINT (PostgreSQL;
    SQLite's INTEGER already holds 64 bits, and rebuilding its tables would only cost time)."""
    if op.get_context().dialect.name == "sqlite":
        return
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("version", existing_type=sa.Integer(), type_=sa.BigInteger(),
                               existing_nullable=False)


def downgrade() -> None:
    """Back to INTEGER (fails on PostgreSQL if a version passed 2**31 - 1)."""
    if op.get_context().dialect.name == "sqlite":
        return
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("version", existing_type=sa.BigInteger(), type_=sa.Integer(),
                               existing_nullable=False)
