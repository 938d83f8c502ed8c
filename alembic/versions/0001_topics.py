"""Topics and the metadata change counter.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

This migration is a frozen snapshot: it spells out its tables instead of importing
``logstore.backends.schema`` (which always shows the newest schema). Constraint names are given
in full through ``op.f`` so the naming convention of the target metadata is not applied again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``topics`` and the single-row ``metadata_changes`` counter (starting at 0)."""
    op.create_table(
        "topics",
        sa.Column("name", sa.String(249), nullable=False),
        sa.Column("topic_id", sa.String(36), nullable=False),
        sa.Column("partition_count", sa.Integer(), nullable=False),
        sa.Column("configs", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_topics")),
        sa.UniqueConstraint("topic_id", name=op.f("uq_topics_topic_id")),
        sa.CheckConstraint(
            "partition_count >= 1", name=op.f("ck_topics_partition_count_positive")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_topics_version_positive")),
    )
    changes = op.create_table(
        "metadata_changes",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metadata_changes")),
        sa.CheckConstraint("id = 1", name=op.f("ck_metadata_changes_single_row")),
    )
    op.bulk_insert(changes, [{"id": 1, "counter": 0}])


def downgrade() -> None:
    """Drop both tables (and with them every topic)."""
    op.drop_table("metadata_changes")
    op.drop_table("topics")
