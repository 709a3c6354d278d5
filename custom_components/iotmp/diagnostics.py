"""Diagnostics for iotmp config entries and devices (secrets redacted)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_PASSWORD, CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import DeviceEntry

from iotmp.protocol.message import ABSENT

from .const import CONF_REFRESH_TOKEN, DOMAIN
from .coordinator import IotmpConfigEntry, IotmpDevice, IotmpManager

TO_REDACT = {
    CONF_TOKEN,
    CONF_REFRESH_TOKEN,
    CONF_PASSWORD,
    "access_token",
    "authorization",
}


def _jsonable(value: Any) -> Any:
    if value is ABSENT:
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _device_data(manager: IotmpManager, device: IotmpDevice) -> dict[str, Any]:
    return {
        "name": device.name,
        "model": device.model,
        "connected": device.connected,
        "described": device.described,
        "resources": {
            name: {
                "fn": info.fn,
                "sample_in": _jsonable(info.sample_in),
                "sample_out": _jsonable(info.sample_out),
            }
            for name, info in device.resources.items()
        },
        "entities": [
            {
                "key": spec.key,
                "platform": spec.platform,
                "resource": spec.resource,
                "path": list(spec.path),
                "direction": spec.direction,
                "device_class": spec.device_class,
                "unit": spec.unit,
            }
            for spec in device.specs
        ],
        "inputs": _jsonable(device.inputs),
        "outputs": _jsonable(device.outputs),
        "subscriptions": dict(device.subscriptions),
        "output_interval": manager.output_interval(device.device_id),
    }


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: IotmpConfigEntry
) -> dict[str, Any]:
    """Entry data and options (redacted), server state and every device."""
    manager = entry.runtime_data.manager
    server: dict[str, Any] = {
        "available": manager.server_available,
        "version": manager.server_version,
    }
    if entry.runtime_data.server is not None:
        server["listeners"] = entry.runtime_data.server.listener_state()
    return {
        "entry": {
            "title": entry.title,
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "server": server,
        "devices": {
            device_id: _device_data(manager, device)
            for device_id, device in manager.devices.items()
        },
    }


async def async_get_device_diagnostics(
    hass: HomeAssistant, entry: IotmpConfigEntry, device: DeviceEntry
) -> dict[str, Any]:
    """One IOTMP device (or the server for the hub device)."""
    manager = entry.runtime_data.manager
    for domain, identifier in device.identifiers:
        if domain != DOMAIN:
            continue
        device_id = manager.device_id_from_identifier(identifier)
        if device_id is not None and device_id in manager.devices:
            return {"device_id": device_id, **_device_data(manager, manager.devices[device_id])}
    return {
        "server": {
            "available": manager.server_available,
            "version": manager.server_version,
            "devices": sorted(manager.devices),
        }
    }
