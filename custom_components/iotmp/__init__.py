"""The iotmp integration: IOTMP devices through a Thinger.io-compatible server.

The package also carries the HA-free protocol, client and mapping modules, which other
programs import (``iotmp.protocol`` runs this file first). So this
module imports only Home Assistant, ``const`` and ``services`` at load time; the connection manager
is imported when Home Assistant sets an entry up. (Home
Assistant imports ``config_flow`` and ``diagnostics``, and with them the manager, in
its import executor together with this package, so nothing is imported in the loop.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from .const import CONF_MODE, DOMAIN, MODE_EMBEDDED, PLATFORMS
from .services import async_setup_services

if TYPE_CHECKING:  # pragma: no cover - the modules load lazily (see async_setup_entry)
    from homeassistant.helpers.device_registry import DeviceEntry

    from .coordinator import IotmpConfigEntry

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the integration's actions (they exist even with no entry loaded)."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: IotmpConfigEntry) -> bool:
    """Connect to the server, snapshot the devices and start the streams."""
    from .coordinator import IotmpManager, IotmpRuntimeData, create_client  # noqa: PLC0415

    if entry.data.get(CONF_MODE) == MODE_EMBEDDED:
        from .embedded import async_start_embedded  # noqa: PLC0415

        server, client = await async_start_embedded(hass, entry)
        manager = IotmpManager(hass, entry, client)
        try:
            await manager.async_setup()
        except BaseException:
            await server.async_stop()
            raise
        entry.runtime_data = IotmpRuntimeData(
            client=client, manager=manager, options=dict(entry.options), server=server
        )
    else:
        remote = create_client(hass, entry)
        manager = IotmpManager(hass, entry, remote)
        await manager.async_setup()
        entry.runtime_data = IotmpRuntimeData(
            client=remote, manager=manager, options=dict(entry.options)
        )
    manager.async_setup_hub_device()
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    manager.async_start()
    entry.async_on_unload(entry.add_update_listener(_async_update_listener))
    return True


async def _async_update_listener(hass: HomeAssistant, entry: IotmpConfigEntry) -> None:
    """Reload when the options changed (device selection, intervals, overrides).

    Token refreshes update the entry's data and must not reload it.
    """
    if entry.runtime_data.options != dict(entry.options):
        hass.config_entries.async_schedule_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: IotmpConfigEntry) -> bool:
    """Unload the platforms and close every stream."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.manager.async_stop()
        if entry.runtime_data.server is not None:
            await entry.runtime_data.server.async_stop()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: IotmpConfigEntry) -> None:
    """Delete the description cache of a removed entry."""
    from homeassistant.helpers.storage import Store  # noqa: PLC0415

    from .const import STORAGE_VERSION  # noqa: PLC0415

    await Store[Any](hass, STORAGE_VERSION, f"{DOMAIN}.{entry.entry_id}").async_remove()
    if entry.data.get(CONF_MODE) == MODE_EMBEDDED:
        from .embedded import async_remove_embedded_data  # noqa: PLC0415

        await async_remove_embedded_data(hass, entry)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: IotmpConfigEntry, device_entry: DeviceEntry
) -> bool:
    """Allow deleting a device only when the server no longer has it (or it is unselected)."""
    manager = entry.runtime_data.manager
    for domain, identifier in device_entry.identifiers:
        if domain != DOMAIN:
            continue
        if identifier == manager.entry_key:
            return False
        device_id = manager.device_id_from_identifier(identifier)
        if device_id is not None and device_id in manager.devices:
            return False
    return True
