"""The queries of device properties (table ``device_properties``).

Each write is one transaction that first takes the row's write lock (a no-op
UPDATE: SQLite's database write lock, PostgreSQL's row lock when the row
exists), then reads, changes and checks: a read-modify-write such as a PATCH
cannot lose a concurrent update, in this process or another one sharing the
database. Two processes creating the same new row at once make one of them
fail with :class:`PropertyConflictError` (the caller retries).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import schema
from .property_records import (
    Change,
    DeviceTotals,
    PropertyConflictError,
    QuotaCheck,
    StoredProperty,
)


def _row(mapping: Any) -> StoredProperty:
    return StoredProperty(**dict(mapping))


class PropertyStore:
    """Reads and writes of device properties on the server's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def of_device(self, device: str) -> list[StoredProperty]:
        """Return a device's properties, ordered by id."""
        table = schema.device_properties
        query = select(table).where(table.c.device == device).order_by(table.c.property)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_row(row) for row in rows]

    async def get(self, device: str, prop: str) -> StoredProperty | None:
        """One property (None when the device has no such property)."""
        table = schema.device_properties
        query = select(table).where(table.c.device == device, table.c.property == prop)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _row(row)

    async def write(
        self, device: str, changes: Sequence[tuple[str, Change]], check: QuotaCheck
    ) -> list[tuple[StoredProperty | None, StoredProperty]]:
        """Apply ``changes`` to the device's properties in one transaction.

        Returns ``(old, new)`` per change. A :class:`Change` or ``check`` that
        raises leaves everything as it was.
        """
        table = schema.device_properties
        try:
            async with self.engine.begin() as conn:
                for prop, _change in changes:
                    await conn.execute(
                        update(table)
                        .where(table.c.device == device, table.c.property == prop)
                        .values(modified=table.c.modified)
                    )
                before = await self._totals(conn, device)
                results: list[tuple[StoredProperty | None, StoredProperty]] = []
                for prop, change in changes:
                    row = (
                        (
                            await conn.execute(
                                select(table).where(
                                    table.c.device == device, table.c.property == prop
                                )
                            )
                        )
                        .mappings()
                        .first()
                    )
                    old = None if row is None else _row(row)
                    results.append((old, change(old)))
                after = DeviceTotals(
                    before.count + sum(1 for old, _ in results if old is None),
                    before.size + sum(new.size - (old.size if old else 0) for old, new in results),
                )
                check(before, after)
                for old, new in results:
                    values = {
                        "name": new.name,
                        "description": new.description,
                        "type": new.type,
                        "value": new.value,
                        "size": new.size,
                        "extra": new.extra,
                        "modified": new.modified,
                    }
                    if old is None:
                        await conn.execute(
                            insert(table).values(
                                device=device, property=new.property, created=new.created, **values
                            )
                        )
                    else:
                        await conn.execute(
                            update(table)
                            .where(table.c.device == device, table.c.property == new.property)
                            .values(**values)
                        )
        except IntegrityError as exc:
            raise PropertyConflictError(str(exc.orig)) from exc
        return results

    @staticmethod
    async def _totals(conn: AsyncConnection, device: str) -> DeviceTotals:
        table = schema.device_properties
        row = (
            await conn.execute(
                select(func.count(), func.coalesce(func.sum(table.c.size), 0)).where(
                    table.c.device == device
                )
            )
        ).one()
        return DeviceTotals(int(row[0]), int(row[1]))

    async def delete(self, device: str, prop: str) -> bool:
        """Delete one property; False when it was not there."""
        table = schema.device_properties
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(table).where(table.c.device == device, table.c.property == prop)
            )
        return bool(result.rowcount)


__all__ = ["PropertyStore"]
