"""Connection manager corner cases: description changes, odd events and failures."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.const import STATE_OFF, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotmp.const import DOMAIN
from custom_components.iotmp.coordinator import merged_value, value_at
from custom_components.iotmp.util import enum_or_none
from iotmp.client import (
    IotmpApiError,
    IotmpAuthError,
    IotmpDeviceTimeoutError,
)
from iotmp.protocol.message import ABSENT
from iotmp.server.testing import TestServer
from iotmp.sim.testing import TestFleet

from .conftest import find_device, make_entry, setup_entry, state_of, wait_for


def test_value_helpers() -> None:
    """Walking into values, merging field changes, parsing enums."""
    assert enum_or_none(SensorDeviceClass, None) is None
    assert enum_or_none(SensorDeviceClass, "nope") is None
    assert enum_or_none(SensorDeviceClass, "power") is SensorDeviceClass.POWER
    assert value_at({"a": {"b": 1}}, ("a", "b")) == 1
    assert value_at({"a": 1}, ("a", "b")) is None
    assert value_at({"a": ABSENT}, ("a",)) is None
    assert merged_value({"a": {"b": 1, "c": 2}}, ("a",), {"b": 5}) == {"a": {"b": 5, "c": 2}}
    assert merged_value(None, ("x", "y"), {"z": 1}) == {"x": {"y": {"z": 1}}}
    assert merged_value({"x": 3}, ("x",), {"z": 1}) == {"x": {"z": 1}}


@pytest.mark.profiles("smart_plug")
async def test_resource_disappears(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """A resource the device no longer describes loses its entity and subscription."""
    manager = loaded_entry.runtime_data.manager
    client = manager.client
    original = client.get_resources
    device = find_device(hass, f"{loaded_entry.unique_id}:smart-plug")
    assert device is not None
    # Another integration's entity on the same device is left alone.
    foreign = entity_registry.async_get_or_create("sensor", "other", "x", device_id=device.id)

    async def fewer(device_id: str) -> Any:
        resources = await original(device_id)
        resources.pop("voltage")
        return resources

    assert entity_registry.async_get("sensor.smart_plug_voltage") is not None
    with patch.object(client, "get_resources", fewer):
        manager._async_request_refresh("smart-plug")
        await wait_for(hass, lambda: entity_registry.async_get("sensor.smart_plug_voltage") is None)
    assert "voltage" not in manager.devices["smart-plug"].subscriptions
    assert entity_registry.async_get(foreign.entity_id) is not None
    # Back again: the entity is added again.
    manager._async_request_refresh("smart-plug")
    await wait_for(hass, lambda: entity_registry.async_get("sensor.smart_plug_voltage") is not None)
    await wait_for(
        hass, lambda: state_of(hass, "sensor.smart_plug_voltage") not in (None, STATE_UNAVAILABLE)
    )


@pytest.mark.profiles("rgb_lamp")
async def test_description_shape_change_is_cached(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """The cache is rewritten only when the shape of a description changes."""
    manager = loaded_entry.runtime_data.manager
    client = manager.client
    original = client.get_resources
    key = f"{DOMAIN}.{loaded_entry.entry_id}"
    manager._async_request_refresh("rgb-lamp")
    await hass.async_block_till_done()
    await wait_for(hass, lambda: not manager._pending_devices)

    async def extra_field(device_id: str) -> Any:
        resources = await original(device_id)
        light = resources["light"]
        resources["light"] = replace(light, sample_in={**light.sample_in, "mode": "warm"})
        return resources

    with patch.object(client, "get_resources", extra_field):
        manager._async_request_refresh("rgb-lamp")
        await wait_for(
            hass,
            lambda: (
                "mode"
                in hass_storage[key]["data"]["devices"]["rgb-lamp"]["resources"]["light"]["in"]
            ),
        )
    await wait_for(hass, lambda: state_of(hass, "text.rgb_lamp_light_mode") is not None)


@pytest.mark.profiles("smart_plug")
async def test_odd_events_and_data(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """Events and frames the manager cannot use are ignored."""
    manager = loaded_entry.runtime_data.manager
    manager._async_handle_event({"event": "bucket_write", "device": "smart-plug"})
    manager._async_handle_event({"event": "device_state_change", "device": 5})
    manager._async_handle_event(
        {"event": "device_state_change", "device": "nope", "state": "disconnected"}
    )
    manager._async_handle_data("nope", "relay", True)
    manager._async_handle_data("smart-plug", "relay", ABSENT)
    manager._async_handle_device_connection("nope", True)
    manager._async_notify("nope")
    await manager._async_device_snapshot("nope")
    assert manager.value("nope", manager.devices["smart-plug"].specs[0]) is None
    del manager.devices["smart-plug"].outputs["power"]
    spec = next(s for s in manager.devices["smart-plug"].specs if s.key == "power")
    assert manager.value("smart-plug", spec) is None
    # A disconnect event for a device already offline changes nothing.
    manager._async_handle_event(
        {"event": "device_state_change", "device": "lamp", "state": "disconnected"}
    )
    await hass.async_block_till_done()
    assert state_of(hass, "switch.smart_plug_relay") == STATE_OFF


@pytest.mark.profiles("smart_plug")
async def test_describe_timeout_keeps_device(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A device that does not answer its describe stays as it was."""
    manager = loaded_entry.runtime_data.manager
    with patch.object(
        manager.client, "get_resources", side_effect=IotmpDeviceTimeoutError("slow", status=504)
    ):
        await manager._async_device_snapshot("smart-plug")
    assert manager.devices["smart-plug"].connected is True
    assert state_of(hass, "switch.smart_plug_relay") == STATE_OFF


@pytest.mark.profiles("smart_plug")
async def test_snapshot_auth_error_starts_reauth(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """A 401 during a snapshot starts a reauth flow and makes entities unavailable."""
    manager = loaded_entry.runtime_data.manager
    with patch.object(
        manager.client, "get_resources", side_effect=IotmpAuthError("no", status=401)
    ):
        manager._async_request_refresh("smart-plug")
        await wait_for(hass, lambda: bool(hass.config_entries.flow.async_progress()))
    assert state_of(hass, "switch.smart_plug_relay") == STATE_UNAVAILABLE


@pytest.mark.profiles("controller")
async def test_input_output_reread_fails(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """When re-reading an input+output resource fails, its returned output still counts."""
    manager = loaded_entry.runtime_data.manager
    with patch.object(manager.client, "get_resource_sample", side_effect=IotmpApiError("odd")):
        await hass.services.async_call(
            "number",
            "set_value",
            {"entity_id": "number.controller_calc_a", "value": 2},
            blocking=True,
        )
    assert manager.devices["controller"].outputs["calc"] == {"sum": 2, "product": 0}
    # A write that returns no output takes the output of the re-read sample.
    with patch.object(manager.client, "write", return_value=None):
        await manager.async_write("controller", "calc", {"a": 1, "b": 1})
    assert manager.devices["controller"].outputs["calc"] == {"sum": 2, "product": 0}


async def test_server_version_missing(
    hass: HomeAssistant, server: TestServer, socket_enabled: None
) -> None:
    """No server version: the hub device simply has none."""
    entry = make_entry(server)
    with patch(
        "custom_components.iotmp.coordinator.IotmpApiClient.server_version",
        side_effect=IotmpApiError("odd"),
    ):
        await setup_entry(hass, entry)
    hub = find_device(hass, entry.unique_id)
    assert hub is not None
    assert hub.sw_version is None
    assert await hass.config_entries.async_unload(entry.entry_id)
