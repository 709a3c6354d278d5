"""A device built on the SDK uses every stored server resource of the real server.

Codes 1, 2, 4 and 5 (READ/SET_DEVICE_PROPERTY, CALL_ENDPOINT, WRITE_BUCKET) in
both wire layouts, on SQLite and PostgreSQL; REST sees what the device did, and
what REST changes reaches the device (SUBSCRIBE_EVENT with ``current``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from device_side import WAIT, running, sdk_device

from iotmp.device import ServerCallError
from iotmp.server.testing import TestDevice, TestServer, run_test_server

LAYOUTS = ("embedded", "linux")


@pytest.fixture
async def server(database: str) -> AsyncIterator[TestServer]:
    async with run_test_server(
        devices=[TestDevice("node", credential="node-pw")], database=database
    ) as srv:
        yield srv


@pytest.fixture
async def target() -> AsyncIterator[tuple[str, list[Any]]]:
    """A third-party HTTP service: answers ``{"echo": body}``, or 500 for ``{"fail": true}``."""
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        received.append(body)
        if isinstance(body, dict) and body.get("fail"):
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response({"echo": body})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", received
    finally:
        await runner.cleanup()


async def rest(server: TestServer, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"{server.http_url}{path}",
            headers={"Authorization": f"Bearer {server.token}"},
            json=body,
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json(content_type=None)


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_sdk_device_uses_properties_buckets_and_endpoints(
    server: TestServer, target: tuple[str, list[Any]], layout: str
) -> None:
    url, received = target
    await server.server.buckets.create("alice", "log")
    await server.server.endpoints.create("alice", "hook", url=url, body="{{payload}}")
    device = sdk_device("alice", "node", "node-pw", layout=layout)
    async with running(device, server.tcp_port):
        # Properties: set from the device (with and without reply), read back, seen by REST.
        await device.set_property("config", {"period": 5})
        assert await device.get_property("config") == {"period": 5}
        await device.set_property("note", "quiet", confirm=False)
        async with asyncio.timeout(WAIT):
            while True:
                listed = await rest(server, "GET", "/v3/users/alice/devices/node/properties")
                if {p["property"] for p in listed} == {"config", "note"}:
                    break
                await asyncio.sleep(0.05)
        with pytest.raises(ServerCallError, match="not found"):
            await device.get_property("nothing")

        # A change through REST reaches the device's subscription.
        values: list[Any] = []
        subscription = device.on_property_update("config", values.append)
        await subscription.wait_active(WAIT)
        await rest(
            server, "PATCH", "/v3/users/alice/devices/node/properties/config", {"value": {"x": 1}}
        )
        async with asyncio.timeout(WAIT):
            while {"period": 5, "x": 1} not in values:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        # Buckets: records written by the device, read through REST.
        await device.write_bucket("log", {"t": 1})
        await device.write_bucket("log", {"t": 2}, confirm=False)
        async with asyncio.timeout(WAIT):
            while len(records := await rest(server, "GET", "/v1/users/alice/buckets/log/data")) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert sorted(r["val"]["t"] for r in records) == [1, 2]
        with pytest.raises(ServerCallError):
            await device.write_bucket("nobucket", {"t": 3})

        # Endpoints: the service's answer comes back; a 500 is an error with its status.
        assert await device.call_endpoint("hook", {"n": 1}) == {"echo": {"n": 1}}
        with pytest.raises(ServerCallError, match="500"):
            await device.call_endpoint("hook", {"fail": True})
        assert received == [{"n": 1}, {"fail": True}]
