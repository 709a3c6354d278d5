"""Real databases for the storage tests: a SQLite file, and a PostgreSQL cluster.

The fixtures live in tests/pg_cluster.py (shared with tests/server_resources).
"""

from __future__ import annotations

import pytest
from pg_cluster import BACKENDS, PgCluster, database, pg_cluster

__all__ = ["BACKENDS", "PgCluster", "database", "pg_cluster"]


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Real loopback sockets (Home Assistant's plugin blocks sockets by default)."""
