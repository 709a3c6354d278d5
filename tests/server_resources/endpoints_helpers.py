"""Helpers of the endpoint and alarm tests: a local HTTP service standing for a third party.

Paths: ``/ok`` (200 JSON echoing the body), ``/text`` (200 text), ``/fail``
(500 text), ``/denied`` (401), ``/empty`` (204), ``/slow`` (answers only when
released or after 10 s), ``/big`` (a chunked body of ``big_size`` bytes).
Every request is recorded in :attr:`Target.seen` and put on :attr:`Target.arrivals`.
Also :func:`api` (a REST call) and :func:`next_event` (an events-socket read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web


@dataclass(frozen=True)
class Seen:
    """One request the target received."""

    method: str
    path: str
    raw_path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the body decoded as JSON."""
        return json.loads(self.body)


class Target:
    """The service of the module docstring, on 127.0.0.1 (ephemeral port)."""

    def __init__(self, big_size: int = 4000) -> None:
        self.big_size = big_size
        self.seen: list[Seen] = []
        self.arrivals: asyncio.Queue[Seen] = asyncio.Queue()
        self.release = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer by path (module docstring)."""
        seen = Seen(
            request.method,
            request.path,
            request.raw_path,
            request.query_string,
            dict(request.headers),
            await request.read(),
        )
        self.seen.append(seen)
        self.arrivals.put_nowait(seen)
        name = request.path.strip("/").split("/")[0]
        if name == "ok":
            echo: Any = None
            if seen.body:
                try:
                    echo = seen.json()
                except ValueError:
                    echo = seen.body.decode()
            return web.json_response({"ok": True, "echo": echo})
        if name == "text":
            return web.Response(text="pong")
        if name == "fail":
            return web.Response(status=500, text="broken")
        if name == "denied":
            return web.json_response({"error": "bad key"}, status=401)
        if name == "empty":
            return web.Response(status=204)
        if name == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), 10)
            return web.json_response({"slow": True})
        if name == "big":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            sent = 0
            while sent < self.big_size:
                await response.write(b"x" * 500)
                sent += 500
            await response.write_eof()
            return response
        return web.Response(status=404)

    async def start(self) -> None:
        """Listen on 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        # no access log: it is the third party's, and would print the secrets it receives
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Release slow requests and stop listening."""
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def next_request(self, limit: float = 5.0) -> Seen:
        """Wait for the next request."""
        async with asyncio.timeout(limit):
            return await self.arrivals.get()


@contextlib.asynccontextmanager
async def running_target(big_size: int = 4000) -> AsyncIterator[Target]:
    """Run a :class:`Target` for the block."""
    target = Target(big_size)
    await target.start()
    try:
        yield target
    finally:
        await target.stop()


async def next_event(ws: aiohttp.ClientWebSocketResponse, name: str, limit: float = 5.0) -> Any:
    """Read an events socket until an event called ``name`` comes (others are skipped)."""
    async with asyncio.timeout(limit):
        while True:
            frame = await ws.receive_json()
            if frame.get("event") == name:
                return frame
