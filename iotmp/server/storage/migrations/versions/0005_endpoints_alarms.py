"""Endpoints, alarm rules and alarm instances (issue 11).

Revision ID: 0005_endpoints_alarms
Revises: 0004_buckets
Create Date: 2026-12-02
"""

from __future__ import annotations

revision = "0005_endpoints_alarms"
down_revision = "0004_buckets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables (filled in with the feature)."""


def downgrade() -> None:
    """Drop them again."""
