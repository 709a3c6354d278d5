"""Device properties: configuration and state a device keeps on the server (issue 11)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .app import IotmpServer


class Properties:
    """A device's properties: REST routes, READ/SET_DEVICE_PROPERTY, events."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server

    def routes(self) -> list[web.RouteDef]:
        """REST routes (added before the v1 resource catch-all)."""
        return []

    async def start(self) -> None:
        """Run after the storage opened (load state, start background work)."""

    async def stop(self) -> None:
        """Run before the storage closes (stop background work)."""

    async def value(self, device_id: str, prop: str) -> Any:
        """Return the value of property ``prop`` of ``device_id``; KeyError when it has none.

        Other features (event subscriptions with ``current``, alarms) read through this.
        """
        raise KeyError(prop)

    async def set_value(self, device_id: str, prop: str, value: Any) -> None:
        """Create or replace property ``prop`` (publishes device_property_create/update)."""
        raise NotImplementedError
