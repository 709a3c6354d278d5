"""Options flow: device selection, intervals and per-resource overrides."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotmp.const import (
    CONF_ALL_DEVICES,
    CONF_DEVICE_INTERVALS,
    CONF_DEVICES,
    CONF_OVERRIDES,
    CONF_UPDATE_INTERVAL,
)
from iotmp.client import IotmpConnectionError
from iotmp.server.testing import TestServer

from .conftest import make_entry, state_of, wait_for

pytestmark = pytest.mark.profiles("smart_plug")


async def _menu(hass: HomeAssistant, entry: MockConfigEntry, step: str) -> dict:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["settings", "device_interval", "override"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": step}
    )
    return dict(result)


async def test_not_loaded(hass: HomeAssistant, server: TestServer) -> None:
    """Options need a loaded entry (they list what the server knows)."""
    entry = make_entry(server)
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_loaded"


async def test_settings(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """Device selection and the default interval; an empty selection is refused."""
    result = await _menu(hass, loaded_entry, "settings")
    assert result["step_id"] == "settings"
    assert not result["errors"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_ALL_DEVICES: False, CONF_DEVICES: [], CONF_UPDATE_INTERVAL: 10},
    )
    assert result["errors"] == {"base": "no_devices_selected"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_ALL_DEVICES: False, CONF_DEVICES: ["smart-plug"], CONF_UPDATE_INTERVAL: 10},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options[CONF_ALL_DEVICES] is False
    assert loaded_entry.options[CONF_DEVICES] == ["smart-plug"]
    assert loaded_entry.options[CONF_UPDATE_INTERVAL] == 10
    # Reloaded with the new options: the unselected "lamp" is gone.
    assert loaded_entry.state is ConfigEntryState.LOADED
    assert set(loaded_entry.runtime_data.manager.devices) == {"smart-plug"}
    assert state_of(hass, "binary_sensor.desk_lamp_connectivity") is None
    await wait_for(hass, lambda: state_of(hass, "switch.smart_plug_relay") == "off")


async def test_settings_server_unreachable(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """When listing fails, the known devices are offered and the error shown."""
    client = loaded_entry.runtime_data.client
    with patch.object(client, "list_devices", side_effect=IotmpConnectionError("down")):
        result = await _menu(hass, loaded_entry, "settings")
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_ALL_DEVICES: True, CONF_DEVICES: [], CONF_UPDATE_INTERVAL: 30},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_device_interval(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """A per-device interval is set and cleared again."""
    result = await _menu(hass, loaded_entry, "device_interval")
    assert result["step_id"] == "device_interval"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"device": "smart-plug", "interval": 5}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options[CONF_DEVICE_INTERVALS] == {"smart-plug": 5}
    manager = loaded_entry.runtime_data.manager
    assert manager.output_interval("smart-plug") == 5
    result = await _menu(hass, loaded_entry, "device_interval")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"device": "smart-plug"}
    )
    await hass.async_block_till_done()
    assert loaded_entry.options[CONF_DEVICE_INTERVALS] == {}


async def test_device_interval_without_devices(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Nothing to choose: abort."""
    with patch.dict(loaded_entry.runtime_data.manager.devices, clear=True):
        result = await _menu(hass, loaded_entry, "device_interval")
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "no_devices"
        result = await _menu(hass, loaded_entry, "override")
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "no_resources"


async def test_override_platform(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """A boolean input shown as a light instead of a switch; clearing restores it."""
    result = await _menu(hass, loaded_entry, "override")
    assert result["step_id"] == "override"
    target = json.dumps(["smart-plug", "relay"])
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"resource": target}
    )
    assert result["step_id"] == "override_settings"
    # A device class of another platform is refused.
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"platform": "switch", "device_class": "temperature"}
    )
    assert result["errors"] == {"device_class": "invalid_device_class"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"platform": "light"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options[CONF_OVERRIDES] == {"smart-plug": {"relay": {"platform": "light"}}}
    await wait_for(hass, lambda: state_of(hass, "light.smart_plug_relay") == "off")
    assert entity_registry.async_get("switch.smart_plug_relay") is None
    # Clearing every field removes the override.
    result = await _menu(hass, loaded_entry, "override")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"resource": target}
    )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"platform": "auto"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options[CONF_OVERRIDES] == {}
    await wait_for(hass, lambda: state_of(hass, "switch.smart_plug_relay") == "off")
    assert entity_registry.async_get("light.smart_plug_relay") is None


