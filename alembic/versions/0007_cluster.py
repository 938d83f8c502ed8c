"""The cluster's identity: one row holding the cluster id that brokers report.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A frozen snapshot (see 0001): tables are spelled out here, not imported from schema.py.

``cluster`` has a single row (``id`` = 0): ``cluster_id``, Kafka's ``cluster.id`` (22 characters
of URL-safe base64 of a random UUID), created by the first broker that asks for it, so every
broker serving this metadata store reports the same id in Metadata and DescribeCluster.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``cluster`` (empty: the first broker inserts the id)."""
    op.create_table(
        "cluster",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("cluster_id", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 0", name=op.f("ck_cluster_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster")),
    )


def downgrade() -> None:
    """Drop ``cluster`` (brokers then make a new cluster id)."""
    op.drop_table("cluster")
