"""More devices than a shared HTTP session allows connections per host (100)."""

from __future__ import annotations

from homeassistant.const import ATTR_ENTITY_ID, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er

from custom_components.iotmp.const import CONF_ALL_DEVICES, CONF_DEVICES, CONF_UPDATE_INTERVAL
from iotmp.server.testing import TestServer
from iotmp.sim.testing import run_virtual_devices

from .conftest import make_entry, setup_entry, state_of, wait_for

DEVICES = 110


async def test_every_stream_connects_and_commands_work(
    hass: HomeAssistant, server: TestServer
) -> None:
    """110 devices (plus the server's offline lamp): every device stream connects
    and a write to the last device succeeds (neither waits for a free connection)."""
    async with run_virtual_devices(server, profiles=["smart_plug"], count=DEVICES) as fleet:
        await fleet.wait_connected()
        entry = make_entry(
            server, options={CONF_ALL_DEVICES: True, CONF_DEVICES: [], CONF_UPDATE_INTERVAL: 30}
        )
        await setup_entry(hass, entry)
        manager = entry.runtime_data.manager
        assert len(manager.devices) == DEVICES + 1
        await wait_for(
            hass,
            lambda: (
                sum(
                    1
                    for device in manager.devices.values()
                    if device.stream is not None and device.stream.connected
                )
                == len(manager.devices)
            ),
            timeout=60,
        )

        last = f"smart-plug-{DEVICES}"
        registry = er.async_get(hass)
        (relay,) = [
            item.entity_id
            for item in er.async_entries_for_config_entry(registry, entry.entry_id)
            if item.unique_id.endswith(f"-{last}-relay")
        ]
        await hass.services.async_call("switch", "turn_on", {ATTR_ENTITY_ID: relay}, blocking=True)
        assert fleet[last].state["relay"] is True
        await wait_for(hass, lambda: state_of(hass, relay) == STATE_ON)

        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
