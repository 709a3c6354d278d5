"""REST routes of buckets (Thinger's OpenAPI paths and shapes).

* ``GET|POST /v1/users/{u}/buckets`` -- list, create
* ``GET|PUT|DELETE /v1/users/{u}/buckets/{b}`` -- read, update, delete (with its records)
* ``POST /v1/users/{u}/buckets/{b}/data`` -- write one record or an array of records
* ``GET /v1|v2/users/{u}/buckets/{b}/data`` -- read (``items sort min_ts max_ts agg agg_type``)
* ``GET|POST /v1/users/{u}/buckets/{b}/exports``, ``GET|DELETE .../exports/{file}`` -- exports

Reads and exports are streamed: rows go from the database to the socket in
chunks, whatever the size of the range.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from iotmp.protocol.message import ABSENT

from ..events import make_event, now_ms
from ..http_api import (
    dumps,
    empty_response,
    json_response,
    path_user,
    raise_error,
    read_json_body,
)
from ..storage.buckets import TimeRange
from .export import (
    MAX_COLUMNS,
    ExportError,
    ExportSpec,
    csv_header,
    csv_line,
    fields_of,
    json_item,
    parse_export_file,
    parse_export_request,
)
from .model import bucket_json
from .query import Aggregator, QueryError, parse_read_query, record_json
from .service import BucketError

if TYPE_CHECKING:
    from .service import Buckets

BASE: Final = "/v1/users/{user}/buckets"
EXPORTS_KEPT: Final = 32
"""Exports remembered per bucket for ``GET .../exports`` (the files themselves are virtual)."""
FLUSH_BYTES: Final = 65_536

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Chunked:
    """Buffers text and writes it to a streamed response in ~64 KiB pieces."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self._parts: list[str] = []
        self._size = 0

    async def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._parts:
            await self.response.write("".join(self._parts).encode())
            self._parts, self._size = [], 0


