"""Device properties (issue 11).

Revision ID: 0003_properties
Revises: 0002_settings
Create Date: 2026-12-02
"""

from __future__ import annotations

revision = "0003_properties"
down_revision = "0002_settings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables (filled in with the feature)."""


def downgrade() -> None:
    """Drop them again."""
