"""The iotmp.run_resource action."""

from __future__ import annotations

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotmp.const import DOMAIN, SERVICE_RUN_RESOURCE
from iotmp.server.testing import TestServer
from iotmp.sim.testing import TestFleet

from .conftest import find_device, make_entry

pytestmark = pytest.mark.profiles("controller")


def _device_id(hass: HomeAssistant, entry: MockConfigEntry, device: str) -> str:
    identifier = entry.unique_id if device == "" else f"{entry.unique_id}:{device}"
    found = find_device(hass, identifier)
    assert found is not None
    return found.id


async def test_run_with_response(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """The device's output comes back as response data."""
    response = await hass.services.async_call(
        DOMAIN,
        SERVICE_RUN_RESOURCE,
        {
            "device": _device_id(hass, loaded_entry, "controller"),
            "resource": "calc",
            "payload": {"a": 2, "b": 5},
        },
        blocking=True,
        return_response=True,
    )
    assert response == {"output": {"sum": 7, "product": 10}}
    assert fleet["controller"].state["calc"]["in"] == {"a": 2, "b": 5}


async def test_run_without_payload(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fleet: TestFleet
) -> None:
    """A run resource without payload and without asking for a response."""
    runs = fleet["controller"].state["reboot"]
    result = await hass.services.async_call(
        DOMAIN,
        SERVICE_RUN_RESOURCE,
        {"device": _device_id(hass, loaded_entry, "controller"), "resource": " reboot "},
        blocking=True,
    )
    assert result is None
    assert fleet["controller"].state["reboot"] == runs + 1


async def test_device_errors(hass: HomeAssistant, loaded_entry: MockConfigEntry) -> None:
    """Offline devices and rejected input raise translated errors."""
    with pytest.raises(HomeAssistantError) as info:
        await hass.services.async_call(
            DOMAIN,
            SERVICE_RUN_RESOURCE,
            {"device": _device_id(hass, loaded_entry, "lamp"), "resource": "light"},
            blocking=True,
        )
    assert info.value.translation_key in ("device_offline", "not_found")
    with pytest.raises(HomeAssistantError) as info:
        await hass.services.async_call(
            DOMAIN,
            SERVICE_RUN_RESOURCE,
            {
                "device": _device_id(hass, loaded_entry, "controller"),
                "resource": "calc",
                "payload": {"a": "x"},
            },
            blocking=True,
        )
    assert info.value.translation_key == "write_rejected"


async def test_validation_errors(
    hass: HomeAssistant, server: TestServer, loaded_entry: MockConfigEntry
) -> None:
    """Bad targets are validation errors with translations."""
    controller = _device_id(hass, loaded_entry, "controller")
    other_entry = MockConfigEntry(domain="other")
    other_entry.add_to_hass(hass)
    other = dr.async_get(hass).async_get_or_create(
        config_entry_id=other_entry.entry_id, identifiers={("other", "x")}
    )
    cases = [
        ({"device": "missing", "resource": "x"}, "device_not_found"),
        ({"device": controller, "resource": "  "}, "resource_required"),
        ({"device": _device_id(hass, loaded_entry, ""), "resource": "x"}, "not_iotmp_device"),
        ({"device": other.id, "resource": "x"}, "not_iotmp_device"),
    ]
    for data, key in cases:
        with pytest.raises(ServiceValidationError) as info:
            await hass.services.async_call(DOMAIN, SERVICE_RUN_RESOURCE, data, blocking=True)
        assert info.value.translation_key == key
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    with pytest.raises(ServiceValidationError) as info:
        await hass.services.async_call(
            DOMAIN, SERVICE_RUN_RESOURCE, {"device": controller, "resource": "x"}, blocking=True
        )
    assert info.value.translation_key == "entry_not_loaded"
    assert make_entry(server).unique_id == loaded_entry.unique_id
