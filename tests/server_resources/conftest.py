"""Fixtures of the server-resource tests (properties, buckets, endpoints, alarms, events).

``database`` is a fresh SQLite file or PostgreSQL database (tests/pg_cluster.py).
"""

from __future__ import annotations

import pytest
from pg_cluster import BACKENDS, PgCluster, database, pg_cluster

__all__ = ["BACKENDS", "PgCluster", "database", "pg_cluster"]


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Real loopback sockets (Home Assistant's plugin blocks sockets by default)."""
