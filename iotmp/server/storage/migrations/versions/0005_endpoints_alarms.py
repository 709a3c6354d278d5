"""Endpoints, alarm rules and alarm instances (issue 11).

Revision ID: 0005_endpoints_alarms
Revises: 0004_buckets
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_endpoints_alarms"
down_revision = "0004_buckets"
branch_labels = None
depends_on = None


def _owner() -> sa.Column[str]:
    return sa.Column("user", sa.String(64), nullable=False)


def _owner_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user"], ["users.name"], name=f"fk_{table}_user_users", ondelete="CASCADE"
    )


def upgrade() -> None:
    """Create the endpoints, alarm_rules and alarm_instances tables."""
    op.create_table(
        "endpoints",
        _owner(),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("modified", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user", "endpoint", name="pk_endpoints"),
        _owner_key("endpoints"),
    )
    op.create_table(
        "alarm_rules",
        _owner(),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("severity", sa.BigInteger, nullable=False),
        sa.Column("source", sa.JSON, nullable=False),
        sa.Column("condition", sa.JSON, nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=True),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("modified", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user", "rule", name="pk_alarm_rules"),
        _owner_key("alarm_rules"),
    )
    op.create_table(
        "alarm_instances",
        _owner(),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("annotation", sa.String(512), nullable=False),
        sa.Column("raised", sa.BigInteger, nullable=False),
        sa.Column("acknowledged", sa.BigInteger, nullable=True),
        sa.Column("cleared", sa.BigInteger, nullable=True),
        sa.Column("modified", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user", "instance", name="pk_alarm_instances"),
        _owner_key("alarm_instances"),
    )
    op.create_index("ix_alarm_instances_user_rule", "alarm_instances", ["user", "rule"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_alarm_instances_user_rule", table_name="alarm_instances")
    op.drop_table("alarm_instances")
    op.drop_table("alarm_rules")
    op.drop_table("endpoints")