class BucketRoutes:
    """The handlers of the module docstring."""

    def __init__(self, buckets: Buckets) -> None:
        self.buckets = buckets
        self.server = buckets.server
        self._exports: dict[tuple[str, str], deque[ExportSpec]] = {}

    def routes(self) -> list[web.RouteDef]:
        """All bucket routes."""
        item = BASE + "/{bucket}"
        return [
            web.get(BASE, self.list_buckets),
            web.post(BASE, self.create),
            web.get(item, self.read_config),
            web.put(item, self.update),
            web.delete(item, self.delete),
            web.post(item + "/data", self.write),
            web.get("/{version:v[12]}/users/{user}/buckets/{bucket}/data", self.read),
            web.get(item + "/exports", self.list_exports),
            web.post(item + "/exports", self.create_export),
            web.get(item + "/exports/{file}", self.read_export),
            web.delete(item + "/exports/{file}", self.delete_export),
        ]

    def _user(self, request: web.Request) -> str:
        return path_user(self.server, request)

    def _bucket(self, request: web.Request) -> tuple[str, str]:
        user = self._user(request)
        bucket = request.match_info["bucket"]
        self.buckets.get(user, bucket)
        return user, bucket

    async def _body(self, request: web.Request) -> Any:
        body = await read_json_body(request, self.server.config.max_body_bytes)
        if body is ABSENT:
            raise_error(400, "a JSON body is required")
        return body

    # -- buckets ---------------------------------------------------------------

    async def list_buckets(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/users/{u}/buckets``."""
        user = self._user(request)
        return json_response([bucket_json(b) for b in self.buckets.list_buckets(user)])

    async def create(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/users/{u}/buckets``."""
        user = self._user(request)
        bucket = await self.buckets.create_from_body(user, await self._body(request))
        return json_response(bucket_json(bucket))

    async def read_config(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/users/{u}/buckets/{b}``."""
        user, bucket = self._bucket(request)
        return json_response(bucket_json(self.buckets.get(user, bucket)))

    async def update(self, request: web.Request) -> web.StreamResponse:
        """``PUT /v1/users/{u}/buckets/{b}`` (only the keys sent change)."""
        user, bucket = self._bucket(request)
        changed = await self.buckets.update(user, bucket, await self._body(request))
        return json_response(bucket_json(changed))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /v1/users/{u}/buckets/{b}``: the bucket and its records."""
        user, bucket = self._bucket(request)
        await self.buckets.delete(user, bucket)
        self._exports.pop((user, bucket), None)
        return empty_response()

    # -- records ---------------------------------------------------------------

    async def write(self, request: web.Request) -> web.StreamResponse:
        """``POST .../data``: one record, or an array of them; a record's ``ts`` (ms) is kept."""
        user, bucket = self._bucket(request)
        body = await self._body(request)
        records = body if isinstance(body, list) else [body]
        if not records:
            raise_error(400, "no records")
        await self.buckets.write_many(user, bucket, [_split_ts(r) for r in records])
        return empty_response()

    async def read(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1|v2/.../data``: a JSON array of ``{"ts", "val"}``, streamed."""
        user, bucket = self._bucket(request)
        cap = self.server.config.limits.bucket_read_max_items
        try:
            query = parse_read_query(request.query, cap)
        except QueryError as exc:
            raise_error(400, str(exc))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        out = _Chunked(response)
        records = self.buckets.store.stream(user, bucket, query.window)
        first = True
        async for item in _items(records, query.agg_ms, query.agg_type, query.limit):
            await out.add(("[" if first else ",") + dumps(item))
            first = False
        await out.add("[]" if first else "]")
        await out.flush()
        await response.write_eof()
        return response

    # -- exports ---------------------------------------------------------------

    def _export_url(self, user: str, bucket: str, file: str) -> str:
        return f"{BASE.format(user=user)}/{bucket}/exports/{file}"

    async def list_exports(self, request: web.Request) -> web.StreamResponse:
        """``GET .../exports``: the exports made since the server started."""
        user, bucket = self._bucket(request)
        kept = self._exports.get((user, bucket), deque())
        return json_response([self._export_json(user, bucket, spec) for spec in kept])

    def _export_json(self, user: str, bucket: str, spec: ExportSpec) -> dict[str, Any]:
        return {
            "file": spec.file,
            "state": 0,
            "data_type": spec.data_type,
            "timestamp_format": spec.timestamp_format,
            "min_ts": spec.min_ts,
            "max_ts": spec.max_ts,
            "url": self._export_url(user, bucket, spec.file),
        }

    async def create_export(self, request: web.Request) -> web.StreamResponse:
        """``POST .../exports``: name the export, ready at once (``bucket_export_completed``)."""
        user, bucket = self._bucket(request)
        try:
            spec = parse_export_request(await self._body(request), now_ms())
        except ExportError as exc:
            raise_error(400, str(exc))
        kept = self._exports.setdefault((user, bucket), deque(maxlen=EXPORTS_KEPT))
        kept.append(spec)
        fields = self._export_json(user, bucket, spec)
        del fields["state"]
        self.server.events.publish(
            make_event("bucket_export_completed", user, bucket=bucket, **fields)
        )
        return json_response({"file": spec.file, "state": 0})

    async def delete_export(self, request: web.Request) -> web.StreamResponse:
        """``DELETE .../exports/{file}``: forget it from the list."""
        user, bucket = self._bucket(request)
        name = request.match_info["file"]
        kept = self._exports.get((user, bucket), deque())
        remaining = [spec for spec in kept if spec.file != name]
        if len(remaining) == len(kept):
            raise_error(404, "export not found")
        self._exports[(user, bucket)] = deque(remaining, maxlen=EXPORTS_KEPT)
        return empty_response()

    async def read_export(self, request: web.Request) -> web.StreamResponse:
        """``GET .../exports/{file}``: the CSV or JSON of the export's range, streamed."""
        user, bucket = self._bucket(request)
        try:
            spec = parse_export_file(request.match_info["file"])
        except ExportError as exc:
            raise_error(404, str(exc))
        window = TimeRange(spec.min_ts, spec.max_ts)
        store = self.buckets.store
        columns: list[str] = []
        if spec.data_type == "csv":  # the header needs every field: one pass for the names
            names: set[str] = set()
            async for _ts, data in store.stream(user, bucket, window):
                names.update(fields_of(data))
                if len(names) > MAX_COLUMNS:
                    raise_error(413, f"more than {MAX_COLUMNS} fields: export as json")
            columns = sorted({*names, "ts"})
        response = web.StreamResponse(
            headers={
                "Content-Type": spec.content_type,
                "Content-Disposition": f'attachment; filename="{spec.file}"',
            }
        )
        await response.prepare(request)
        out = _Chunked(response)
        first = True
        if spec.data_type == "csv":
            await out.add(csv_header(columns))
        async for ts, data in store.stream(user, bucket, window):
            if spec.data_type == "csv":
                await out.add(csv_line(columns, ts, data, spec.timestamp_format))
            else:
                await out.add(("[" if first else ",") + json_item(ts, data, spec.timestamp_format))
            first = False
        if spec.data_type == "json":
            await out.add("[]" if first else "]")
        await out.flush()
        await response.write_eof()
        return response


def _split_ts(record: Any) -> tuple[Any, int | None]:
    """Take a written record's own ``ts`` (ms) out of it, if it has a valid one."""
    if isinstance(record, dict) and "ts" in record:
        ts = record["ts"]
        if isinstance(ts, int) and not isinstance(ts, bool) and 0 <= ts < 10**15:
            rest = {k: v for k, v in record.items() if k != "ts"}
            return rest, ts
        raise BucketError(400, "ts: expected a timestamp in ms")
    return record, None


async def _items(
    records: AsyncIterator[tuple[int, Any]], agg_ms: int | None, agg_type: str, cap: int
) -> AsyncIterator[dict[str, Any]]:
    if agg_ms is None:
        async for ts, data in records:
            yield record_json(ts, data)
        return
    folder = Aggregator(agg_ms, agg_type)
    produced = 0
    async for ts, data in records:
        closed = folder.add(ts, data)
        if closed is not None:
            yield closed
            produced += 1
            if produced >= cap:
                return
    last = folder.finish()
    if last is not None:
        yield last


__all__ = ["BucketRoutes"]
