"""HTTP devices (type HTTP): Thinger's callback POST, fields as output resources."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from iotmp.server.testing import TestDevice, run_test_server

METER = TestDevice("meter", credential="meter-key", type="HTTP", name="Meter")
PLAIN = TestDevice("plain", credential="plain-key")


async def test_callback_fields_become_output_resources() -> None:
    async with (
        run_test_server(devices=[METER, PLAIN], http_device_timeout=0.5) as server,
        aiohttp.ClientSession() as http,
    ):
        url = f"{server.http_url}/v3/users/alice/devices/meter/callback/data"
        api = f"{server.http_url}/v3/users/alice/devices/meter/resources"
        user = {"Authorization": f"Bearer {server.token}"}
        device = {"Authorization": "Bearer meter-key"}
        before = int(time.time() * 1000)
        async with http.post(url, headers=device, json={"temperature": 21.5, "ok": True}) as r:
            assert r.status == 200, await r.text()
        assert server.device("meter").connected
        async with http.get(api, headers=user) as r:
            assert await r.json() == {"ok": {"fn": 3}, "temperature": {"fn": 3}}
        async with http.get(f"{api}/temperature", headers=user) as r:
            assert await r.json() == 21.5
        async with http.get(f"{api}/temperature/api", headers=user) as r:
            sample = await r.json()
        assert sample["out"] == 21.5 and sample["ts"] >= before
        # Outputs are read-only from the API side.
        async with http.post(f"{api}/temperature", headers=user, json=3) as r:
            assert r.status == 405
            assert "error" in await r.json()
        # Not seen within the timeout: offline.
        await asyncio.sleep(0.8)
        assert not server.device("meter").connected


async def test_callback_bad_input() -> None:
    async with (
        run_test_server(devices=[METER, PLAIN], max_body_bytes=1024) as server,
        aiohttp.ClientSession() as http,
    ):
        base = f"{server.http_url}/v3/users/alice/devices"
        device = {"Authorization": "Bearer meter-key"}

        async def post(path: str, headers: dict[str, str], **kw: Any) -> tuple[int, Any]:
            async with http.post(f"{base}/{path}/callback/data", headers=headers, **kw) as r:
                return r.status, await r.json(content_type=None) if r.status != 200 else None

        assert (await post("meter", {}, json={"a": 1}))[0] == 401
        assert (await post("meter", {"Authorization": "Bearer nope"}, json={"a": 1}))[0] == 401
        assert (await post("ghost", device, json={"a": 1}))[0] == 404
        assert (await post("plain", {"Authorization": "Bearer plain-key"}, json={"a": 1}))[0] == 400
        status, body = await post("meter", device, data=b"{not json")
        assert status == 400 and body["error"]["message"]
        assert (await post("meter", device, data=b"\xff\x00\x01"))[0] == 400
        assert (await post("meter", device, json={"x": "y" * 2000}))[0] == 413
        assert (await post("meter", device, json={"a/b": 1}))[0] == 400
        assert (await post("meter", device, json={str(i): i for i in range(300)}))[0] in (400, 413)
        # Nothing above created a resource; a good POST still works.
        assert not server.device("meter").resources
        assert (await post("meter", device, json=[1, 2]))[0] == 200
        assert server.device("meter").resources == {"data": 3}
