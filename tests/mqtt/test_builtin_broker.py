"""The built-in broker: logins from the server, topic rights, Adafruit-style feeds, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiomqtt
import pytest
from mqtt_helpers import MqttLab, start_lab

from iotmp.server.config import ConfigError, DeviceConfig
from iotmp.server.mqtt.settings import MqttConfig
from iotmp.server.testing import TestDevice, run_test_server

PHOTO = TestDevice("photo", credential="photo-key", type="MQTT", name="Photocell")
OTHER = TestDevice("bobs", credential="bob-key", type="MQTT", user="bob")


@pytest.fixture
async def lab() -> AsyncIterator[MqttLab]:
    async with start_lab("builtin", [PHOTO, OTHER], max_payload=1024, max_topics=50) as server:
        service = server.server.mqtt
        assert service is not None and service.port is not None
        await service.wait_connected(10)
        yield MqttLab(server, "127.0.0.1", service.port, "builtin")


def client(lab: MqttLab, username: str | None, password: str | None, **kw: Any) -> aiomqtt.Client:
    return aiomqtt.Client(lab.host, lab.port, username=username, password=password, **kw)


def last_value(lab: MqttLab, device: str, resource: str) -> Any:
    """The value the server keeps for an MQTT device's feed (None before any)."""
    link = lab.server.device(device).link
    entry = None if link is None else link.store.resources.get(resource)  # type: ignore[attr-defined]
    return None if entry is None else entry.value


async def wait_for(check: Any, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not (result := check()):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return result


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), ("alice", "wrong"), ("nobody", "x"), ("bob", "photo-key")],
)
async def test_bad_logins_are_refused(lab: MqttLab, username: Any, password: Any) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with client(lab, username, password):
            pass


async def test_user_token_and_device_credential_log_in(lab: MqttLab) -> None:
    token = lab.server.issue_token()
    async with client(lab, "alice", token):
        pass
    async with client(lab, "alice", "photo-key"):
        await wait_for(lambda: lab.server.device("photo").connected)
    await wait_for(lambda: not lab.server.device("photo").connected)


async def test_adafruit_feeds_become_resources(lab: MqttLab) -> None:
    async with client(lab, "alice", "photo-key") as device, aiohttp.ClientSession() as http:
        await device.subscribe("alice/f/onoff")
        await device.publish("alice/feeds/photocell/json", json.dumps({"value": 321}))
        state = lab.server.device("photo")
        await wait_for(lambda: state.resources.get("photocell") == 3)
        assert state.resources.get("onoff") == 2
        url = f"{lab.server.http_url}/v3/users/alice/devices/photo/resources"
        headers = {"Authorization": f"Bearer {lab.server.token}"}
        async with http.get(url, headers=headers) as response:
            assert await response.json() == {"onoff": {"fn": 2}, "photocell": {"fn": 3}}
        async with http.get(f"{url}/photocell", headers=headers) as response:
            assert await response.json() == 321
        # A write goes to the topic the device subscribed to.
        async with http.post(f"{url}/onoff", headers=headers, json="OFF") as response:
            assert response.status == 200
        async with asyncio.timeout(5):
            message = await anext(aiter(device.messages))
        assert (message.topic.value, message.payload) == ("alice/f/onoff", b"OFF")


async def test_another_users_topics_are_refused(lab: MqttLab) -> None:
    state = lab.server.device("photo")
    async with client(lab, "bob", "bob-key") as bob, client(lab, "alice", "photo-key") as alice:
        # Publishing into alice's feeds: dropped by the broker, never reaches her device.
        await bob.publish("alice/feeds/photocell", "999")
        await alice.publish("alice/feeds/photocell", "1")
        await wait_for(lambda: state.has_resource("photocell"))
        await asyncio.sleep(0.2)
        assert state.link is not None
        assert await state.link.run("photocell") == 1
        # Subscribing to alice's topics or the bridge's: refused (no retained leak either).
        result = await bob.subscribe("alice/#")
        assert result == [128] or 128 in list(result)  # type: ignore[comparison-overlap]
        await bob.subscribe("iotmp/bob/#")
        received: list[str] = []

        async def collect() -> None:
            async for message in bob.messages:
                received.append(message.topic.value)

        task = asyncio.ensure_future(collect())
        await asyncio.sleep(0.5)
        task.cancel()
        assert not any(topic.startswith(("alice/", "iotmp/alice/")) for topic in received)


