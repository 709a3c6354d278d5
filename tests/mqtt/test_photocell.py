"""The Adafruit IO example end to end: ``iotmp sim --profile photocell``'s device
(stock paho-mqtt) against the built-in broker, read and switched through REST."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp

from iotmp.server.mqtt.settings import MqttConfig
from iotmp.server.testing import TestDevice, run_test_server
from iotmp.sim.photocell import Photocell


async def wait_for(check: Any, timeout: float = 8.0) -> Any:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not (result := check()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return result


async def test_photocell_is_a_sensor_and_a_switch() -> None:
    mqtt = MqttConfig(host="127.0.0.1", port=0, tls_port=None)
    device = TestDevice("photocell", credential="photo-key", type="MQTT")
    async with (
        run_test_server(devices=[device], mqtt=mqtt) as server,
        aiohttp.ClientSession() as http,
    ):
        assert server.server.mqtt is not None and server.server.mqtt.port is not None
        await server.server.mqtt.wait_connected()
        photocell = Photocell(
            "127.0.0.1", server.server.mqtt.port, "alice", "photo-key", interval=0.1, seed=1
        )
        thread = threading.Thread(target=photocell.run, daemon=True)
        thread.start()
        try:
            state = server.device("photocell")
            await wait_for(lambda: state.resources == {"photocell": 3, "onoff": 2})
            url = f"{server.http_url}/v3/users/alice/devices/photocell/resources"
            headers = {"Authorization": f"Bearer {server.token}"}
            async with http.get(f"{url}/photocell", headers=headers) as response:
                level = await response.json()
            assert isinstance(level, int) and 0 <= level <= 1024
            async with http.get(f"{url}/onoff/api", headers=headers) as response:
                assert (await response.json())["in"] is False
            async with http.post(f"{url}/onoff", headers=headers, json=True) as response:
                assert response.status == 200
            await wait_for(lambda: photocell.onoff)
            # Discovery maps them the way the integration does: a sensor and a switch.
            discovery = server.server.mqtt.discovery
            await wait_for(lambda: len(discovery.configs.get("photocell", {})) == 2)
            platforms = sorted(t.split("/")[1] for t in discovery.configs["photocell"])
            assert platforms == ["sensor", "switch"]
        finally:
            photocell.stop()
            await asyncio.to_thread(thread.join, 5)
        await wait_for(lambda: not server.device("photocell").connected)
