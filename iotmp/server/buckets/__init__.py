"""Buckets: time series kept in the server's database (issue 11)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ..app import IotmpServer


class Buckets:
    """Buckets: REST routes, WRITE_BUCKET, retention, device-resource sources."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server

    def routes(self) -> list[web.RouteDef]:
        """REST routes (added before the v1 resource catch-all)."""
        return []

    async def start(self) -> None:
        """Run after the storage opened (load state, start background work)."""

    async def stop(self) -> None:
        """Run before the storage closes (stop background work)."""

    async def write(self, user: str, bucket: str, record: Any, ts: int | None = None) -> None:
        """Store one record (``ts`` in ms, default now); publishes ``bucket_write``."""
        raise NotImplementedError
