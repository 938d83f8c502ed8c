"""Transactions: one row per transactional id, and the producer-id allocator.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

A frozen snapshot (see 0001): tables are spelled out here, not imported from schema.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``transactions`` and the single-row ``producer_ids`` counter (starting at 1000)."""
    op.create_table(
        "transactions",
        sa.Column("transactional_id", sa.String(255), nullable=False),
        sa.Column("producer_id", sa.BigInteger(), nullable=False),
        sa.Column("producer_epoch", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("timeout_ms", sa.Integer(), nullable=False),
        sa.Column("partitions", sa.Text(), nullable=False),
        sa.Column("pending_offsets", sa.Text(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("update_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_bump", sa.String(16), nullable=False),
        sa.Column("previous_producer_id", sa.BigInteger(), nullable=False),
        sa.Column("previous_epoch", sa.Integer(), nullable=False),
        sa.Column("next_producer_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("transactional_id", name=op.f("pk_transactions")),
        sa.CheckConstraint(
            "producer_epoch >= 0 AND producer_epoch <= 32767",
            name=op.f("ck_transactions_epoch_range"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_transactions_version_positive")),
    )
    op.create_index(op.f("ix_transactions_state"), "transactions", ["state"])
    ids = op.create_table(
        "producer_ids",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_producer_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_producer_ids")),
        sa.CheckConstraint("id = 1", name=op.f("ck_producer_ids_single_row")),
    )
    op.bulk_insert(ids, [{"id": 1, "next_producer_id": 1000}])


def downgrade() -> None:
    """Drop both tables (and with them every transactional id and the producer-id counter)."""
    op.drop_index(op.f("ix_transactions_state"), table_name="transactions")
    op.drop_table("producer_ids")
    op.drop_table("transactions")
