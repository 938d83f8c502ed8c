"""Log cleaner: named leases and cleaner checkpoints.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

A frozen snapshot (see 0001): tables are spelled out here, not imported from schema.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``leases`` and ``cleaner_checkpoints`` (both empty)."""
    op.create_table(
        "leases",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("acquired_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
        sa.CheckConstraint("epoch >= 1", name=op.f("ck_leases_epoch_positive")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_leases_version_positive")),
    )
    op.create_table(
        "cleaner_checkpoints",
        sa.Column("topic_id", sa.String(36), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("checkpoint_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic_id", "partition", name=op.f("pk_cleaner_checkpoints")),
        sa.CheckConstraint(
            "partition >= 0", name=op.f("ck_cleaner_checkpoints_partition_non_negative")
        ),
        sa.CheckConstraint(
            "checkpoint_offset >= 0", name=op.f("ck_cleaner_checkpoints_offset_non_negative")
        ),
    )


def downgrade() -> None:
    """Drop both tables (and with them every lease, its epoch, and every cleaner checkpoint)."""
    op.drop_table("cleaner_checkpoints")
    op.drop_table("leases")
