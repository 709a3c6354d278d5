"""Switches for boolean inputs."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchDeviceClass, SwitchEntity
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from iotmp.ha_mapping import EntitySpec

from .coordinator import IotmpConfigEntry, IotmpManager
from .entity import IotmpControlEntity
from .util import enum_or_none

# One command at a time per entity; the state comes back on the stream.
PARALLEL_UPDATES = 1


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IotmpConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add switches for current and future devices."""
    entry.runtime_data.manager.async_register_platform(
        Platform.SWITCH, IotmpSwitch, async_add_entities
    )


class IotmpSwitch(IotmpControlEntity, SwitchEntity):
    """A boolean input (or a boolean field of an input object)."""

    def __init__(self, manager: IotmpManager, device_id: str, spec: EntitySpec) -> None:
        """Take the device class from the spec."""
        super().__init__(manager, device_id, spec)
        self._attr_device_class = enum_or_none(SwitchDeviceClass, spec.device_class)

    @property
    def is_on(self) -> bool | None:
        """The device's last reported input."""
        value = self.raw_value
        if value is None or isinstance(value, dict | list):
            return None
        return bool(value)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Write ``true``; the device's echo updates the state."""
        await self.async_write_value(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Write ``false``; the device's echo updates the state."""
        await self.async_write_value(False)
