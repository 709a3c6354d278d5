"""Buckets and their records, indexed by time (issue 11).

Revision ID: 0004_buckets
Revises: 0003_properties
Create Date: 2026-12-02
"""

from __future__ import annotations

revision = "0004_buckets"
down_revision = "0003_properties"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables (filled in with the feature)."""


def downgrade() -> None:
    """Drop them again."""
