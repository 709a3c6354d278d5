"""Queries of buckets and their records (tables ``buckets`` and ``bucket_records``).

Every read of records is a time range of one bucket, answered from the
``(user, bucket, ts)`` index; big ranges are streamed in chunks, never loaded
whole. Deletions of old records go in bounded batches (retention).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import schema
from .records import AlreadyExistsError

STREAM_CHUNK = 1000
"""Rows fetched per round trip when a range is streamed."""


@dataclass(frozen=True, slots=True)
class StoredBucket:
    """A row of ``buckets``."""

    user: str
    bucket: str
    name: str = ""
    description: str = ""
    enabled: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    retention: dict[str, Any] | None = None
    created: int = 0
    modified: int = 0


@dataclass(frozen=True, slots=True)
class RecordRow:
    """One record to insert: ``data`` stored at ``ts`` (ms) in ``user``'s ``bucket``."""

    user: str
    bucket: str
    ts: int
    data: Any


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Which records of a bucket a read wants: ``min_ts <= ts <= max_ts``, sorted, capped."""

    min_ts: int | None = None
    max_ts: int | None = None
    descending: bool = False
    limit: int | None = None


class BucketStore:
    """Reads and writes of buckets on one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- buckets ---------------------------------------------------------------

    async def all_buckets(self) -> list[StoredBucket]:
        """Every bucket of every user (loaded once at start)."""
        table = schema.buckets
        async with self.engine.connect() as conn:
            rows = (
                (await conn.execute(select(table).order_by(table.c.user, table.c.created)))
                .mappings()
                .all()
            )
        return [StoredBucket(**row) for row in rows]

    async def create_bucket(self, bucket: StoredBucket) -> None:
        """Insert a bucket (AlreadyExistsError when the id is taken)."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(schema.buckets).values(**_bucket_values(bucket)))
        except IntegrityError as exc:
            raise AlreadyExistsError(bucket.bucket) from exc

    async def update_bucket(self, bucket: StoredBucket) -> None:
        """Replace a bucket's settings."""
        table = schema.buckets
        values = _bucket_values(bucket)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.user == bucket.user, table.c.bucket == bucket.bucket)
                .values(**values)
            )

    async def delete_bucket(self, user: str, bucket: str) -> bool:
        """Delete a bucket and (cascade) its records; False when it did not exist."""
        table = schema.buckets
        async with self.engine.begin() as conn:
            # PostgreSQL and SQLite both cascade, but an explicit delete keeps SQLite
            # correct even on a connection opened without foreign_keys=ON.
            await conn.execute(_records_of(user, bucket, delete(schema.bucket_records)))
            result = await conn.execute(
                delete(table).where(table.c.user == user, table.c.bucket == bucket)
            )
        return bool(result.rowcount)

    # -- records ---------------------------------------------------------------

    async def insert_records(self, rows: Sequence[RecordRow]) -> None:
        """Insert ``rows`` in one transaction (all or none)."""
        if not rows:
            return
        async with self.engine.begin() as conn:
            await insert_rows(conn, rows)

    def range_query(
        self, user: str, bucket: str, window: TimeRange
    ) -> Select[tuple[int, int, Any]]:
        """Return the SELECT of a read: (id, ts, data) of one bucket's range, in index order."""
        table = schema.bucket_records
        query = select(table.c.id, table.c.ts, table.c.data).where(
            table.c.user == user, table.c.bucket == bucket
        )
        if window.min_ts is not None:
            query = query.where(table.c.ts >= window.min_ts)
        if window.max_ts is not None:
            query = query.where(table.c.ts <= window.max_ts)
        if window.descending:
            query = query.order_by(table.c.ts.desc(), table.c.id.desc())
        else:
            query = query.order_by(table.c.ts, table.c.id)
        if window.limit is not None:
            query = query.limit(window.limit)
        return query

    async def read(self, user: str, bucket: str, window: TimeRange) -> list[tuple[int, Any]]:
        """Return ``(ts, data)`` of the range (use :meth:`stream` for big ranges)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(self.range_query(user, bucket, window))).all()
        return [(int(row[1]), row[2]) for row in rows]

    async def stream(
        self, user: str, bucket: str, window: TimeRange
    ) -> AsyncIterator[tuple[int, Any]]:
        """Yield ``(ts, data)`` of the range, fetched :data:`STREAM_CHUNK` rows at a time.

        Keyset pagination on (ts, id): each chunk is a fresh indexed query, so no
        cursor or transaction stays open while the consumer (an HTTP client) is slow.
        """
        table = schema.bucket_records
        remaining = window.limit
        after: tuple[int, int] | None = None
        while remaining is None or remaining > 0:
            chunk = STREAM_CHUNK if remaining is None else min(STREAM_CHUNK, remaining)
            query = self.range_query(
                user,
                bucket,
                TimeRange(window.min_ts, window.max_ts, window.descending, chunk),
            )
            if after is not None:
                ts, ident = after
                if window.descending:
                    query = query.where(
                        or_(table.c.ts < ts, and_(table.c.ts == ts, table.c.id < ident))
                    )
                else:
                    query = query.where(
                        or_(table.c.ts > ts, and_(table.c.ts == ts, table.c.id > ident))
                    )
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                yield int(row[1]), row[2]
            if len(rows) < chunk:
                return
            after = (int(rows[-1][1]), int(rows[-1][0]))
            if remaining is not None:
                remaining -= len(rows)

    async def count(self, user: str, bucket: str) -> int:
        """Return how many records the bucket holds."""
        table = schema.bucket_records
        query = _records_of(user, bucket, select(func.count()).select_from(table))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def explain_range(self, user: str, bucket: str, window: TimeRange) -> str:
        """Return the database's plan of a range read (tests check it uses the index)."""
        query = self.range_query(user, bucket, window)
        compiled = query.compile(self.engine, compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN " if self.engine.dialect.name == "sqlite" else "EXPLAIN "
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text(prefix + str(compiled)))).all()
        return "\n".join(" ".join(str(part) for part in row) for row in rows)

    # -- retention -------------------------------------------------------------

    async def delete_before(self, user: str, bucket: str, cutoff: int, batch: int) -> int:
        """Delete up to ``batch`` of the oldest records with ``ts < cutoff``; return how many."""
        table = schema.bucket_records
        oldest = _records_of(user, bucket, select(table.c.id)).where(table.c.ts < cutoff)
        return await self._delete_ids(oldest.order_by(table.c.ts).limit(batch))

    async def delete_beyond(self, user: str, bucket: str, keep: int, batch: int) -> int:
        """Delete up to ``batch`` of the oldest records beyond the newest ``keep``."""
        table = schema.bucket_records
        newest_first = _records_of(user, bucket, select(table.c.ts, table.c.id)).order_by(
            table.c.ts.desc(), table.c.id.desc()
        )
        async with self.engine.connect() as conn:
            edge = (await conn.execute(newest_first.offset(keep).limit(1))).first()
        if edge is None:
            return 0
        ts, ident = int(edge[0]), int(edge[1])
        older = _records_of(user, bucket, select(table.c.id)).where(
            or_(table.c.ts < ts, and_(table.c.ts == ts, table.c.id <= ident))
        )
        return await self._delete_ids(older.order_by(table.c.ts, table.c.id).limit(batch))

    async def _delete_ids(self, ids: Select[Any]) -> int:
        table = schema.bucket_records
        async with self.engine.begin() as conn:
            # the batch's ids first, then a delete by primary key: bounded work per transaction
            found = [row[0] for row in (await conn.execute(ids)).all()]
            if not found:
                return 0
            await conn.execute(delete(table).where(table.c.id.in_(found)))
        return len(found)


async def insert_rows(conn: AsyncConnection, rows: Iterable[RecordRow]) -> None:
    """Insert records on an open transaction (one executemany)."""
    await conn.execute(
        insert(schema.bucket_records),
        [{"user": r.user, "bucket": r.bucket, "ts": r.ts, "data": r.data} for r in rows],
    )


def _records_of(user: str, bucket: str, statement: Any) -> Any:
    table = schema.bucket_records
    return statement.where(table.c.user == user, table.c.bucket == bucket)


def _bucket_values(bucket: StoredBucket) -> Mapping[str, Any]:
    return {
        "user": bucket.user,
        "bucket": bucket.bucket,
        "name": bucket.name,
        "description": bucket.description,
        "enabled": bucket.enabled,
        "config": bucket.config,
        "retention": bucket.retention,
        "created": bucket.created,
        "modified": bucket.modified,
    }


__all__ = ["BucketStore", "RecordRow", "StoredBucket", "TimeRange", "insert_rows"]
