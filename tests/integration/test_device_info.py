"""What the device pages show: model, server version and a Visit link that works."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant

import iotmp
from custom_components.iotmp.coordinator import device_model, hub_configuration_url
from iotmp.client import DeviceRecord
from iotmp.server.testing import TestDevice, run_test_server
from iotmp.sim.testing import run_virtual_devices

from .conftest import find_device, make_entry, setup_entry, wait_for


def record(**fields: Any) -> DeviceRecord:
    return DeviceRecord.from_json({"device": "d", **fields})


def test_model_from_type_or_description() -> None:
    assert device_model(record(type="Sonoff TH16")) == "Sonoff TH16"
    assert device_model(record(type="Generic", description="ESP32 greenhouse node")) == (
        "ESP32 greenhouse node"
    )
    assert device_model(record(type="Generic", description="x" * 200)) is None
    assert device_model(record(type="Generic")) is None


def test_visit_link_only_where_a_page_answers() -> None:
    assert hub_configuration_url("https://api.thinger.io", "5.0") == "https://console.thinger.io"
    assert hub_configuration_url("https://acme.aws.thinger.io", "5.0") == (
        "https://acme.aws.thinger.io"
    )
    # The iotmp server answers 404 at its root: no link.
    assert hub_configuration_url("http://127.0.0.1:25280", "iotmp-server 0.1.0") is None


async def test_local_server_devices(hass: HomeAssistant) -> None:
    async with (
        run_test_server(
            devices=[
                TestDevice(
                    "smart-plug", credential="pw-smart-plug", description="Kitchen relay board"
                )
            ],
            user="alice",
        ) as server,
        run_virtual_devices(server, profiles=["smart_plug"], register=False) as fleet,
    ):
        await fleet.wait_connected()
        # The firmware reports its version in a property (set_property from the device).
        await server.server.properties.set_value("smart-plug", "firmware", {"version": "2.1.0"})
        entry = make_entry(server)
        await setup_entry(hass, entry)
        hub = find_device(hass, entry.unique_id or "")
        assert hub is not None
        assert hub.configuration_url is None
        assert hub.sw_version == f"iotmp-server {iotmp.__version__}"
        await wait_for(hass, lambda: find_device(hass, f"{entry.unique_id}:smart-plug") is not None)
        plug = find_device(hass, f"{entry.unique_id}:smart-plug")
        assert plug is not None
        assert plug.model == "Kitchen relay board"
        assert plug.manufacturer == "IOTMP"
        assert plug.sw_version == "2.1.0"
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
