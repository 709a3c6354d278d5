"""Binary sensors: boolean outputs and each device's connectivity."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
)
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from iotmp.ha_mapping import EntitySpec

from .const import CONNECTIVITY_KEY
from .coordinator import IotmpConfigEntry, IotmpManager
from .entity import IotmpEntity
from .util import enum_or_none

# Reading only: every change arrives by push.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IotmpConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add binary sensors for current and future devices."""
    entry.runtime_data.manager.async_register_platform(
        Platform.BINARY_SENSOR, _create, async_add_entities
    )


def _create(manager: IotmpManager, device_id: str, spec: EntitySpec) -> Entity:
    if spec.key == CONNECTIVITY_KEY:
        return IotmpConnectivitySensor(manager, device_id, spec)
    return IotmpBinarySensor(manager, device_id, spec)


class IotmpBinarySensor(IotmpEntity, BinarySensorEntity):
    """A boolean output (or a boolean field of an output object)."""

    def __init__(self, manager: IotmpManager, device_id: str, spec: EntitySpec) -> None:
        """Take the device class from the spec."""
        super().__init__(manager, device_id, spec)
        self._attr_device_class = enum_or_none(BinarySensorDeviceClass, spec.device_class)

    @property
    def is_on(self) -> bool | None:
        """The value as a boolean; unknown when missing."""
        value = self.raw_value
        if value is None or isinstance(value, dict | list):
            return None
        return bool(value)


class IotmpConnectivitySensor(IotmpEntity, BinarySensorEntity):
    """Whether the device is connected to the server."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_translation_key = "connectivity"
    _name_from_spec = False

    @property
    def available(self) -> bool:
        """Known whenever the server is reachable."""
        return self.manager.server_available

    @property
    def is_on(self) -> bool:
        """Whether the device is connected."""
        device = self.manager.devices.get(self.device_id)
        return device is not None and device.connected
