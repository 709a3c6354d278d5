"""Baseline: users, devices, access tokens, revocations, used refresh tokens.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the first schema."""
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("modified", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_users"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(32)),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("credential_hash", sa.String(255), nullable=True),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("modified", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.ForeignKeyConstraint(
            ["user"], ["users.name"], name="fk_devices_user_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_devices_user", "devices", ["user"])
    op.create_table(
        "access_tokens",
        sa.Column("user", sa.String(64)),
        sa.Column("id", sa.String(64)),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("allow", sa.JSON, nullable=True),
        sa.Column("deny", sa.JSON, nullable=True),
        sa.Column("resources", sa.JSON, nullable=True),
        sa.Column("nonce", sa.String(32), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("modified", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("user", "id", name="pk_access_tokens"),
        sa.ForeignKeyConstraint(
            ["user"], ["users.name"], name="fk_access_tokens_user_users", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "revocations",
        sa.Column("user", sa.String(64)),
        sa.Column("jti", sa.String(128)),
        sa.Column("revoked", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("user", "jti", name="pk_revocations"),
    )
    op.create_table(
        "used_refresh_tokens",
        sa.Column("jti", sa.String(64)),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_used_refresh_tokens"),
    )


def downgrade() -> None:
    """Drop everything (only for tests of the migrations themselves)."""
    for table in ("used_refresh_tokens", "revocations", "access_tokens", "devices", "users"):
        op.drop_table(table)
