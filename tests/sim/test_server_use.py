"""Virtual devices that use their server: bucket writes and a configuration property.

The devices run against the real server. Its WRITE_BUCKET and
READ_DEVICE_PROPERTY codes belong to features built in parallel, so the tests
register stand-in handlers on the server's own table (``server_resources``),
exactly where those features plug in; property updates are published on the
server's event bus as the properties feature publishes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from iotmp.protocol.message import ABSENT
from iotmp.protocol.server_resources import ServerResource, ServerResourceCall
from iotmp.server.device_requests import ServerResourceError
from iotmp.server.events import make_event
from iotmp.server.registry import DeviceState
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
    records: list[tuple[str, str, Any]] = []

    async def write_bucket(device: DeviceState, call: ServerResourceCall) -> Any:
        if call.target == "missing":
            raise ServerResourceError("bucket 'missing' does not exist")
        records.append((device.id, call.target, call.payload))
        return ABSENT

    server.server.server_resources.register(ServerResource.WRITE_BUCKET, write_bucket)
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
    by_bucket: dict[str, list[Any]] = {}
    for device_id, bucket, record in records:
        assert device_id == "probe"
        by_bucket.setdefault(bucket, []).append(record)
    assert by_bucket["air"][0] == {"t": 20.5, "h": 40}  # one object resource: the object itself
    assert set(by_bucket["all"][0]) == {"level", "valve"}
    assert by_bucket["all"][0]["valve"] is False
    assert "missing" not in by_bucket


async def test_a_controller_applies_its_config_at_login_and_on_updates(
    server: TestServer,
) -> None:
    stored = {"setpoint": 19.0, "mode": "eco", "unknown": 1, "fan_speed": 500}

    async def read_property(device: DeviceState, call: ServerResourceCall) -> Any:
        if device.id == "controller" and call.target == "config":
            return stored
        raise ServerResourceError(f"property {call.target!r} not found")

    server.server.server_resources.register(ServerResource.READ_DEVICE_PROPERTY, read_property)
    async with run_virtual_devices(server, profiles=["controller"]) as fleet:
        await fleet.wait_connected()
        controller = fleet["controller"]
        # Read at login: valid fields applied, fan_speed 500 refused (range 0..100).
        await controller.wait_for(lambda state: state["setpoint"] == 19.0, WAIT)
        assert controller.state["mode"] == "eco"
        assert controller.state["fan_speed"] == 40
        assert controller.configs_applied == [stored]
        for subscription in controller.device.subscriptions:
            await subscription.wait_active(WAIT)
        # An update of another device's config, or of another property, changes nothing.
        bus = server.server.events
        update = "device_property_update"
        bus.publish(
            make_event(update, "alice", device="other", property="config", value={"mode": "x"})
        )
        bus.publish(make_event(update, "alice", device="controller", property="cfg", value={}))
        bus.publish(
            make_event(
                update, "alice", device="controller", property="config", value={"fan_speed": 70}
            )
        )
        await controller.wait_for(lambda state: state["fan_speed"] == 70, WAIT)
        await asyncio.sleep(0.1)
        assert controller.state["mode"] == "eco"
        assert controller.configs_applied == [stored, {"fan_speed": 70}]
