"""Reads and writes of the ``endpoints`` table (one user's endpoints at a time)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from .records import AlreadyExistsError
from .schema import endpoints as table


@dataclass(frozen=True, slots=True)
class StoredEndpoint:
    """A row of ``endpoints`` (``config`` with its secrets in clear)."""

    user: str
    endpoint: str
    type: str
    config: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    description: str = ""
    enabled: bool = True
    created: int = 0
    modified: int = 0


def _now() -> int:
    return int(time.time() * 1000)


class EndpointStore:
    """The endpoints of every user in the database behind ``engine``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def for_user(self, user: str) -> list[StoredEndpoint]:
        """Return the user's endpoints, by id."""
        query = select(table).where(table.c.user == user).order_by(table.c.endpoint)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [StoredEndpoint(**row) for row in rows]

    async def get(self, user: str, endpoint: str) -> StoredEndpoint | None:
        """One endpoint, None when the user has none by that id."""
        query = select(table).where(table.c.user == user, table.c.endpoint == endpoint)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else StoredEndpoint(**row)

    async def count(self, user: str) -> int:
        """Return how many endpoints the user has."""
        query = select(func.count()).select_from(table).where(table.c.user == user)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def create(self, record: StoredEndpoint) -> StoredEndpoint:
        """Insert a new endpoint (:class:`AlreadyExistsError` when the id is taken)."""
        now = _now()
        record = replace(record, created=now, modified=now)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(table).values(**asdict(record)))
        except IntegrityError as exc:
            raise AlreadyExistsError(record.endpoint) from exc
        return record

    async def update(self, record: StoredEndpoint) -> StoredEndpoint | None:
        """Replace every column but ``created``; None when the endpoint is gone."""
        now = _now()
        values = asdict(record)
        for key in ("user", "endpoint", "created"):
            del values[key]
        values["modified"] = now
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(table)
                .where(table.c.user == record.user, table.c.endpoint == record.endpoint)
                .values(**values)
            )
        return replace(record, modified=now) if result.rowcount else None

    async def delete(self, user: str, endpoint: str) -> bool:
        """Delete one endpoint; False when it was not there."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(table).where(table.c.user == user, table.c.endpoint == endpoint)
            )
        return bool(result.rowcount)


__all__ = ["EndpointStore", "StoredEndpoint"]
