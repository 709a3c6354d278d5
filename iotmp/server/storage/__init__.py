"""Persistent storage of what users create: SQLite by default, PostgreSQL by URL.

One schema (:mod:`.schema`, SQLAlchemy Core) behind async engines (aiosqlite,
asyncpg); Alembic migrations shipped in ``migrations/`` run at start.
"""

from __future__ import annotations

from .engine import SQLITE_FILE, StorageConfigError, database_url, prepare_data_dir, redacted
from .hashing import hash_secret, hash_secret_async, verify_secret, verify_secret_async
from .records import Revocation, StoredDevice, StoredToken, StoredUser
from .repository import AlreadyExistsError, Storage, now_ms

__all__ = [
    "SQLITE_FILE",
    "AlreadyExistsError",
    "Revocation",
    "Storage",
    "StorageConfigError",
    "StoredDevice",
    "StoredToken",
    "StoredUser",
    "database_url",
    "hash_secret",
    "hash_secret_async",
    "now_ms",
    "prepare_data_dir",
    "redacted",
    "verify_secret",
    "verify_secret_async",
]