async def test_override_unit_and_class(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """A unit that does not fit is explained; a fitting device class is kept."""
    result = await _menu(hass, loaded_entry, "override")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"resource": json.dumps(["smart-plug", "voltage"])}
    )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"platform": "auto", "unit": "kg"}
    )
    assert result["errors"] == {"base": "override_not_applied"}
    assert "kg" in result["description_placeholders"]["notes"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"platform": "sensor", "device_class": "voltage", "unit": "mV"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert loaded_entry.options[CONF_OVERRIDES] == {
        "smart-plug": {"voltage": {"platform": "sensor", "device_class": "voltage", "unit": "mV"}}
    }
    await wait_for(
        hass, lambda: state_of(hass, "sensor.smart_plug_voltage") not in (None, "unavailable")
    )
    spec = next(
        spec
        for spec in loaded_entry.runtime_data.manager.devices["smart-plug"].specs
        if spec.key == "voltage"
    )
    assert spec.unit == "mV"
    # Home Assistant keeps showing the unit the entity was registered with (V):
    # the ~230 "mV" the device now reports are converted.
    assert float(state_of(hass, "sensor.smart_plug_voltage") or 0) < 1


@pytest.mark.profiles("rgb_lamp", "controller")
async def test_override_picker_names_and_one_field(
    hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """The picker shows entity names; an override can target one field of an object."""
    result = await _menu(hass, loaded_entry, "override")
    schema = result["data_schema"].schema
    selector = next(value for key, value in schema.items() if str(key) == "resource")
    options = {item["value"]: item["label"] for item in selector.config["options"]}
    labels = set(options.values())
    assert "Controller: Schedule start hour" in labels
    assert "Controller: Schedule (every value)" in labels
    field_value = next(
        value for value, label in options.items() if label == "Controller: Schedule start hour"
    )
    device_id, resource, key = json.loads(field_value)
    assert (device_id, resource) == ("controller", "schedule")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"resource": field_value}
    )
    assert result["step_id"] == "override_settings"
    assert result["description_placeholders"]["resource"] == "Schedule start hour"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"platform": "auto", "unit": "min"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.options[CONF_OVERRIDES] == {"controller": {key: {"unit": "min"}}}
    await hass.async_block_till_done()
    await wait_for(
        hass,
        lambda: any(
            spec.key == key and spec.unit == "min"
            for spec in loaded_entry.runtime_data.manager.devices["controller"].specs
        ),
    )
    others = [
        spec
        for spec in loaded_entry.runtime_data.manager.devices["controller"].specs
        if spec.resource == "schedule" and spec.key != key and spec.platform == "number"
    ]
    assert others and all(spec.unit != "min" for spec in others)


@pytest.mark.profiles("controller")
async def test_override_number_range(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """Range, step and slider/box of a number come from the options when set."""
    result = await _menu(hass, loaded_entry, "override")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"resource": json.dumps(["controller", "fan_speed"])}
    )
    assert result["step_id"] == "override_settings"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"platform": "auto", "min": 50, "max": 10}
    )
    assert result["errors"] == {"base": "override_not_applied"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"platform": "auto", "min": 10, "max": 90, "step": 5, "mode_number": "box"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()

    def ranged() -> bool:
        state = hass.states.get("number.controller_fan_speed")
        return state is not None and (
            state.attributes.get("min"),
            state.attributes.get("max"),
            state.attributes.get("step"),
            state.attributes.get("mode"),
        ) == (10.0, 90.0, 5.0, "box")

    await wait_for(hass, ranged)
