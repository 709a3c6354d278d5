"""What the server expects of a feature (properties, buckets, endpoints, ...)."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web


class FeatureError(Exception):
    """A feature's request cannot be served: HTTP ``status`` and a ``message`` for everyone.

    The REST error middleware answers it as ``{"error": {"message": ...}}`` with
    ``status``; device-facing code sends ``message`` in an ERROR.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Feature(Protocol):
    """A part of the server with routes and a life between storage open and close.

    ``stop`` must be safe to call when ``start`` never ran or failed half way
    (the server's shutdown runs it after any failed start).
    """

    def routes(self) -> list[web.RouteDef]:
        """REST routes (added before the v1 resource catch-all)."""
        ...

    async def start(self) -> None:
        """Run after the storage opened."""
        ...

    async def stop(self) -> None:
        """Run before the storage closes."""
        ...
