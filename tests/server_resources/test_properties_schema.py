"""The migration 0003_properties builds exactly the table schema.py describes."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from iotmp.server.storage.engine import database_url
from iotmp.server.storage.repository import Storage
from iotmp.server.storage.schema import metadata


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, metadata)


def _mentions(item: Any, table: str) -> bool:
    return table in repr(item)


async def test_migrated_table_matches_the_schema(database: str, tmp_path: Any) -> None:
    storage = await Storage.open(database_url(database, tmp_path))
    try:
        async with storage.engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await storage.close()
    assert [item for item in diff if _mentions(item, "device_properties")] == []
