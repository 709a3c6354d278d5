"""Alarm rules and instances (placeholder until written)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..app import IotmpServer


class Alarms:
    """Alarm rules and instances: REST routes, evaluation, events."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server

    def routes(self) -> list[web.RouteDef]:
        """REST routes (added before the v1 resource catch-all)."""
        return []

    async def start(self) -> None:
        """Run after the storage opened."""

    async def stop(self) -> None:
        """Run before the storage closes."""
