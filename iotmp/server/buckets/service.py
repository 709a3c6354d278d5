"""The bucket feature: buckets kept in memory and the database, writes, reads, events.

What other parts of the server call (the in-process contract):

* ``await server.buckets.write(user, bucket, record, ts=None)``
* ``await server.buckets.create(user, bucket, ...)`` / ``read(user, bucket, ...)``

Writes from devices (WRITE_BUCKET, spec 11 code 5), REST and samplers all go
through :class:`~.writer.WriteQueue`; every stored record is published as a
``bucket_write`` event once its transaction committed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from iotmp.protocol.message import ABSENT
from iotmp.protocol.server_resources import ServerResource, ServerResourceCall

from ..device_requests import ServerResourceError
from ..events import make_event, now_ms
from ..feature import FeatureError
from ..http_api import jsonable
from ..storage.buckets import BucketStore, RecordRow, StoredBucket, TimeRange
from ..storage.records import AlreadyExistsError
from .model import BucketInputError, bucket_json, new_bucket, updated_bucket
from .query import record_json
from .retention import RetentionTask
from .sampling import Samplers
from .writer import QueueFullError, WriteFailedError, WriteQueue

if TYPE_CHECKING:
    from ..app import IotmpServer
    from ..registry import DeviceState

_LOGGER = logging.getLogger(__name__)


class BucketError(FeatureError):
    """A bucket request cannot be served: ``status`` (HTTP) and ``message``."""


MSG_NOT_FOUND = "bucket not found"


class Buckets:
    """Buckets: REST routes, WRITE_BUCKET, retention, device-resource sources."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        self._buckets: dict[tuple[str, str], StoredBucket] = {}
        self._store: BucketStore | None = None
        self._queue: WriteQueue | None = None
        self._retention: RetentionTask | None = None
        self._samplers = Samplers(server, self.write)
        self._unlisten: Callable[[], None] | None = None
        self.retention_interval = 60.0
        """Seconds between retention passes (tests shorten it before start)."""
        server.server_resources.register(ServerResource.WRITE_BUCKET, self._device_write)

    # -- life ------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """REST routes (added before the v1 resource catch-all)."""
        from .routes import BucketRoutes  # noqa: PLC0415 - routes import this module

        return BucketRoutes(self).routes()

    async def start(self) -> None:
        """Load the buckets, start the write queue, retention and the samplers."""
        store = BucketStore(self.server.storage.engine)
        self._store = store
        self._buckets = {(b.user, b.bucket): b for b in await store.all_buckets()}
        limits = self.server.config.limits
        self._queue = WriteQueue(
            store.insert_records,
            self._committed,
            max_rows=limits.bucket_write_queue_rows,
            batch_rows=limits.bucket_write_batch_rows,
        )
        self._queue.start()
        self._retention = RetentionTask(
            store, self.all_buckets, now_ms, interval=self.retention_interval
        )
        self._retention.start()
        self._unlisten = self.server.registry.add_listener(self._samplers.device_changed)
        for bucket in self._buckets.values():
            self._samplers.sync(bucket)

    async def stop(self) -> None:
        """Stop sampling and retention; write what is queued (safe without start)."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        await self._samplers.stop()
        if self._retention is not None:
            await self._retention.stop()
            self._retention = None
        if self._queue is not None:
            await self._queue.stop()
            self._queue = None
        self._store = None

    @property
    def store(self) -> BucketStore:
        """The bucket queries (RuntimeError before start)."""
        if self._store is None:
            raise RuntimeError("buckets are not started")
        return self._store

    @property
    def queue(self) -> WriteQueue:
        """The write queue (RuntimeError before start)."""
        if self._queue is None:
            raise RuntimeError("buckets are not started")
        return self._queue

    @property
    def retention(self) -> RetentionTask:
        """The retention task (RuntimeError before start)."""
        if self._retention is None:
            raise RuntimeError("buckets are not started")
        return self._retention

    # -- buckets ---------------------------------------------------------------

    def all_buckets(self) -> list[StoredBucket]:
        """Return every user's buckets."""
        return list(self._buckets.values())

    def list_buckets(self, user: str) -> list[StoredBucket]:
        """Return the user's buckets, oldest first."""
        found = [b for (owner, _), b in self._buckets.items() if owner == user]
        return sorted(found, key=lambda b: (b.created, b.bucket))

    def get(self, user: str, bucket: str) -> StoredBucket:
        """Return the user's bucket (BucketError 404 when unknown)."""
        found = self._buckets.get((user, bucket))
        if found is None:
            raise BucketError(404, MSG_NOT_FOUND)
        return found

    async def create_from_body(self, user: str, body: Any) -> StoredBucket:
        """Create a bucket from a ``POST .../buckets`` body."""
        try:
            bucket = new_bucket(user, body, now_ms())
        except BucketInputError as exc:
            raise BucketError(400, str(exc)) from exc
        if len(self.list_buckets(user)) >= self.server.config.limits.buckets_per_user:
            raise BucketError(403, "too many buckets (limits.buckets_per_user)")
        if (user, bucket.bucket) in self._buckets:
            raise BucketError(409, "bucket already exists")
        try:
            await self.store.create_bucket(bucket)
        except AlreadyExistsError as exc:
            raise BucketError(409, "bucket already exists") from exc
        self._buckets[(user, bucket.bucket)] = bucket
        self._samplers.sync(bucket)
        return bucket

    async def create(
        self,
        user: str,
        bucket: str,
        *,
        name: str | None = None,
        description: str = "",
        config: dict[str, Any] | None = None,
        retention: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """Create a bucket (the demo's helper); returns it in Thinger's shape."""
        body: dict[str, Any] = {
            "bucket": bucket,
            "name": name or bucket,
            "description": description,
            "enabled": enabled,
            "config": config or {"source": "api"},
        }
        if retention is not None:
            body["retention"] = retention
        return bucket_json(await self.create_from_body(user, body))

    async def update(self, user: str, bucket: str, body: Any) -> StoredBucket:
        """Apply a ``PUT`` body to a bucket."""
        current = self.get(user, bucket)
        try:
            changed = updated_bucket(current, body, now_ms())
        except BucketInputError as exc:
            raise BucketError(400, str(exc)) from exc
        await self.store.update_bucket(changed)
        self._buckets[(user, bucket)] = changed
        if changed.config != current.config or changed.enabled != current.enabled:
            self._samplers.sync(changed)
        if changed.retention != current.retention:
            self.retention.kick()
        return changed

    async def delete(self, user: str, bucket: str) -> None:
        """Delete a bucket and its records."""
        self.get(user, bucket)
        # forget it first: writes from now on fail instead of racing the delete
        del self._buckets[(user, bucket)]
        self._samplers.remove((user, bucket))
        await self.store.delete_bucket(user, bucket)

    # -- records ---------------------------------------------------------------

    def _row(self, user: str, bucket: str, record: Any, ts: int | None) -> RecordRow:
        data = jsonable(record)
        limit = self.server.config.limits.bucket_record_max_bytes
        try:
            size = len(json.dumps(data, separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            raise BucketError(400, "record is not JSON") from exc
        if size > limit:
            raise BucketError(413, f"record larger than {limit} bytes")
        return RecordRow(user, bucket, now_ms() if ts is None else ts, data)

    def _writable(self, user: str, bucket: str) -> StoredBucket:
        found = self.get(user, bucket)
        if not found.enabled:
            raise BucketError(409, "bucket is disabled")
        return found

    async def write(self, user: str, bucket: str, record: Any, ts: int | None = None) -> None:
        """Store one record (``ts`` in ms, default now); publishes ``bucket_write``.

        Raises :class:`BucketError` (unknown or disabled bucket, record too big,
        write queue full, database failure).
        """
        self._writable(user, bucket)
        await self._submit([self._row(user, bucket, record, ts)])

    async def write_many(
        self, user: str, bucket: str, records: Sequence[tuple[Any, int | None]]
    ) -> None:
        """Store ``(record, ts)`` pairs in one transaction (all or none)."""
        self._writable(user, bucket)
        await self._submit([self._row(user, bucket, record, ts) for record, ts in records])

    async def _submit(self, rows: list[RecordRow]) -> None:
        try:
            done = self.queue.submit(rows)
        except QueueFullError as exc:
            raise BucketError(503, str(exc)) from exc
        try:
            await done
        except WriteFailedError as exc:
            raise BucketError(409, "the record could not be stored (bucket deleted?)") from exc

    def _committed(self, rows: Sequence[RecordRow]) -> None:
        for row in rows:
            self.server.events.publish(
                make_event("bucket_write", row.user, ts=row.ts, bucket=row.bucket, data=row.data)
            )

    async def read(
        self,
        user: str,
        bucket: str,
        *,
        items: int | None = None,
        sort: str = "asc",
        min_ts: int | None = None,
        max_ts: int | None = None,
    ) -> list[dict[str, Any]]:
        """Return records as ``{"ts", "val"}`` (at most ``limits.bucket_read_max_items``)."""
        self.get(user, bucket)
        cap = self.server.config.limits.bucket_read_max_items
        window = TimeRange(min_ts, max_ts, sort == "desc", min(items or cap, cap))
        return [record_json(ts, data) for ts, data in await self.store.read(user, bucket, window)]

    # -- devices ---------------------------------------------------------------

    async def _device_write(self, device: DeviceState, call: ServerResourceCall) -> Any:
        """WRITE_BUCKET: PAYLOAD is the record, stored now in the device's user's bucket."""
        if not isinstance(call.target, str):
            raise ServerResourceError("WRITE_BUCKET needs a bucket id")
        if call.payload is ABSENT:
            raise ServerResourceError("WRITE_BUCKET needs a record (PAYLOAD)")
        try:
            await self.write(device.user, call.target, call.payload)
        except BucketError as exc:
            raise ServerResourceError(exc.message) from exc
        return ABSENT


__all__ = ["BucketError", "Buckets"]