async def test_bad_payloads_and_topics_lose_nothing(lab: MqttLab) -> None:
    state = lab.server.device("photo")
    async with client(lab, "alice", "photo-key") as device:
        await device.publish("alice/feeds/photocell", "5")
        await wait_for(lambda: state.link is not None and state.has_resource("photocell"))
        await device.publish("alice/feeds/photocell", b"\xff\xfe\x00binary")
        await device.publish("alice/feeds/photocell", "x" * 5000)  # over max_payload
        await device.publish("alice/feeds/../feeds/photocell", "7")
        await device.publish("alice/feeds/a\x00b", "7")
        await device.publish("alice/feeds/photocell", "not json")
        await wait_for(
            lambda: (
                state.link is not None
                and state.link.store.resources["photocell"].value == "not json"
            )
        )
        assert not any(".." in name or "\x00" in name for name in state.resources)
    # The server's client is still up and the broker still serves logins.
    service = lab.server.server.mqtt
    assert service is not None and service.connection is not None
    assert service.connection.connected.is_set()
    async with client(lab, "alice", lab.server.password):
        pass


async def test_many_topics_from_one_client_are_capped(lab: MqttLab) -> None:
    state = lab.server.device("photo")
    async with client(lab, "alice", "photo-key") as device:
        for index in range(2000):
            await device.publish(f"alice/feeds/feed{index}", str(index))
        await device.publish("alice/feeds/feed0", "last")
        await wait_for(
            lambda: (
                state.link is not None
                and state.link.store.resources.get("feed0") is not None
                and state.link.store.resources["feed0"].value == "last"
            ),
            20,
        )
    assert len(state.resources) == 50


async def test_external_topic_claimed_twice_is_a_config_error() -> None:
    settings = MqttConfig(
        broker="external",
        host="127.0.0.1",
        port=1,
        topic_maps={"a": {"x": "t/1"}, "b": {"y": "t/1"}},
    )
    devices = [TestDevice("a", type="MQTT"), TestDevice("b", type="MQTT")]
    with pytest.raises(ConfigError, match="claimed by"):
        async with run_test_server(devices=devices, mqtt=settings):
            pass
    assert DeviceConfig  # the config type the devices use


async def test_refused_login_with_a_live_client_id_leaves_the_session_alone(lab: MqttLab) -> None:
    state = lab.server.device("photo")
    async with client(lab, "alice", "photo-key", identifier="photo-1") as device:
        await wait_for(lambda: state.connected)
        with pytest.raises(aiomqtt.MqttError):
            async with client(lab, "alice", "wrong", identifier="photo-1"):
                pass
        await device.publish("alice/feeds/after", "1")
        await wait_for(lambda: state.has_resource("after"))
        assert state.connected


async def test_a_huge_packet_closes_only_that_connection(lab: MqttLab) -> None:
    state = lab.server.device("photo")
    async with client(lab, "alice", "photo-key") as device:
        await device.publish("alice/feeds/photocell", "5")
        await wait_for(lambda: last_value(lab, "photo", "photocell") == 5)
        async with client(lab, "alice", "photo-key", identifier="big") as hostile:
            with contextlib.suppress(aiomqtt.MqttError):
                await hostile.publish("alice/feeds/photocell", b"x" * 300_000)
                await asyncio.sleep(0.5)
                await hostile.publish("alice/feeds/photocell", "6")
                await asyncio.sleep(0.3)
        await device.publish("alice/feeds/photocell", "7")
        await wait_for(lambda: last_value(lab, "photo", "photocell") == 7)
        assert state.connected


async def test_server_restart_keeps_the_port_and_the_state(lab: MqttLab) -> None:
    async with client(lab, "alice", "photo-key") as device:
        await device.publish("alice/feeds/photocell", "42")
        before = lab.server.server.mqtt
        assert before is not None
        await wait_for(lambda: "iotmp/alice/photo/photocell" in before.bridge.retained)
    await lab.server.stop()
    await lab.server.start()
    service = lab.server.server.mqtt
    assert service is not None and service.port == lab.port
    await service.wait_connected()
    async with client(lab, "alice", lab.server.password) as user:
        await user.subscribe("iotmp/alice/photo/photocell")
        async with asyncio.timeout(5):
            message = await anext(aiter(user.messages))
        assert message.payload == b"42"  # the bridge's retained state, published again


async def test_a_silent_connection_is_closed(lab: MqttLab, monkeypatch: pytest.MonkeyPatch) -> None:
    from iotmp.server.mqtt import broker

    monkeypatch.setattr(broker, "CONNECT_TIMEOUT", 0.5)
    reader, writer = await asyncio.open_connection(lab.host, lab.port)
    try:
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the broker
    finally:
        writer.close()
    async with client(lab, "alice", lab.server.password):
        pass
