"""Consumer groups: groups, members and committed offsets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

A frozen snapshot (see 0001): tables are spelled out here, not imported from schema.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``consumer_groups``, ``group_members`` and ``committed_offsets``."""
    op.create_table(
        "consumer_groups",
        sa.Column("group_id", sa.String(255), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("protocol_type", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(64), nullable=True),
        sa.Column("leader_id", sa.String(255), nullable=True),
        sa.Column("state_since_ms", sa.BigInteger(), nullable=False),
        sa.Column("rebalance_deadline_ms", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_consumer_groups")),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(255), nullable=False),
        sa.Column("member_id", sa.String(255), nullable=False),
        sa.Column("group_instance_id", sa.String(255), nullable=True),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("session_timeout_ms", sa.Integer(), nullable=False),
        sa.Column("rebalance_timeout_ms", sa.Integer(), nullable=False),
        sa.Column("protocols", sa.Text(), nullable=False),
        sa.Column("join_generation", sa.Integer(), nullable=False),
        sa.Column("assignment", sa.LargeBinary(), nullable=True),
        sa.Column("last_heartbeat_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "member_id", name=op.f("pk_group_members")),
    )
    op.create_table(
        "committed_offsets",
        sa.Column("group_id", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("committed_offset", sa.BigInteger(), nullable=False),
        sa.Column("leader_epoch", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("commit_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "topic", "partition",
                                name=op.f("pk_committed_offsets")),
    )


def downgrade() -> None:
    """Drop the three tables (and with them every group and committed offset)."""
    op.drop_table("committed_offsets")
    op.drop_table("group_members")
    op.drop_table("consumer_groups")
