"""Buckets and their records, indexed by time (issue 11).

Revision ID: 0004_buckets
Revises: 0003_properties
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_buckets"
down_revision = "0003_properties"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``buckets`` and ``bucket_records`` with the (user, bucket, ts) index."""
    op.create_table(
        "buckets",
        sa.Column("user", sa.String(64)),
        sa.Column("bucket", sa.String(32)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("retention", sa.JSON, nullable=True),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("modified", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user", "bucket", name="pk_buckets"),
        sa.ForeignKeyConstraint(
            ["user"], ["users.name"], name="fk_buckets_user_users", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "bucket_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            autoincrement=True,
        ),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("bucket", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bucket_records"),
        sa.ForeignKeyConstraint(
            ["user", "bucket"],
            ["buckets.user", "buckets.bucket"],
            name="fk_bucket_records_bucket",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_bucket_records_user_bucket_ts", "bucket_records", ["user", "bucket", "ts"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_bucket_records_user_bucket_ts", table_name="bucket_records")
    op.drop_table("bucket_records")
    op.drop_table("buckets")
