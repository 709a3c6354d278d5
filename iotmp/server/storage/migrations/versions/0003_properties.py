"""Device properties (issue 11).

Revision ID: 0003_properties
Revises: 0002_settings
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_properties"
down_revision = "0002_settings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the device_properties table (rows go with their device)."""
    op.create_table(
        "device_properties",
        sa.Column("device", sa.String(32)),
        sa.Column("property", sa.String(64)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("extra", sa.JSON, nullable=True),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("modified", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device", "property", name="pk_device_properties"),
        sa.ForeignKeyConstraint(
            ["device"],
            ["devices.id"],
            name="fk_device_properties_device_devices",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    """Drop it again."""
    op.drop_table("device_properties")
