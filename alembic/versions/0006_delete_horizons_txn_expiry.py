"""Log cleaner: the earliest delete horizon per partition; transactional-id expiry: an index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

A frozen snapshot (see 0001): tables are spelled out here, not imported from schema.py.

``cleaner_checkpoints.delete_horizon_ms`` (nullable) is the earliest KIP-534 delete horizon the
cleaner left in the partition's log (a tombstone or transaction marker that a later cleaning
removes once it passes); NULL when there is none, as for every row written before. The index
on ``transactions.update_ms`` serves the coordinator's search for transactional ids unused for
``transactional.id.expiration.ms``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``cleaner_checkpoints.delete_horizon_ms`` (NULL in existing rows) and the index
    ``ix_transactions_update_ms``."""
    op.add_column(
        "cleaner_checkpoints", sa.Column("delete_horizon_ms", sa.BigInteger(), nullable=True)
    )
    op.create_index(op.f("ix_transactions_update_ms"), "transactions", ["update_ms"])


def downgrade() -> None:
    """Drop the index and the column (the recorded horizons are lost: the cleaner then waits
    for the dirty ratio or max.compaction.lag.ms again)."""
    op.drop_index(op.f("ix_transactions_update_ms"), table_name="transactions")
    # Batch mode: SQLite rebuilds the table (keeping its named constraints) where it cannot
    # drop a column in place.
    with op.batch_alter_table("cleaner_checkpoints") as batch:
        batch.drop_column("delete_horizon_ms")
