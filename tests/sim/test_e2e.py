"""End to end: virtual devices on the real local server, seen through its REST / WS API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from iotmp.cli.sim import parse_server, with_tls
from iotmp.server.testing import TestDevice, TestServer, run_test_server
from iotmp.sim.fleet import Fleet, make_devices
from iotmp.sim.profile import builtin_profiles
from iotmp.sim.simulation import Command
from iotmp.sim.testing import TestFleet, run_virtual_devices


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Real loopback sockets (Home Assistant's plugin blocks sockets by default)."""


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with run_test_server(user="alice", request_timeout=2.0) as test_server:
        yield test_server


@pytest.fixture
async def http(server: TestServer) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


def _dev(server: TestServer, device: str, path: str = "") -> str:
    return f"{server.http_url}/v3/users/{server.user}/devices/{device}{path}"


async def _json(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    return json.loads(text) if text else None


async def _frames(ws: aiohttp.ClientWebSocketResponse, resource: str, n: int) -> list[Any]:
    """The next ``n`` data payloads for ``resource`` on a multiplexed resource socket."""
    values: list[Any] = []
    async with asyncio.timeout(5):
        while len(values) < n:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            if frame.get("resource") != resource or frame.get("signal", "data") != "data":
                continue
            values.append(frame.get("payload", frame.get("out", frame.get("in"))))
    return values


async def test_demo_devices_come_online_and_describe_their_profiles(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    async with run_virtual_devices(server, demo=True) as fleet:
        await fleet.wait_connected(timeout=5)
        profiles = {p.device_id: p for p in builtin_profiles().values()}
        assert sorted(fleet.ids) == sorted(profiles)
        assert set(profiles) <= set(server.devices_online())
        for device in fleet.devices:
            assert device.connected
            assert device.profile is profiles[device.device_id]
            async with http.get(_dev(server, device.device_id, "/resources")) as response:
                assert response.status == 200
                assert await _json(response) == device.profile.describe()
        async with http.get(_dev(server, "env-sensor", "/resources/environment/api")) as resp:
            sample = (await _json(resp))["out"]
        assert set(sample) == {"temperature", "humidity", "pressure"}
    await asyncio.sleep(0)
    assert not any(d.connected for d in fleet.devices)


async def test_write_reaches_the_lamp_and_is_echoed(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    async with run_virtual_devices(server, ids=["rgb-lamp"]) as fleet:
        await fleet.wait_connected(timeout=5)
        lamp = fleet["rgb-lamp"]
        async with http.ws_connect(_dev(server, "rgb-lamp", "/resources")) as ws:
            await ws.send_json({"resource": "light", "interval": 0, "enabled": True})
            (first,) = await _frames(ws, "light", 1)  # the stream echo
            assert first == lamp.profile["light"].input
            new = {"on": True, "brightness": 200, "r": 10, "g": 20, "b": 30}
            async with http.post(_dev(server, "rgb-lamp", "/resources/light"), json=new) as resp:
                assert resp.status == 200
            assert lamp.state["light"] == new
            assert lamp.commands == [Command("light", new)]
            (echo,) = await _frames(ws, "light", 1)  # streamed after the write
            assert echo == new
        # Partial write merges; the state reads back through the resource's /api.
        async with http.post(_dev(server, "rgb-lamp", "/resources/light"), json={"on": False}):
            pass
        async with http.get(_dev(server, "rgb-lamp", "/resources/light/api")) as resp:
            assert await _json(resp) == {"in": {**new, "on": False}}
        async with http.post(
            _dev(server, "rgb-lamp", "/resources/light"), json={"brightness": 999}
        ) as resp:
            assert resp.status == 400
        assert lamp.state["light"]["brightness"] == 200


async def test_counter_streams_changes(server: TestServer, http: aiohttp.ClientSession) -> None:
    async with run_virtual_devices(server, profiles=["counter"], tick=0.02) as fleet:
        await fleet.wait_connected(timeout=5)
        async with http.ws_connect(_dev(server, "counter", "/resources")) as ws:
            await ws.send_json({"resource": "count", "interval": 0, "enabled": True})
            values = await _frames(ws, "count", 6)
        assert all(isinstance(v, int) for v in values)
        assert values == sorted(values)
        assert values[-1] > values[0]
        assert fleet["counter"].state["count"] >= values[-1]


async def test_controller_plug_and_many_devices(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    async with run_virtual_devices(
        server, profiles=["controller", "smart_plug"], count=2, tick=0.01
    ) as fleet:
        assert sorted(fleet.ids) == ["controller-1", "controller-2", "smart-plug-1", "smart-plug-2"]
        await fleet.wait_connected(timeout=5)
        ctl = fleet["controller-1"]
        url = _dev(server, "controller-1", "/resources")
        async with http.post(url + "/calc", json={"a": 2, "b": 21}) as resp:
            assert resp.status == 200
            assert await _json(resp) == {"sum": 23, "product": 42}
        async with http.post(url + "/calc", json={"a": "x", "b": 1}) as resp:
            assert resp.status == 400
            assert "numeric" in json.dumps(await _json(resp))
        async with http.get(url + "/calc/api") as resp:
            assert await _json(resp) == {"in": {"a": 2, "b": 21}, "out": {"sum": 23, "product": 42}}
        async with http.post(url + "/reboot") as resp:
            assert resp.status == 200
        assert ctl.state["reboot"] == 1
        assert fleet["controller-2"].state["reboot"] == 0

        plug = fleet["smart-plug-2"]
        assert plug.state["power"] == 0.0
        async with http.post(_dev(server, "smart-plug-2", "/resources/relay"), json=True) as resp:
            assert resp.status == 200
        await plug.wait_for(lambda s: s["power"] >= 60 and s["energy"] > 0, timeout=5)
        async with http.get(_dev(server, "smart-plug-2", "/resources/power")) as resp:
            assert 60 <= await _json(resp) <= 2000
        assert fleet["smart-plug-1"].state["power"] == 0.0


async def test_devices_reconnect_after_server_restart(server: TestServer) -> None:
    async with run_virtual_devices(server, ids=["counter"], reconnect_delay=0.05) as fleet:
        await fleet.wait_connected(timeout=5)
        device = fleet["counter"]
        assert device.connections == 1
        await server.stop()
        await server.start()
        await fleet.wait_connected(timeout=5)
        await device.wait_for(lambda _s: device.connections == 2, timeout=5)


async def test_unregistered_device_is_refused(server: TestServer) -> None:
    fleet: TestFleet
    async with run_virtual_devices(server, ids=["counter"], register=False) as fleet:
        with pytest.raises(TimeoutError, match="counter"):
            await fleet.wait_connected(timeout=0.3)
        device = fleet["counter"].device
        async with asyncio.timeout(5):
            while device.last_error is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert "refused" in str(device.last_error)
        assert not fleet["counter"].connected


@pytest.mark.parametrize("transport", ["tls", "ws"])
async def test_other_transports(transport: str, tmp_path: Path) -> None:
    """TLS (self-signed, --insecure and --cafile) and WebSocket, via the CLI's target helpers."""
    certs = pytest.importorskip("iotmp.server.certs")
    if not certs.cryptography_available():
        pytest.skip("needs cryptography")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certs.make_self_signed(cert, key)
    async with run_test_server(tls_cert=str(cert), tls_key=str(key)) as tls_server:
        if transport == "tls":
            assert tls_server.tls_port is not None
            targets = [
                with_tls(
                    parse_server(f"127.0.0.1:{tls_server.tls_port}", "tls"),
                    insecure=True,
                    cafile=None,
                ),
                with_tls(
                    parse_server(f"127.0.0.1:{tls_server.tls_port}", "tls"),  # IP SAN
                    insecure=False,
                    cafile=str(cert),
                ),
            ]
        else:
            targets = [parse_server(tls_server.device_ws_url, None)]
        for i, target in enumerate(targets):
            profile = builtin_profiles()["counter"]
            [device] = make_devices(
                profile, user=tls_server.user, credential="pw", device_id=f"c{i}", tick=0.02
            )
            tls_server.add_device(TestDevice(device.device_id, credential="pw"))
            fleet = Fleet([device])
            await fleet.start(target)
            try:
                await fleet.wait_connected(timeout=5)
                await tls_server.wait_device_connected(device.device_id, timeout=5)
                assert tls_server.device(device.device_id).transport == transport
            finally:
                await fleet.stop()
            assert not device.connected
