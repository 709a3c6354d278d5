"""Integration actions: ``iotmp.run_resource``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr

from iotmp.protocol.message import ABSENT

from .const import ATTR_DEVICE, ATTR_PAYLOAD, ATTR_RESOURCE, DOMAIN, SERVICE_RUN_RESOURCE

if TYPE_CHECKING:  # pragma: no cover - imported with the entry setup (see __init__)
    from .coordinator import IotmpManager

RUN_RESOURCE_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE): cv.string,
        vol.Required(ATTR_RESOURCE): cv.string,
        vol.Optional(ATTR_PAYLOAD): cv.match_all,
    }
)


def _config_entry_ids(device: dr.DeviceEntry) -> list[str]:
    """Config entries of a device on every Home Assistant version.

    From 2026.8 a device belongs to one entry (``config_entry_id``) and the
    ``config_entries`` set is deprecated; older versions only have the set.
    """
    entry_id = getattr(device, "config_entry_id", None)
    if isinstance(entry_id, str):
        return [entry_id]
    return list(device.config_entries)


def _resolve_device(hass: HomeAssistant, device_entry_id: str) -> tuple[IotmpManager, str]:
    """Return the manager and IOTMP device id behind a device-registry id."""
    device = dr.async_get(hass).async_get(device_entry_id)
    if device is None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="device_not_found",
            translation_placeholders={"device": device_entry_id},
        )
    for entry_id in _config_entry_ids(device):
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            continue
        if entry.state is not ConfigEntryState.LOADED:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="entry_not_loaded",
                translation_placeholders={"entry": entry.title},
            )
        manager: IotmpManager = entry.runtime_data.manager
        for domain, identifier in device.identifiers:
            if domain != DOMAIN:
                continue
            device_id = manager.device_id_from_identifier(identifier)
            if device_id is not None:
                return manager, device_id
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="not_iotmp_device",
        translation_placeholders={"device": device.name or device_entry_id},
    )


async def _async_run_resource(call: ServiceCall) -> ServiceResponse:
    """Run a resource (with an optional JSON payload) and return the device's output."""
    resource: str = call.data[ATTR_RESOURCE].strip()
    if not resource:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="resource_required")
    manager, device_id = _resolve_device(call.hass, call.data[ATTR_DEVICE])
    payload: Any = call.data.get(ATTR_PAYLOAD, ABSENT)
    output = await manager.async_write(device_id, resource, payload)
    if call.return_response:
        return {"output": output}
    return None


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions (from ``async_setup``)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_RUN_RESOURCE,
        _async_run_resource,
        schema=RUN_RESOURCE_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
