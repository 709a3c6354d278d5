"""An HTTP device's callback actions: its POSTs also write a bucket, set and send properties,
call an endpoint; ``GET/PUT .../callback`` keep the configuration (Thinger's shape)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from server_helpers import api_call

from iotmp.server.testing import TestDevice, TestServer, run_test_server

METER = TestDevice("meter", credential="meter-key", type="HTTP", name="Meter")
LAMP = TestDevice("lamp", credential="lamp-key")
BOB_METER = TestDevice("bobs-meter", credential="bob-key", type="HTTP", user="bob")


@pytest.fixture
async def server(database: str) -> AsyncIterator[TestServer]:
    async with run_test_server(devices=[METER, LAMP, BOB_METER], database=database) as srv:
        yield srv


async def test_callback_config_round_trip_and_refusals(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.http_url}/v3/users/alice/devices/meter/callback"
    assert await api_call(http, server, "GET", url) == (200, {"actions": {}, "properties": {}})
    config = {
        "actions": {"write_bucket": "readings", "set_property": "last"},
        "properties": {"timeout": 60},
    }
    assert await api_call(http, server, "PUT", url, config) == (200, config)
    assert await api_call(http, server, "GET", url) == (200, config)

    for bad in (
        [1],
        {"actions": {"send_email": "x"}},
        {"actions": {"write_bucket": "no spaces"}},
        {"properties": {"timeout": -1}},
        {"properties": {"timeout": True}},
        {"other": 1},
    ):
        status, body = await api_call(http, server, "PUT", url, bad)
        assert status == 400 and body["error"]["message"], (bad, body)
    assert await api_call(http, server, "GET", url) == (200, config)  # unchanged

    lamp = f"{server.http_url}/v3/users/alice/devices/lamp/callback"
    assert (await api_call(http, server, "GET", lamp))[0] == 400  # not an HTTP device
    bobs = f"{server.http_url}/v3/users/bob/devices/bobs-meter/callback"
    assert (await api_call(http, server, "GET", bobs))[0] == 403  # another user's device
    foreign = f"{server.http_url}/v3/users/alice/devices/bobs-meter/callback"
    assert (await api_call(http, server, "GET", foreign))[0] == 404


async def test_posts_write_the_bucket_set_and_send_properties(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    await server.server.buckets.create("alice", "readings")
    await server.server.properties.set_value("meter", "config", {"every": 30})
    base = f"{server.http_url}/v3/users/alice/devices/meter"
    config = {
        "actions": {
            "write_bucket": "readings",
            "set_property": "last",
            "send_property": "config",
        }
    }
    assert (await api_call(http, server, "PUT", f"{base}/callback", config))[0] == 200

    status, answer = await api_call(
        http, server, "POST", f"{base}/callback/data", {"kwh": 1.5}, token="meter-key"
    )
    assert (status, answer) == (200, {"every": 30})  # the device reads its configuration
    async with asyncio.timeout(5):
        while not (records := await server.server.buckets.read("alice", "readings")):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert [r["val"] for r in records] == [{"kwh": 1.5}]
    assert await server.server.properties.value("meter", "last") == {"kwh": 1.5}
    status, value = await api_call(http, server, "GET", f"{base}/resources/kwh")
    assert (status, value) == (200, 1.5)  # the readings are resources as before


async def test_a_failing_action_answers_its_error_and_keeps_the_readings(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    base = f"{server.http_url}/v3/users/alice/devices/meter"
    config = {"actions": {"write_bucket": "missing"}}
    assert (await api_call(http, server, "PUT", f"{base}/callback", config))[0] == 200
    status, body = await api_call(
        http, server, "POST", f"{base}/callback/data", {"kwh": 2}, token="meter-key"
    )
    assert status == 404 and "bucket" in body["error"]["message"]
    assert await api_call(http, server, "GET", f"{base}/resources/kwh") == (200, 2)


async def test_posts_call_the_endpoint(server: TestServer, http: aiohttp.ClientSession) -> None:
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await server.server.endpoints.create(
            "alice", "notify", url=f"http://127.0.0.1:{port}/hook", body="{{payload}}"
        )
        base = f"{server.http_url}/v3/users/alice/devices/meter"
        config = {"actions": {"call_endpoint": "notify"}}
        assert (await api_call(http, server, "PUT", f"{base}/callback", config))[0] == 200
        status, _ = await api_call(
            http, server, "POST", f"{base}/callback/data", {"door": "open"}, token="meter-key"
        )
        assert status == 200
        assert received == [{"door": "open"}]
    finally:
        await runner.cleanup()


async def test_the_devices_own_timeout(server: TestServer, http: aiohttp.ClientSession) -> None:
    base = f"{server.http_url}/v3/users/alice/devices/meter"
    config = {"properties": {"timeout": 0.3}}
    assert (await api_call(http, server, "PUT", f"{base}/callback", config))[0] == 200
    assert (
        await api_call(http, server, "POST", f"{base}/callback/data", {"a": 1}, token="meter-key")
    )[0] == 200
    assert server.device("meter").connected
    await asyncio.sleep(0.6)
    assert not server.device("meter").connected  # not the server's 300 s default
