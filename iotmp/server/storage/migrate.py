"""Alembic migrations, run programmatically on the async engine at start.

Alembic (with mako, pygments and the parts of SQLAlchemy it uses: 145 modules and
about 10 MiB that would stay in the server process, docs/benchmarks.md) is imported
only when there is something to migrate: at a start on a database already at the
newest shipped revision, :func:`ensure_current` reads the ``alembic_version`` table
with plain SQLAlchemy and stops there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import StorageConfigError

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "iotmp.server.storage:migrations"
VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"
# Alembic's default; the migrations do not change it.
VERSION_TABLE = "alembic_version"
# Any constant: serialises the migrations of several servers sharing one PostgreSQL.
_PG_LOCK_KEY = 0x10_7A_9A

# The module-level assignments of a revision script, as alembic's template writes them
# (an annotation, as in alembic's own newer template, is allowed).
_REVISION = re.compile(r"^revision(?:\s*:[^=\n]*)?\s*=\s*(.+)$", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision(?:\s*:[^=\n]*)?\s*=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"'\n]+)["']""")


class UnknownRevisionError(StorageConfigError):
    """The database is at a schema revision this version of iotmp does not ship."""


def alembic_config() -> Config:
    """Alembic's configuration for the shipped migration scripts."""
    from alembic.config import Config  # noqa: PLC0415 - only when migrating

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def shipped_head(versions: Path = VERSIONS_DIR) -> str | None:
    """Return the newest shipped revision, read from the scripts' text, or None if unsure.

    Derived at run time from the revision scripts (a few small files), not kept as a
    constant: a constant would be a second truth that a new migration could leave
    stale, and a stale head equal to the database's revision would skip that
    migration. Anything unexpected (a script whose ``revision`` cannot be read, not
    exactly one head) gives None, and the caller lets alembic decide: a slower
    start, never a skipped migration. tests/storage/test_migrations.py checks this
    against alembic's own ``ScriptDirectory``.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        # The files alembic reads: *.py in versions/ (no sourceless .pyc, not recursive).
        scripts = [p for p in versions.glob("*.py") if not p.name.startswith(("__", ".#"))]
        for script in scripts:
            source = script.read_text(encoding="utf-8")
            found = _REVISION.findall(source)
            down = _DOWN_REVISION.findall(source)
            names = _QUOTED.findall(found[0]) if len(found) == 1 else []
            if len(names) != 1 or len(down) != 1 or names[0] in revisions:
                return None
            revisions.add(names[0])
            parents.update(_QUOTED.findall(down[0]))  # None, one name or a tuple (merge)
    except OSError:
        return None
    heads = revisions - parents
    if len(heads) != 1 or not parents <= revisions:
        return None
    return heads.pop()


def _stored_revisions(connection: Connection) -> tuple[str, ...]:
    # What alembic's MigrationContext.get_current_heads() reads; no table = empty database.
    if not inspect(connection).has_table(VERSION_TABLE):
        return ()
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    return tuple(sorted(str(row[0]) for row in rows))


def _upgrade(connection: Connection, config: Config, revision: str) -> None:
    from alembic import command  # noqa: PLC0415 - only when migrating
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    script = ScriptDirectory.from_config(config)
    # Exact names: alembic itself would also accept a unique prefix, and for an unknown
    # one raises "Can't locate revision" from deep inside env.py, with its stack trace.
    known = {s.revision for s in script.walk_revisions()}
    for stored in _stored_revisions(connection):
        if stored not in known:
            url = connection.engine.url.render_as_string(hide_password=True)
            raise UnknownRevisionError(
                f"database {url} is at schema revision {stored!r}, which this version of "
                f"iotmp does not know (its newest is {script.get_current_head()!r}): it was "
                "written by a newer iotmp; run that version, or use another database"
            )
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest) in one transaction.

    Always runs alembic; :class:`UnknownRevisionError` when the database is at a
    revision that is not shipped (a newer iotmp wrote it).
    """
    config = alembic_config()
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, config, revision)


async def ensure_current(engine: AsyncEngine) -> None:
    """Bring the database to the newest shipped revision; alembic only if it is not there.

    Several servers on one PostgreSQL may start together: the check takes no lock, and
    any other answer than "at the head" goes to :func:`upgrade`, which serialises on the
    advisory lock and looks again inside its transaction.
    """
    head = shipped_head()
    if head is not None:
        async with engine.connect() as connection:
            stored = await connection.run_sync(_stored_revisions)
        if stored == (head,):
            return
    await upgrade(engine)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    revision: str | None = MigrationContext.configure(connection).get_current_revision()
    return revision


async def current_revision(engine: AsyncEngine) -> str | None:
    """Return the revision the database is at (None for an empty database)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


def head_revision() -> str | None:
    """Return the newest shipped revision, as alembic sees it."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    head: str | None = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head
