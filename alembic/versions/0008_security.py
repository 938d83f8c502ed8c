"""The broker's security: users' SCRAM credentials and ACLs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

A frozen snapshot (see 0001): tables are spelled out here, not imported from schema.py.

``scram_credentials`` has one row per user and SCRAM mechanism: salt, iterations (at least
4096), StoredKey and ServerKey, never the password. ``acls`` has one row per ACL binding,
keyed by a hash of its fields (``acl_id``), enum values stored by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``scram_credentials`` and ``acls`` (empty: no users, no ACLs)."""
    op.create_table(
        "scram_credentials",
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("mechanism", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("server_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("iterations >= 4096",
                           name=op.f("ck_scram_credentials_iterations_minimum")),
        sa.CheckConstraint("mechanism IN ('SCRAM-SHA-256', 'SCRAM-SHA-512')",
                           name=op.f("ck_scram_credentials_mechanism_known")),
        sa.PrimaryKeyConstraint("user_name", "mechanism", name=op.f("pk_scram_credentials")),
    )
    op.create_table(
        "acls",
        sa.Column("acl_id", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.String(length=1024), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_name", sa.String(length=255), nullable=False),
        sa.Column("pattern_type", sa.String(length=16), nullable=False),
        sa.Column("permission", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("acl_id", name=op.f("pk_acls")),
    )


def downgrade() -> None:
    """Drop both tables (every user and ACL is lost: the broker then allows everyone)."""
    op.drop_table("acls")
    op.drop_table("scram_credentials")
