"""A Home Assistant with only the MQTT integration gets IOTMP devices from discovery.

The server bridges a virtual smart plug to a real mosquitto; Home Assistant's own
MQTT integration connects to the same broker and builds the entities from the
discovery configs (no iotmp config entry). Needs aiomqtt (iotmp[mqtt]) and mosquitto.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from iotmp.server.mqtt.settings import MqttConfig
from iotmp.server.testing import run_test_server
from iotmp.sim.testing import run_virtual_devices

from .conftest import MOSQUITTO

pytest.importorskip("aiomqtt")
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed")


async def test_entities_from_discovery(
    hass: HomeAssistant, broker_port: int, tmp_path: Path
) -> None:
    # The MQTT integration reads configuration.yaml; give it an empty one of its own.
    (tmp_path / "configuration.yaml").write_text("", encoding="utf-8")
    hass.config.config_dir = str(tmp_path)
    mqtt = MqttConfig(broker="external", host="127.0.0.1", port=broker_port)
    async with run_test_server(mqtt=mqtt) as server:
        assert server.server.mqtt is not None
        await server.server.mqtt.wait_connected()
        async with run_virtual_devices(server, profiles=["smart_plug"]) as fleet:
            await fleet.wait_connected()
            entry = MockConfigEntry(
                domain="mqtt", data={"broker": "127.0.0.1", "port": broker_port}
            )
            entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(entry.entry_id)
            registry = er.async_get(hass)

            def entity_id(platform: str, key: str) -> str | None:
                for item in registry.entities.values():
                    if (
                        item.platform == "mqtt"
                        and item.domain == platform
                        and item.unique_id.startswith(f"iotmp_mqtt_smart-plug_{key}_")
                    ):
                        return item.entity_id
                return None

            async with asyncio.timeout(15):
                while entity_id("switch", "relay") is None or entity_id("sensor", "power") is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                relay = entity_id("switch", "relay")
                assert relay is not None
                while (state := hass.states.get(relay)) is None or state.state != "off":  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            power = hass.states.get(entity_id("sensor", "power") or "")
            assert power is not None and power.attributes["unit_of_measurement"] == "W"

            await hass.services.async_call("switch", "turn_on", {"entity_id": relay}, blocking=True)
            async with asyncio.timeout(10):
                while fleet["smart-plug"].state["relay"] is not True:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                while hass.states.get(relay).state != "on":  # type: ignore[union-attr]  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            assert await hass.config_entries.async_unload(entry.entry_id)
