"""Entities built from the demo profiles: creation, push updates and commands."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from homeassistant.components.light import ATTR_BRIGHTNESS, ATTR_RGB_COLOR, ColorMode
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotmp.const import DOMAIN
from iotmp.client import (
    IotmpApiError,
    IotmpAuthError,
    IotmpConnectionError,
    IotmpDeviceTimeoutError,
    IotmpForbiddenError,
    IotmpNotFoundError,
    IotmpRequestError,
)
from iotmp.sim.testing import TestFleet

from .conftest import find_device, state_of, wait_for

EXPECTED = {
    # env-sensor
    "sensor.environment_sensor_environment_temperature": ("temperature", "°C"),
    "sensor.environment_sensor_environment_humidity": ("humidity", "%"),
    "sensor.environment_sensor_environment_pressure": ("pressure", "hPa"),
    # smart-plug
    "switch.smart_plug_relay": ("switch", None),
    "sensor.smart_plug_power": ("power", "W"),
    "sensor.smart_plug_energy": ("energy", "kWh"),
    "sensor.smart_plug_voltage": ("voltage", "V"),
    # rgb-lamp, rgb-strip
    "light.rgb_lamp_light": (None, None),
    "light.rgb_strip_rgb": (None, None),
    # gpio-board
    "switch.gpio_board_gpio_16": ("switch", None),
    "switch.gpio_board_gpio_17": ("switch", None),
    "light.gpio_board_led": (None, None),
    "binary_sensor.gpio_board_gpio_5": (None, None),
    # counter
    "sensor.counter_count": (None, None),
    # controller
    "button.controller_reboot": ("restart", None),
    "number.controller_setpoint": ("temperature", "°C"),
    "number.controller_fan_speed": (None, None),
    "text.controller_mode": (None, None),
    "switch.controller_schedule_enabled": ("switch", None),
    "number.controller_schedule_start_hour": (None, "h"),
    "number.controller_schedule_end_hour": (None, "h"),
    "text.controller_schedule_label": (None, None),
    "sensor.controller_status": (None, None),
    "number.controller_calc_a": (None, None),
    "number.controller_calc_b": (None, None),
    "sensor.controller_calc_sum": (None, None),
    "sensor.controller_calc_product": (None, None),
}


async def test_entities_for_every_profile(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """Every demo profile gets its entities, devices hang off the server hub."""
    entries = er.async_entries_for_config_entry(entity_registry, loaded_entry.entry_id)
    by_id = {entry.entity_id: entry for entry in entries}
    for entity_id, (device_class, unit) in EXPECTED.items():
        assert entity_id in by_id, entity_id
        state = hass.states.get(entity_id)
        assert state is not None, entity_id
        assert state.state != "unavailable", entity_id
        assert state.attributes.get("device_class") == device_class, entity_id
        assert state.attributes.get("unit_of_measurement") == unit, entity_id
    # One connectivity sensor per device (plus the registered, offline "lamp").
    connectivity = [e for e in entries if e.unique_id.endswith("-$connectivity")]
    assert len(connectivity) == 8
    assert state_of(hass, "binary_sensor.desk_lamp_connectivity") == STATE_OFF
    assert state_of(hass, "binary_sensor.smart_plug_connectivity") == STATE_ON
    assert by_id["binary_sensor.smart_plug_connectivity"].entity_category == "diagnostic"
    # No entity for the internal "$ota/options" resource.
    assert not [e for e in entries if "$ota" in e.unique_id]
    # Diagnostic resources (uptime) are disabled by default.
    millis = by_id["sensor.gpio_board_millis"]
    assert millis.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert millis.entity_category == "diagnostic"
    # Unique ids: entry unique id, device, key.
    assert (
        by_id["sensor.smart_plug_power"].unique_id == f"{loaded_entry.unique_id}-smart-plug-power"
    )
    assert (
        by_id["number.controller_calc_a"].unique_id
        == f"{loaded_entry.unique_id}-controller-calc/in.a"
    )

    hub = find_device(hass, loaded_entry.unique_id)
    assert hub is not None
    assert hub.entry_type is dr.DeviceEntryType.SERVICE
    plug = find_device(hass, f"{loaded_entry.unique_id}:smart-plug")
    assert plug is not None
    assert plug.name == "Smart plug"
    assert plug.via_device_id == hub.id
    assert by_id["switch.smart_plug_relay"].device_id == plug.id
    assert len(dr.async_entries_for_config_entry(device_registry, loaded_entry.entry_id)) == 9


@pytest.mark.profiles("controller", "counter")
async def test_ranges_icons_and_function_results(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """Numbers get ranges from what they are, sensors icons from their names."""
    fan = hass.states.get("number.controller_fan_speed")
    assert fan is not None
    assert (fan.attributes["min"], fan.attributes["max"], fan.attributes["mode"]) == (
        0.0,
        100.0,
        "slider",
    )
    hour = hass.states.get("number.controller_schedule_start_hour")
    assert hour is not None
    assert (hour.attributes["min"], hour.attributes["max"]) == (0.0, 23.0)
    count = hass.states.get("sensor.counter_count")
    assert count is not None
    assert count.attributes.get("icon") == "mdi:counter"
    results = [
        state
        for state in hass.states.async_all("sensor")
        if state.entity_id.startswith("sensor.controller_calc")
    ]
    assert results
    assert all("state_class" not in state.attributes for state in results)


async def test_values_pushed_by_stream(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """Streamed outputs reach their sensors without polling."""
    counter = fleet["counter"]
    start = float(state_of(hass, "sensor.counter_count") or 0)
    await counter.wait_for(lambda state: state["count"] >= start + 3)
    await wait_for(hass, lambda: float(state_of(hass, "sensor.counter_count") or 0) >= start + 3)


async def test_switch_commands(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """Switch writes reach the device; the state comes from the device's echo."""
    plug = fleet["smart-plug"]
    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: "switch.smart_plug_relay"}, blocking=True
    )
    assert plug.state["relay"] is True
    await wait_for(hass, lambda: state_of(hass, "switch.smart_plug_relay") == STATE_ON)
    await hass.services.async_call(
        "switch", "turn_off", {ATTR_ENTITY_ID: "switch.smart_plug_relay"}, blocking=True
    )
    assert plug.state["relay"] is False
    await wait_for(hass, lambda: state_of(hass, "switch.smart_plug_relay") == STATE_OFF)
    # A boolean field of an object input sends the whole merged object.
    controller = fleet["controller"]
    await hass.services.async_call(
        "switch", "turn_off", {ATTR_ENTITY_ID: "switch.controller_schedule_enabled"}, blocking=True
    )
    assert controller.state["schedule"] == {
        "enabled": False,
        "start_hour": 7,
        "end_hour": 22,
        "label": "weekdays",
    }
    await wait_for(hass, lambda: state_of(hass, "switch.controller_schedule_enabled") == STATE_OFF)


