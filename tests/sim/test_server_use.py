"""Virtual devices that use their server: bucket writes and a configuration property.

The devices run against the real server with its real buckets and properties
(SQLite): what a device writes is read back from the bucket, and the
configuration property is changed through the server's properties feature.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from iotmp.server.testing import TestServer, run_test_server
from iotmp.sim.profile import ProfileError, builtin_profiles, parse_profile
from iotmp.sim.testing import run_virtual_devices

WAIT = 5.0


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Real loopback sockets (Home Assistant's plugin blocks sockets by default)."""


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with run_test_server(user="alice", request_timeout=2.0) as test_server:
        yield test_server


SENSOR = {
    "name": "probe",
    "resources": [
        {"name": "air", "kind": "output", "value": {"t": 20.5, "h": 40}},
        {"name": "level", "kind": "output", "value": 3, "behaviour": "counter"},
        {"name": "valve", "kind": "input", "value": False},
    ],
}


def test_the_demo_profiles_use_their_server() -> None:
    profiles = builtin_profiles()
    (write,) = profiles["environment_sensor"].bucket_writes
    assert (write.bucket, write.resources) == ("environment", ("environment",))
    config = profiles["controller"].config_property
    assert config is not None
    assert config.property == "config"
    assert config.resources == ("setpoint", "fan_speed", "mode", "schedule")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"bucket_writes": {}}, "bucket_writes: must be a list of {bucket, resources, every}"),
        (
            {"bucket_writes": [{"bucket": "b", "resources": ["air"], "every": 0}]},
            "bucket_writes #1: 'every' must be a positive number of seconds",
        ),
        (
            {"bucket_writes": [{"bucket": "b b", "resources": ["air"], "every": 1}]},
            "bucket_writes #1: 'bucket' must be 1-64 letters, digits or _.:-, got 'b b'",
        ),
        (
            {"bucket_writes": [{"bucket": "b", "resources": ["nope"], "every": 1}]},
            "bucket_writes #1: 'resources' names 'nope', which is not one of air, level, valve",
        ),
        (
            {"bucket_writes": [{"bucket": "b", "resources": ["air"], "every": 1, "qos": 1}]},
            "bucket_writes #1: unknown key(s) qos (allowed: bucket, every, resources)",
        ),
        (
            {"config_property": {"property": "config", "resources": ["air"]}},
            "config_property: 'resources' names 'air', which is not one of valve",
        ),
        ({"config_property": {"name": "config"}}, "config_property: unknown key(s) name"),
        ({"config_property": "config"}, "config_property: must be an object"),
    ],
)
def test_profile_errors_name_the_key(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile({**SENSOR, **extra}, source="probe.json")
    assert str(caught.value).startswith(f"probe.json: {message}")


async def test_a_device_writes_its_values_to_a_bucket(server: TestServer) -> None:
    buckets = server.server.buckets
    await buckets.create("alice", "air")
    await buckets.create("alice", "all")
    profile = parse_profile(
        {
            **SENSOR,
            "bucket_writes": [
                {"bucket": "air", "resources": ["air"], "every": 0.1},
                {"bucket": "all", "resources": ["level", "valve"], "every": 0.15},
                {"bucket": "missing", "resources": ["air"], "every": 0.1},
            ],
        }
    )
    async with run_virtual_devices(server, profiles=[profile]) as fleet:
        await fleet.wait_connected()
        probe = fleet["probe"]
        await probe.wait_for(lambda _state: probe.buckets_written >= 4, WAIT)

        async def stored(bucket: str) -> list[dict[str, Any]]:
            async with asyncio.timeout(WAIT):
                while not (records := await buckets.read("alice", bucket)):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            return records

        air = await stored("air")
        both = await stored("all")
    assert air[0]["val"] == {"t": 20.5, "h": 40}  # one object resource: the object itself
    assert set(both[0]["val"]) == {"level", "valve"}
    assert both[0]["val"]["valve"] is False
    assert [b.bucket for b in buckets.list_buckets("alice")] == ["air", "all"]  # no "missing"


async def test_a_controller_applies_its_config_at_login_and_on_updates(
    server: TestServer,
) -> None:
    stored = {"setpoint": 19.0, "mode": "eco", "unknown": 1, "fan_speed": 500}
    properties = server.server.properties
    async with run_virtual_devices(server, profiles=["controller"]) as fleet:
        await fleet.wait_connected()
        controller = fleet["controller"]
        for subscription in controller.device.subscriptions:
            await subscription.wait_active(WAIT)
        # A configuration set on the server reaches the running controller:
        # valid fields applied, fan_speed 500 refused (range 0..100).
        await properties.set_value("controller", "config", stored)
        await controller.wait_for(lambda state: state["setpoint"] == 19.0, WAIT)
        assert controller.state["mode"] == "eco"
        assert controller.state["fan_speed"] == 40
        # Another property of the controller changes nothing.
        await properties.set_value("controller", "cfg", {"mode": "x"})
        await properties.set_value("controller", "config", {"fan_speed": 70})
        await controller.wait_for(lambda state: state["fan_speed"] == 70, WAIT)
        await asyncio.sleep(0.1)
        assert controller.state["mode"] == "eco"
        assert controller.configs_applied == [stored, {"fan_speed": 70}]

    # At the next login the stored configuration is read and applied at once.
    async with run_virtual_devices(server, profiles=["controller"]) as fleet:
        await fleet.wait_connected()
        controller = fleet["controller"]
        await controller.wait_for(lambda state: state["fan_speed"] == 70, WAIT)
        assert controller.configs_applied[0] == {"fan_speed": 70}
