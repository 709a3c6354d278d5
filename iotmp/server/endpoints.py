"""Endpoints: configured calls to third-party HTTP services (issue 11)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .app import IotmpServer


class Endpoints:
    """Endpoints: REST routes, CALL_ENDPOINT, endpoint_call_response events."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server

    def routes(self) -> list[web.RouteDef]:
        """REST routes (added before the v1 resource catch-all)."""
        return []

    async def start(self) -> None:
        """Run after the storage opened (load state, start background work)."""

    async def stop(self) -> None:
        """Run before the storage closes (stop background work)."""
