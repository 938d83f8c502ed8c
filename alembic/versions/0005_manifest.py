"""Tiered storage: the remote-segment manifest.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

A frozen snapshot (see 0001): tables are spelled out here, not imported from schema.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``remote_segments`` (empty) and its (topic_id, partition, base_offset) index."""
    op.create_table(
        "remote_segments",
        sa.Column("segment_id", sa.String(32), nullable=False),
        sa.Column("topic_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("base_offset", sa.BigInteger(), nullable=False),
        sa.Column("last_offset", sa.BigInteger(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("object_key", sa.String(1024), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("data_bytes", sa.BigInteger(), nullable=False),
        sa.Column("max_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("batch_count", sa.Integer(), nullable=False),
        sa.Column("aborted_count", sa.Integer(), nullable=False),
        sa.Column("leader_epoch", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", name=op.f("pk_remote_segments")),
        sa.CheckConstraint(
            "partition >= 0", name=op.f("ck_remote_segments_partition_non_negative")
        ),
        sa.CheckConstraint(
            "base_offset >= 0", name=op.f("ck_remote_segments_base_offset_non_negative")
        ),
        sa.CheckConstraint(
            "last_offset >= base_offset - 1", name=op.f("ck_remote_segments_last_offset_range")
        ),
        sa.CheckConstraint(
            "next_offset > last_offset", name=op.f("ck_remote_segments_next_offset_range")
        ),
        sa.CheckConstraint(
            "size_bytes >= data_bytes AND data_bytes >= 0",
            name=op.f("ck_remote_segments_bytes_range"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_remote_segments_version_positive")),
        sa.CheckConstraint(
            "state IN ('copy-started', 'copy-finished', 'delete-started')",
            name=op.f("ck_remote_segments_state_known"),
        ),
    )
    op.create_index(
        op.f("ix_remote_segments_partition_offsets"),
        "remote_segments",
        ["topic_id", "partition", "base_offset"],
    )


def downgrade() -> None:
    """Drop the table (and with it the whole manifest: every remote object becomes an orphan)."""
    op.drop_index(op.f("ix_remote_segments_partition_offsets"), table_name="remote_segments")
    op.drop_table("remote_segments")
