"""The server with the project's virtual devices (``iotmp.sim``)."""

from __future__ import annotations

import aiohttp

from iotmp.server.testing import run_test_server
from iotmp.sim.testing import run_virtual_devices


async def test_demo_controller_and_plug(http: aiohttp.ClientSession) -> None:
    async with (
        run_test_server(request_timeout=2.0) as server,
        run_virtual_devices(server, profiles=["controller", "smart_plug"]) as fleet,
    ):
        await fleet.wait_connected()
        headers = {"Authorization": f"Bearer {server.token}"}
        base = f"{server.http_url}/v3/users/{server.user}/devices/controller/resources"
        async with http.get(f"{server.http_url}/v1/users/{server.user}/devices",
                            headers=headers) as resp:  # fmt: skip
            listed = {d["device"]: d["connection"]["active"] for d in await resp.json()}
        assert listed == {"controller": True, "smart-plug": True}
        async with http.get(base, headers=headers) as resp:
            api = await resp.json()
        assert api["reboot"] == {"fn": 1}
        assert api["setpoint"] == {"fn": 2}
        assert api["calc"] == {"fn": 4}
        async with http.get(f"{base}/setpoint/api", headers=headers) as resp:
            assert await resp.json() == {"in": 21.5}
        ws_url = base.replace("http://", "ws://", 1)
        async with http.ws_connect(ws_url, headers=headers) as ws:
            await ws.send_json({"resource": "setpoint", "interval": 0})
            assert (await ws.receive_json(timeout=5))["payload"] == 21.5
            async with http.post(f"{base}/setpoint", json=23, headers=headers) as resp:
                assert resp.status == 200
                assert await resp.read() == b""
            frame = await ws.receive_json(timeout=5)
            assert frame == {"resource": "setpoint", "signal": "data", "payload": 23}
        assert fleet["controller"].state["setpoint"] == 23
        async with http.post(f"{base}/calc", json={"a": 2, "b": 5}, headers=headers) as resp:
            assert await resp.json() == {"sum": 7, "product": 10}
        async with http.post(f"{base}/calc", json={"a": "x"}, headers=headers) as resp:
            assert resp.status == 400