async def test_rgb_lamp(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """An on/brightness/rgb object light: one merged write per command."""
    lamp = fleet["rgb-lamp"]
    entity_id = "light.rgb_lamp_light"
    assert state_of(hass, entity_id) == STATE_OFF
    await hass.services.async_call(
        "light",
        "turn_on",
        {ATTR_ENTITY_ID: entity_id, ATTR_BRIGHTNESS: 200, ATTR_RGB_COLOR: (255, 0, 10)},
        blocking=True,
    )
    assert lamp.state["light"] == {"on": True, "brightness": 200, "r": 255, "g": 0, "b": 10}
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_ON)
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes[ATTR_BRIGHTNESS] == 200
    assert state.attributes[ATTR_RGB_COLOR] == (255, 0, 10)
    assert state.attributes["color_mode"] == ColorMode.RGB
    await hass.services.async_call("light", "turn_off", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert lamp.state["light"]["on"] is False
    assert lamp.state["light"]["brightness"] == 200
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_OFF)
    await hass.services.async_call("light", "turn_on", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert lamp.state["light"] == {"on": True, "brightness": 200, "r": 255, "g": 0, "b": 10}


async def test_rgb_strip(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """An r,g,b-only light: on is any channel above 0, brightness scales the channels."""
    strip = fleet["rgb-strip"]
    entity_id = "light.rgb_strip_rgb"
    assert state_of(hass, entity_id) == STATE_OFF
    await hass.services.async_call("light", "turn_on", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert strip.state["rgb"] == {"r": 255, "g": 255, "b": 255}
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_ON)
    # Already on, no arguments: nothing changes.
    await hass.services.async_call("light", "turn_on", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert strip.state["rgb"] == {"r": 255, "g": 255, "b": 255}
    await hass.services.async_call(
        "light",
        "turn_on",
        {ATTR_ENTITY_ID: entity_id, ATTR_RGB_COLOR: (0, 128, 255)},
        blocking=True,
    )
    assert strip.state["rgb"] == {"r": 0, "g": 128, "b": 255}
    await wait_for(
        hass,
        lambda: hass.states.get(entity_id).attributes.get(ATTR_RGB_COLOR) == (0, 128, 255),  # type: ignore[union-attr]
    )
    await hass.services.async_call(
        "light", "turn_on", {ATTR_ENTITY_ID: entity_id, ATTR_BRIGHTNESS: 51}, blocking=True
    )
    assert strip.state["rgb"] == {"r": 0, "g": 26, "b": 51}
    await wait_for(
        hass,
        lambda: hass.states.get(entity_id).attributes.get(ATTR_BRIGHTNESS) == 51,  # type: ignore[union-attr]
    )
    await hass.services.async_call("light", "turn_off", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert strip.state["rgb"] == {"r": 0, "g": 0, "b": 0}
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_OFF)
    # Off, with only a brightness: white at that brightness.
    await hass.services.async_call(
        "light", "turn_on", {ATTR_ENTITY_ID: entity_id, ATTR_BRIGHTNESS: 100}, blocking=True
    )
    assert strip.state["rgb"] == {"r": 100, "g": 100, "b": 100}


async def test_onoff_light(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """A boolean input named led is an on/off light."""
    board = fleet["gpio-board"]
    entity_id = "light.gpio_board_led"
    await hass.services.async_call("light", "turn_on", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert board.state["led"] is True
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_ON)
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes["color_mode"] == ColorMode.ONOFF
    await hass.services.async_call("light", "turn_off", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert board.state["led"] is False
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_OFF)


async def test_number_text_button(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """Number, text and button commands reach the controller."""
    controller = fleet["controller"]
    await hass.services.async_call(
        "number",
        "set_value",
        {ATTR_ENTITY_ID: "number.controller_setpoint", "value": 23.5},
        blocking=True,
    )
    assert controller.state["setpoint"] == 23.5
    await wait_for(hass, lambda: state_of(hass, "number.controller_setpoint") == "23.5")
    await hass.services.async_call(
        "number",
        "set_value",
        {ATTR_ENTITY_ID: "number.controller_fan_speed", "value": 55},
        blocking=True,
    )
    assert controller.state["fan_speed"] == 55
    assert isinstance(controller.state["fan_speed"], int)
    await hass.services.async_call(
        "number",
        "set_value",
        {ATTR_ENTITY_ID: "number.controller_schedule_start_hour", "value": 8},
        blocking=True,
    )
    assert controller.state["schedule"] == {
        "enabled": True,
        "start_hour": 8,
        "end_hour": 22,
        "label": "weekdays",
    }
    await wait_for(hass, lambda: state_of(hass, "number.controller_schedule_start_hour") == "8")
    await hass.services.async_call(
        "text",
        "set_value",
        {ATTR_ENTITY_ID: "text.controller_mode", "value": "eco"},
        blocking=True,
    )
    assert controller.state["mode"] == "eco"
    await wait_for(hass, lambda: state_of(hass, "text.controller_mode") == "eco")
    await hass.services.async_call(
        "text",
        "set_value",
        {ATTR_ENTITY_ID: "text.controller_schedule_label", "value": "all"},
        blocking=True,
    )
    assert controller.state["schedule"]["label"] == "all"
    assert controller.state["schedule"]["start_hour"] == 8
    runs = controller.state["reboot"]
    await hass.services.async_call(
        "button", "press", {ATTR_ENTITY_ID: "button.controller_reboot"}, blocking=True
    )
    assert controller.state["reboot"] == runs + 1


async def test_input_output_resource(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """Writing an input of an input+output resource updates its outputs."""
    await hass.services.async_call(
        "number",
        "set_value",
        {ATTR_ENTITY_ID: "number.controller_calc_a", "value": 3},
        blocking=True,
    )
    await hass.services.async_call(
        "number",
        "set_value",
        {ATTR_ENTITY_ID: "number.controller_calc_b", "value": 4},
        blocking=True,
    )
    assert fleet["controller"].state["calc"]["in"] == {"a": 3, "b": 4}
    await wait_for(hass, lambda: state_of(hass, "sensor.controller_calc_sum") == "7")
    assert state_of(hass, "sensor.controller_calc_product") == "12"
    assert state_of(hass, "number.controller_calc_a") == "3"
    assert state_of(hass, "number.controller_calc_b") == "4"


@pytest.mark.parametrize(
    ("error", "key"),
    [
        (IotmpNotFoundError("gone", status=404, device_offline=True), "device_offline"),
        (IotmpNotFoundError("gone", status=404, device_offline=False), "resource_not_found"),
        (IotmpNotFoundError("gone", status=404, device_offline=None), "not_found"),
        (IotmpDeviceTimeoutError("slow", status=504), "device_timeout"),
        (IotmpRequestError("bad", status=400), "write_rejected"),
        (IotmpForbiddenError("no", status=403), "forbidden"),
        (IotmpConnectionError("down"), "cannot_connect"),
        (IotmpApiError("odd"), "write_failed"),
        (IotmpAuthError("revoked", status=401), "auth_failed"),
    ],
)
async def test_command_errors(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, error: Exception, key: str
) -> None:
    """A failed write raises a translated error; nothing is queued."""
    client = loaded_entry.runtime_data.client
    with (
        patch.object(client, "write", side_effect=error),
        pytest.raises(HomeAssistantError) as info,
    ):
        await hass.services.async_call(
            "switch", "turn_on", {ATTR_ENTITY_ID: "switch.smart_plug_relay"}, blocking=True
        )
    assert info.value.translation_domain == DOMAIN
    assert info.value.translation_key == key
    assert key not in str(info.value)  # the translated message
    assert state_of(hass, "switch.smart_plug_relay") in (STATE_OFF, "unavailable")
    if key == "auth_failed":
        await hass.async_block_till_done()
        flows = hass.config_entries.flow.async_progress()
        assert [flow["context"]["source"] for flow in flows] == ["reauth"]
        assert state_of(hass, "switch.smart_plug_relay") == "unavailable"


async def test_unknown_values(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """Values of the wrong type show as unknown, not as errors."""
    manager = loaded_entry.runtime_data.manager
    device = manager.devices["smart-plug"]
    device.outputs["power"] = "n/a"
    device.inputs["relay"] = {"odd": 1}
    manager._async_notify("smart-plug")
    await hass.async_block_till_done()
    assert state_of(hass, "sensor.smart_plug_power") == STATE_UNKNOWN
    assert state_of(hass, "switch.smart_plug_relay") == STATE_UNKNOWN
