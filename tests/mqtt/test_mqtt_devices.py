"""MQTT devices (type MQTT): a paho-mqtt client publishes feeds, REST reads and writes them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import paho.mqtt.client as paho
from mqtt_helpers import MqttLab

from iotmp.server.mqtt.mqtt_devices import MqttDevice, MqttDevices
from iotmp.server.testing import TestDevice

PHOTO = TestDevice("photo", credential="photo-key", type="MQTT", name="Photocell")
TOPIC_MAP = {"photo": {"photocell": "alice/feeds/photocell", "onoff": "alice/feeds/onoff"}}


class PahoDevice:
    """A device written with paho-mqtt (as an Adafruit IO sketch would be)."""

    def __init__(self, lab: MqttLab, credential: str) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="photocell-1")
        auth = lab.client_auth(credential)
        if auth:
            self.client.username_pw_set(auth["username"], auth["password"])
        self.received: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client.on_message = lambda _c, _u, msg: self.received.append((msg.topic, msg.payload))
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.lab = lab

    @contextmanager
    def running(self) -> Iterator[PahoDevice]:
        self.client.connect(self.lab.host, self.lab.port, keepalive=30)
        self.client.loop_start()
        try:
            yield self
        finally:
            self.client.disconnect()
            self.client.loop_stop()


async def wait_for(check: Any, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not (result := check()):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return result


async def test_paho_device_read_and_written_through_rest(lab_factory: Any) -> None:
    async with lab_factory([PHOTO], topic_maps=TOPIC_MAP) as lab, aiohttp.ClientSession() as http:
        base = f"{lab.server.http_url}/v3/users/alice/devices/photo/resources"
        headers = {"Authorization": f"Bearer {lab.server.token}"}
        device = PahoDevice(lab, "photo-key")
        with device.running():
            device.client.subscribe("alice/feeds/onoff")
            await asyncio.to_thread(device.subscribed.wait, 5)
            device.client.publish("alice/feeds/photocell", "512")
            state = lab.server.device("photo")
            await wait_for(lambda: state.connected and state.has_resource("photocell"))

            async def read(resource: str) -> Any:
                async with http.get(f"{base}/{resource}", headers=headers) as response:
                    assert response.status == 200, await response.text()
                    return await response.json(content_type=None)

            async def read_becomes(resource: str, value: Any) -> None:
                async with asyncio.timeout(5):
                    while await read(resource) != value:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)

            await read_becomes("photocell", 512)
            device.client.publish("alice/feeds/photocell", "600")
            await read_becomes("photocell", 600)

            # A write through REST reaches the device on its feed; the value is kept.
            async with http.post(f"{base}/onoff", headers=headers, json=True) as response:
                assert response.status == 200, await response.text()
            await wait_for(lambda: ("alice/feeds/onoff", b"ON") in device.received)
            async with http.get(f"{base}/onoff/api", headers=headers) as response:
                sample = await response.json()
                assert sample["in"] is True  # ON/OFF feeds are booleans
                assert isinstance(sample["ts"], int)

        if lab.kind == "builtin":
            # The session ended: the device is offline (the login said which device it was).
            await wait_for(lambda: not lab.server.device("photo").connected)


async def test_external_device_status_topic_and_last_will(mosquitto: Any) -> None:
    from mqtt_helpers import start_lab

    topics = {"photo": {"photocell": "alice/feeds/photocell", "$online": "alice/photo/status"}}
    async with start_lab("external", [PHOTO], mosquitto, topic_maps=topics) as server:
        assert server.server.mqtt is not None
        await server.server.mqtt.wait_connected()
        lab = MqttLab(server, "127.0.0.1", mosquitto.port, "external")
        device = PahoDevice(lab, "photo-key")
        device.client.will_set("alice/photo/status", "offline", retain=True)
        state = server.device("photo")
        with device.running():
            device.client.publish("alice/photo/status", "online", retain=True)
            await wait_for(lambda: state.connected)
            assert "$online" not in state.resources
            # The device dies without a DISCONNECT: mosquitto publishes its will.
            sock = device.client.socket()
            assert sock is not None
            sock.close()
            await wait_for(lambda: not state.connected, timeout=10)


async def test_stop_leaves_no_description_sync_scheduled() -> None:
    """A feed created just before the server stops must not leave a timer behind."""
    devices = MqttDevices(cast("Any", SimpleNamespace()), cast("Any", None), lambda *_: None)
    device = MqttDevice(cast("Any", SimpleNamespace(id="photo")))
    devices.devices["photo"] = device
    devices._resources_changed(device)  # the coalesced re-sync is due in SYNC_DELAY
    timer = device.sync_timer
    assert timer is not None and not timer.cancelled()
    devices.stop()
    assert timer.cancelled() and device.sync_timer is None
    devices._resources_changed(device)  # a message the stopping broker still delivers
    assert device.sync_timer is None
