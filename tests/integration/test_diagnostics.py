"""Diagnostics: entry and device, secrets redacted."""

from __future__ import annotations

import json

import pytest
from homeassistant.const import CONF_TOKEN, CONF_USERNAME
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.iotmp.const import (
    AUTH_PASSWORD,
    CONF_AUTH_METHOD,
    CONF_REFRESH_TOKEN,
)
from iotmp.protocol.message import ABSENT
from iotmp.server.testing import TestServer
from iotmp.sim.testing import TestFleet

from .conftest import find_device, make_entry, setup_entry

pytestmark = pytest.mark.profiles("smart_plug")


async def test_entry_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    server: TestServer,
    fleet: TestFleet,
) -> None:
    """Tokens are redacted; devices, resources and values are included."""
    entry = make_entry(
        server,
        **{
            CONF_AUTH_METHOD: AUTH_PASSWORD,
            CONF_USERNAME: "alice",
            CONF_REFRESH_TOKEN: "secret-refresh-token",
        },
    )
    await setup_entry(hass, entry)
    data = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    text = json.dumps(data)
    assert server.token not in text
    assert "secret-refresh-token" not in text
    assert data["entry"]["data"][CONF_TOKEN] == "**REDACTED**"
    assert data["entry"]["data"][CONF_REFRESH_TOKEN] == "**REDACTED**"
    assert data["server"]["available"] is True
    plug = data["devices"]["smart-plug"]
    assert plug["connected"] is True
    assert plug["resources"]["relay"] == {"fn": 2, "sample_in": False, "sample_out": None}
    assert {e["key"] for e in plug["entities"]} == {"relay", "power", "energy", "voltage"}
    assert plug["subscriptions"]["relay"] == 0
    assert data["devices"]["lamp"]["connected"] is False
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_device_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    loaded_entry: MockConfigEntry,
) -> None:
    """Device diagnostics for an IOTMP device and for the server hub."""
    plug = find_device(hass, f"{loaded_entry.unique_id}:smart-plug")
    hub = find_device(hass, loaded_entry.unique_id)
    assert plug is not None
    assert hub is not None
    device = loaded_entry.runtime_data.manager.devices["smart-plug"]
    device.outputs["extra_bytes"] = b"\x00\xff"
    device.inputs["extra_absent"] = ABSENT
    device.outputs["extra_list"] = [1, (2, 3)]
    data = await get_diagnostics_for_device(hass, hass_client, loaded_entry, plug)
    assert data["device_id"] == "smart-plug"
    assert data["outputs"]["extra_bytes"] == "00ff"
    assert data["inputs"]["extra_absent"] is None
    assert data["outputs"]["extra_list"] == [1, [2, 3]]
    assert data["name"] == "Smart plug"
    data = await get_diagnostics_for_device(hass, hass_client, loaded_entry, hub)
    assert data["server"]["devices"] == ["lamp", "smart-plug"]
