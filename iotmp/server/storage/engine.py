"""Database URLs and engines: SQLite in the data directory by default, PostgreSQL by URL."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..config import ConfigError

SQLITE_FILE: Final = "iotmp.db"


class StorageConfigError(ConfigError):
    """The ``database`` setting cannot be used, or the database cannot be opened."""


def database_url(database: str | None, data_dir: Path) -> str:
    """Return the SQLAlchemy async URL for the ``database`` setting.

    None -> ``sqlite+aiosqlite:///<data_dir>/iotmp.db``; ``postgresql://`` and
    ``postgres://`` -> ``postgresql+asyncpg://``; ``sqlite:///`` ->
    ``sqlite+aiosqlite:///``. Other drivers are refused (they would block the loop).
    """
    if not database:
        return f"sqlite+aiosqlite:///{data_dir / SQLITE_FILE}"
    scheme, sep, rest = database.partition("://")
    if not sep:
        raise StorageConfigError(f"database: not a URL: {database!r}")
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return f"sqlite+aiosqlite://{rest}"
    raise StorageConfigError(
        f"database: unsupported scheme {scheme!r} (use sqlite:/// or postgresql://)"
    )


def redacted(url: str) -> str:
    """Return the URL with its password hidden (for logs and errors)."""
    return make_url(url).render_as_string(hide_password=True)


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory readable by its owner only (0700)."""
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers do not block the writer and a kill -9 never leaves a torn
    # file; synchronous=FULL: a commit is on disk when it returns.
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=10000",
    ):
        cursor.execute(pragma)
    cursor.close()


class _NoDebugRecords(logging.Filter):
    """Drop aiosqlite's DEBUG records: they print every statement with its parameters."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


_QUIET_DRIVER: Final = _NoDebugRecords()
_quiet_users = [0]  # open storages in this process (they share the filter)


def quiet_driver_logs(on: bool) -> None:
    """Keep aiosqlite's DEBUG lines (secrets as parameters) out of the logs while open."""
    logger = logging.getLogger("aiosqlite")
    if on:
        if not _quiet_users[0]:
            logger.addFilter(_QUIET_DRIVER)
        _quiet_users[0] += 1
    elif _quiet_users[0]:
        _quiet_users[0] -= 1
        if not _quiet_users[0]:
            logger.removeFilter(_QUIET_DRIVER)


def create_engine(url: str) -> AsyncEngine:
    """Create an async engine for ``url``; a SQLite file is created 0600 beforehand.

    ``hide_parameters``: statement parameters (password hashes, endpoint headers)
    never appear in SQLAlchemy's log lines or error messages, whatever the log level.
    """
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            prepare_data_dir(path.parent)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        engine = create_async_engine(url, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        return engine
    return create_async_engine(url, pool_pre_ping=True, hide_parameters=True)
