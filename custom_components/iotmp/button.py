"""Buttons for run resources."""

from __future__ import annotations

from homeassistant.components.button import ButtonDeviceClass, ButtonEntity
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from iotmp.ha_mapping import EntitySpec

from .coordinator import IotmpConfigEntry, IotmpManager
from .entity import IotmpControlEntity
from .util import enum_or_none

# One command at a time per entity.
PARALLEL_UPDATES = 1


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IotmpConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add buttons for current and future devices."""
    entry.runtime_data.manager.async_register_platform(
        Platform.BUTTON, IotmpButton, async_add_entities
    )


class IotmpButton(IotmpControlEntity, ButtonEntity):
    """Runs a resource (a POST without a body)."""

    def __init__(self, manager: IotmpManager, device_id: str, spec: EntitySpec) -> None:
        """Take the device class from the spec (else the generic run icon)."""
        super().__init__(manager, device_id, spec)
        self._attr_device_class = enum_or_none(ButtonDeviceClass, spec.device_class)
        if self._attr_device_class is None:
            self._attr_translation_key = "run"

    async def async_press(self) -> None:
        """Run the resource on the device."""
        await self.manager.async_write(self.device_id, self.spec.resource)
