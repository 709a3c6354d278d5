"""Odd values: percent dimmers, on-only lights, untyped inputs, lists, wrong types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from homeassistant.components.light import ATTR_BRIGHTNESS, ColorMode
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotmp.const import CONF_ALL_DEVICES, CONF_DEVICES, CONF_UPDATE_INTERVAL
from iotmp.server.testing import TestServer
from iotmp.sim.testing import TestFleet, run_virtual_devices

from .conftest import make_entry, setup_entry, state_of, wait_for

PROFILE = Path(__file__).parent / "profiles" / "odd_device.json"


@pytest.fixture
async def odd(hass: HomeAssistant, server: TestServer) -> AsyncIterator[TestFleet]:
    """The odd device, connected, with an entry set up."""
    async with run_virtual_devices(server, profiles=[PROFILE]) as fleet:
        await fleet.wait_connected()
        entry = make_entry(
            server,
            options={
                CONF_ALL_DEVICES: False,
                CONF_DEVICES: ["odd-device"],
                CONF_UPDATE_INTERVAL: 1,
            },
        )
        await setup_entry(hass, entry)
        yield fleet
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_percent_dimmer(hass: HomeAssistant, odd: TestFleet) -> None:
    """An on + brightness_pct object is a brightness light with a 0-100 range."""
    device = odd["odd-device"]
    entity_id = "light.odd_device_dimmer"
    assert state_of(hass, entity_id) == STATE_OFF
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes["supported_color_modes"] == [ColorMode.BRIGHTNESS]
    await hass.services.async_call(
        "light", "turn_on", {ATTR_ENTITY_ID: entity_id, ATTR_BRIGHTNESS: 255}, blocking=True
    )
    assert device.state["dimmer"] == {"on": True, "brightness_pct": 100}
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_ON)
    assert hass.states.get(entity_id).attributes[ATTR_BRIGHTNESS] == 255  # type: ignore[union-attr]
    await hass.services.async_call("light", "turn_off", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert device.state["dimmer"] == {"on": False, "brightness_pct": 100}


async def test_on_only_light(hass: HomeAssistant, odd: TestFleet) -> None:
    """An object with only an on field, named like a light."""
    device = odd["odd-device"]
    entity_id = "light.odd_device_status_light"
    assert state_of(hass, entity_id) == STATE_ON
    await hass.services.async_call("light", "turn_off", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert device.state["status_light"] == {"on": False}
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_OFF)
    await hass.services.async_call("light", "turn_on", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert device.state["status_light"] == {"on": True}


async def test_untyped_and_list_inputs(hass: HomeAssistant, odd: TestFleet) -> None:
    """Inputs of unknown type take JSON; lists show as compact JSON."""
    device = odd["odd-device"]
    assert state_of(hass, "text.odd_device_targets") == "[1,2]"
    assert state_of(hass, "sensor.odd_device_tags") == '["a","b"]'
    await hass.services.async_call(
        "text",
        "set_value",
        {ATTR_ENTITY_ID: "text.odd_device_config", "value": '{"x": 1}'},
        blocking=True,
    )
    assert device.state["config"] == {"x": 1}
    await wait_for(hass, lambda: state_of(hass, "text.odd_device_config") == '{"x":1}')
    await hass.services.async_call(
        "text",
        "set_value",
        {ATTR_ENTITY_ID: "text.odd_device_config", "value": "plain words"},
        blocking=True,
    )
    assert device.state["config"] == "plain words"
    await hass.services.async_call(
        "text",
        "set_value",
        {ATTR_ENTITY_ID: "text.odd_device_targets", "value": "[3]"},
        blocking=True,
    )
    assert device.state["targets"] == [3]


@pytest.mark.profiles("smart_plug", "rgb_strip", "controller", "gpio_board")
async def test_wrong_types_show_unknown(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """Values of the wrong type are unknown (or converted), never an error."""
    manager = loaded_entry.runtime_data.manager
    plug = manager.devices["smart-plug"]
    strip = manager.devices["rgb-strip"]
    controller = manager.devices["controller"]

    def push() -> None:
        for device_id in ("smart-plug", "rgb-strip", "controller"):
            manager._async_notify(device_id)

    plug.outputs["power"] = "12.5"
    plug.outputs["energy"] = True
    plug.outputs["voltage"] = "n/a"
    plug.inputs["relay"] = {"odd": 1}
    strip.inputs["rgb"] = {"r": 1, "g": "x", "b": 3}
    controller.inputs["setpoint"] = "warm"
    controller.inputs["mode"] = b"\x01"
    controller.outputs["status"] = b"\x01\x02"
    controller.outputs.pop("calc")
    manager.devices["gpio-board"].outputs["GPIO_5"] = {"odd": 1}
    push()
    manager._async_notify("gpio-board")
    await hass.async_block_till_done()
    assert state_of(hass, "sensor.smart_plug_power") == "12.5"
    assert state_of(hass, "sensor.smart_plug_energy") == "1"
    assert state_of(hass, "sensor.smart_plug_voltage") == STATE_UNKNOWN
    assert state_of(hass, "switch.smart_plug_relay") == STATE_UNKNOWN
    assert state_of(hass, "light.rgb_strip_rgb") == STATE_UNKNOWN
    assert state_of(hass, "number.controller_setpoint") == STATE_UNKNOWN
    assert state_of(hass, "text.controller_mode") == STATE_UNKNOWN
    assert state_of(hass, "sensor.controller_status") == "0102"
    assert state_of(hass, "sensor.controller_calc_sum") == STATE_UNKNOWN
    assert state_of(hass, "binary_sensor.gpio_board_gpio_5") == STATE_UNKNOWN
    strip.inputs["rgb"] = "off"
    strip.inputs.pop("rgb")
    push()
    await hass.async_block_till_done()
    assert state_of(hass, "light.rgb_strip_rgb") == STATE_UNKNOWN


async def test_rgb_light_with_brightness_no_on(hass: HomeAssistant, odd: TestFleet) -> None:
    """r,g,b + brightness without an on field: on means brightness above 0."""
    device = odd["odd-device"]
    manager = hass.config_entries.async_entries("iotmp")[0].runtime_data.manager
    entity_id = "light.odd_device_rgbw"
    assert state_of(hass, entity_id) == STATE_OFF
    await hass.services.async_call("light", "turn_on", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert device.state["rgbw"] == {"r": 255, "g": 255, "b": 255, "brightness": 255}
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_ON)
    await hass.services.async_call("light", "turn_off", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert device.state["rgbw"] == {"r": 255, "g": 255, "b": 255, "brightness": 0}
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_OFF)
    manager.devices["odd-device"].inputs["rgbw"] = {"r": 1, "g": 2, "b": 3, "brightness": "x"}
    manager._async_notify("odd-device")
    await hass.async_block_till_done()
    assert state_of(hass, entity_id) == STATE_UNKNOWN
    # A fresh snapshot brings the device's own state back (and compares list shapes).
    manager._async_request_refresh("odd-device")
    await wait_for(hass, lambda: state_of(hass, entity_id) == STATE_OFF)


async def test_run_button_without_class(hass: HomeAssistant, odd: TestFleet) -> None:
    """A run resource with a plain name gets the generic run icon."""
    entity_id = "button.odd_device_beep"
    assert state_of(hass, entity_id) == STATE_UNKNOWN
    await hass.services.async_call("button", "press", {ATTR_ENTITY_ID: entity_id}, blocking=True)
    assert odd["odd-device"].state["beep"] == 1


@pytest.mark.profiles("rgb_strip")
async def test_colour_while_off(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """A colour chosen while the strip is off is sent at full brightness."""
    await hass.services.async_call(
        "light",
        "turn_on",
        {ATTR_ENTITY_ID: "light.rgb_strip_rgb", "rgb_color": (10, 20, 30)},
        blocking=True,
    )
    assert fleet["rgb-strip"].state["rgb"] == {"r": 10, "g": 20, "b": 30}
