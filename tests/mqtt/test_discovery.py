"""Home Assistant MQTT discovery from the integration's mapping rules, on both brokers;
a broker that restarts gets the retained state and the configs again."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt
from mqtt_helpers import Mosquitto, MqttLab

from iotmp.sim.testing import run_virtual_devices


async def collect(lab: MqttLab, topic: str, until: Any, timeout: float = 8.0) -> dict[str, bytes]:  # noqa: ASYNC109
    """Retained messages under ``topic`` until ``until(messages)`` holds."""
    seen: dict[str, bytes] = {}
    async with aiomqtt.Client(lab.host, lab.port, **lab.client_auth()) as client:
        await client.subscribe(topic)
        async with asyncio.timeout(timeout):
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                seen[message.topic.value] = payload
                if until(seen):
                    return seen
    return seen


def configs(seen: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {t: json.loads(p) for t, p in seen.items() if t.endswith("/config") and p}


async def test_discovery_configs_follow_the_mapping(lab_factory: Any) -> None:
    async with (
        lab_factory([]) as lab,
        run_virtual_devices(lab.server, profiles=["smart_plug"]) as fleet,
    ):
        await fleet.wait_connected()
        seen = await collect(lab, "homeassistant/#", lambda s: len(configs(s)) >= 4)
        by_name = {c["name"]: (t, c) for t, c in configs(seen).items()}
        topic, relay = by_name["Relay"]
        assert topic.startswith("homeassistant/switch/iotmp_smart-plug/")
        assert relay["command_topic"] == f"{lab.prefix}/alice/smart-plug/relay/set"
        assert relay["state_topic"] == f"{lab.prefix}/alice/smart-plug/relay"
        assert [a["topic"] for a in relay["availability"]] == [
            f"{lab.prefix}/status",
            f"{lab.prefix}/alice/smart-plug/status",
        ]
        assert relay["unique_id"].startswith("iotmp_mqtt_smart-plug_")
        assert relay["device"]["identifiers"] == ["iotmp_mqtt_smart-plug"]
        _, power = by_name["Power"]
        assert power["device_class"] == "power"
        assert power["unit_of_measurement"] == "W"
        _, energy = by_name["Energy"]
        assert energy["state_class"] == "total_increasing"
        assert len({c["unique_id"] for c in configs(seen).values()}) == len(configs(seen))

        # A deleted device: its configs are cleared (empty retained payloads).
        service = lab.server.server.mqtt
        assert service is not None
        lab.server.server.registry._devices.pop("smart-plug")
        service.reconcile()
        await asyncio.sleep(0.3)
        async with aiomqtt.Client(lab.host, lab.port, **lab.client_auth()) as client:
            await client.subscribe("homeassistant/#")
            await client.subscribe(f"{lab.prefix}/alice/smart-plug/#")
            leftovers: list[str] = []
            try:
                async with asyncio.timeout(1.0):
                    async for message in client.messages:
                        leftovers.append(message.topic.value)
            except TimeoutError:
                pass
        assert leftovers == []


async def test_broker_restart_gets_state_and_discovery_again(
    mosquitto: Mosquitto, tmp_path: Any
) -> None:
    from mqtt_helpers import start_lab

    async with start_lab("external", [], mosquitto, reconnect_max=0.5) as server:
        service = server.server.mqtt
        assert service is not None and service.connection is not None
        await service.wait_connected(10)
        lab = MqttLab(server, "127.0.0.1", mosquitto.port, "external")
        async with run_virtual_devices(server, profiles=["smart_plug"]) as fleet:
            await fleet.wait_connected()
            await collect(lab, "homeassistant/#", lambda s: len(configs(s)) >= 4)
            mosquitto.stop()  # persistence false: everything retained is gone
            await asyncio.sleep(0.3)
            mosquitto.start()
            seen = await collect(
                lab,
                "#",
                lambda s: len(configs(s)) >= 4 and "iotmp/alice/smart-plug/relay" in s,
                timeout=15,
            )
            assert seen["iotmp/alice/smart-plug/status"] == b"online"
            assert seen["iotmp/status"] == b"online"
            assert seen["iotmp/alice/smart-plug/relay"] == b"false"
            assert service.connection.connects >= 2
