"""An MQTT device (written with paho-mqtt, as an Adafruit IO sketch is) in Home Assistant.

The device publishes its feeds to a real mosquitto; the server (external broker
mode, a topic map for the device) makes them resources; the iotmp integration
shows them as entities like any IOTMP device's: a reading the device publishes
reaches the entity's state, and switching the switch in Home Assistant publishes
``ON`` on the device's feed. (With an external broker the server cannot tell the
feeds a device reads from those it writes, so mapped feeds are read-write: the
photocell is a number entity here, a sensor with the built-in broker.)
Needs aiomqtt (iotmp[mqtt]), paho-mqtt and mosquitto.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er

from custom_components.iotmp.const import CONF_ALL_DEVICES, CONF_DEVICES, CONF_UPDATE_INTERVAL
from iotmp.server.mqtt.settings import MqttConfig
from iotmp.server.testing import TestDevice, run_test_server

from .conftest import MOSQUITTO, make_entry, setup_entry, state_of, wait_for

pytest.importorskip("aiomqtt")
paho = pytest.importorskip("paho.mqtt.client")
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed")

PHOTO = TestDevice("photo", credential="photo-key", type="MQTT", name="Photocell")
TOPIC_MAP = {"photo": {"photocell": "alice/feeds/photocell", "onoff": "alice/feeds/onoff"}}


def entity_for(hass: HomeAssistant, domain: str, resource: str) -> str | None:
    """The iotmp entity of the photocell's ``resource`` on ``domain``, if registered."""
    for item in er.async_get(hass).entities.values():
        if item.platform == "iotmp" and item.domain == domain and resource in item.unique_id:
            return item.entity_id
    return None


async def test_mqtt_device_read_and_written_through_the_integration(
    hass: HomeAssistant, broker_port: int
) -> None:
    mqtt = MqttConfig(broker="external", host="127.0.0.1", port=broker_port, topic_maps=TOPIC_MAP)
    async with run_test_server(devices=[PHOTO], user="alice", mqtt=mqtt) as server:
        assert server.server.mqtt is not None
        await server.server.mqtt.wait_connected()
        received: list[tuple[str, bytes]] = []
        subscribed = threading.Event()
        device: Any = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="photocell-1")
        device.on_message = lambda _c, _u, msg: received.append((msg.topic, msg.payload))
        device.on_subscribe = lambda *_a: subscribed.set()
        device.connect("127.0.0.1", broker_port, keepalive=30)
        device.loop_start()
        try:
            device.subscribe("alice/feeds/onoff")
            await asyncio.to_thread(subscribed.wait, 5)
            device.publish("alice/feeds/photocell", "512")
            device.publish("alice/feeds/onoff", "OFF")
            state = server.device("photo")
            async with asyncio.timeout(10):
                while not (state.has_resource("photocell") and state.has_resource("onoff")):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

            entry = make_entry(
                server,
                options={CONF_ALL_DEVICES: False, CONF_DEVICES: ["photo"], CONF_UPDATE_INTERVAL: 1},
            )
            await setup_entry(hass, entry)
            await wait_for(
                hass,
                lambda: (
                    entity_for(hass, "number", "photocell") is not None
                    and entity_for(hass, "switch", "onoff") is not None
                ),
            )
            reading = entity_for(hass, "number", "photocell")
            switch = entity_for(hass, "switch", "onoff")
            assert reading is not None and switch is not None

            def reading_is(value: float) -> bool:
                state = state_of(hass, reading or "")
                return state not in (None, "unknown", "unavailable") and float(state) == value

            await wait_for(hass, lambda: reading_is(512))
            await wait_for(hass, lambda: state_of(hass, switch) == STATE_OFF)

            # A new reading from the device reaches Home Assistant.
            device.publish("alice/feeds/photocell", "600")
            await wait_for(hass, lambda: reading_is(600))

            # Switching in Home Assistant publishes on the device's feed.
            await hass.services.async_call(
                "switch", "turn_on", {ATTR_ENTITY_ID: switch}, blocking=True
            )
            await wait_for(hass, lambda: ("alice/feeds/onoff", b"ON") in received)
            await wait_for(hass, lambda: state_of(hass, switch) == STATE_ON)
            assert await hass.config_entries.async_unload(entry.entry_id)
        finally:
            device.disconnect()
            device.loop_stop()
