"""The bridge against both brokers: an IOTMP virtual device on MQTT, read and
written with the Debian mosquitto clients."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest
from mqtt_helpers import MqttLab, run_cli

from iotmp.sim.testing import run_virtual_devices

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None, reason="mosquitto-clients not installed"
)


async def sub_one(lab: MqttLab, topic: str, *, count: int = 1, timeout: float = 8.0) -> list[str]:  # noqa: ASYNC109
    rc, out, err = await run_cli(
        "mosquitto_sub",
        "-h",
        lab.host,
        "-p",
        str(lab.port),
        *lab.cli_auth(),
        "-v",
        "-t",
        topic,
        "-C",
        str(count),
        "-W",
        str(int(timeout)),
        timeout=timeout + 2,
    )
    assert rc == 0, err
    lines = [line.split(" ", 1) for line in out.splitlines()]
    assert all(t == topic for t, _ in lines), lines
    return [payload for _, payload in lines]


async def pub(lab: MqttLab, topic: str, message: str) -> None:
    rc, _, err = await run_cli(
        "mosquitto_pub",
        "-h",
        lab.host,
        "-p",
        str(lab.port),
        *lab.cli_auth(),
        "-t",
        topic,
        "-m",
        message,
    )
    assert rc == 0, err


async def wait_until(check: Any, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_virtual_device_read_and_written_with_mosquitto_clients(lab_factory: Any) -> None:
    async with (
        lab_factory([]) as lab,
        run_virtual_devices(lab.server, profiles=["smart_plug"]) as fleet,
    ):
        await fleet.wait_connected()
        base = f"{lab.prefix}/alice/smart-plug"
        assert await sub_one(lab, f"{base}/status") == ["online"]
        assert await sub_one(lab, f"{base}/relay") == ["false"]
        voltage = await sub_one(lab, f"{base}/voltage")
        assert 220 <= json.loads(voltage[0]) <= 240

        # A command: the device runs it, the result comes back, the state follows.
        results = asyncio.ensure_future(sub_one(lab, f"{base}/relay/result"))
        await asyncio.sleep(0.5)  # mosquitto_sub is subscribed
        await pub(lab, f"{base}/relay/set", "true")
        assert await results == ["null"]
        await wait_until(lambda: fleet["smart-plug"].state["relay"] is True)
        assert await sub_one(lab, f"{base}/relay") == ["true"]

        # A bad command: an error at .../result, the device untouched.
        results = asyncio.ensure_future(sub_one(lab, f"{base}/nothing/result"))
        await asyncio.sleep(0.5)
        await pub(lab, f"{base}/nothing/set", "1")
        error = json.loads((await results)[0])
        assert error == {"error": {"message": "resource not found"}}

        # The device goes away: offline, retained.
        await fleet.stop()
        await lab.server.wait_device_disconnected("smart-plug", 5)
        await asyncio.sleep(0.3)  # the bridge's publish reaches the broker
        assert await sub_one(lab, f"{base}/status") == ["offline"]


async def test_only_the_configured_devices_are_bridged(lab_factory: Any) -> None:
    async with (
        lab_factory([], bridge_devices=["counter"], discovery=False) as lab,
        run_virtual_devices(lab.server, profiles=["counter", "smart_plug"]) as fleet,
    ):
        await fleet.wait_connected()
        assert await sub_one(lab, f"{lab.prefix}/alice/counter/status") == ["online"]
        _rc, out, _ = await run_cli(
            "mosquitto_sub",
            "-h",
            lab.host,
            "-p",
            str(lab.port),
            *lab.cli_auth(),
            "-t",
            f"{lab.prefix}/alice/smart-plug/#",
            "-t",
            "homeassistant/#",
            "-W",
            "1",
            timeout=5,
        )
        assert out == ""
