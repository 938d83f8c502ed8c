"""Registered brokers and their sessions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

A frozen snapshot (see 0001): tables are spelled out here, not imported from schema.py.

``brokers`` has one row per broker id: the listener clients reach it at (``host``, ``port``), its
``rack``, the broker epoch its latest registration took (``epoch``, from 1; a restart takes the
next), when that registration was made and until when its session lasts (``registered_ms``,
``expires_ms``: the database's clock).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``brokers`` (empty: brokers register when they start)."""
    op.create_table(
        "brokers",
        sa.Column("broker_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("rack", sa.String(length=255), nullable=True),
        sa.Column("registered_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("broker_id >= 0", name=op.f("ck_brokers_broker_id_non_negative")),
        sa.CheckConstraint("epoch >= 1", name=op.f("ck_brokers_epoch_positive")),
        sa.PrimaryKeyConstraint("broker_id", name=op.f("pk_brokers")),
    )


def downgrade() -> None:
    """Drop ``brokers`` (brokers register again when they next start)."""
    op.drop_table("brokers")
