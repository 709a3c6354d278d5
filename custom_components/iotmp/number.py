"""Number entities for numeric inputs."""

from __future__ import annotations

from homeassistant.components.number import NumberDeviceClass, NumberEntity, NumberMode
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from iotmp.ha_mapping import EntitySpec, NumberSpec

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
    """Add number entities for current and future devices."""
    entry.runtime_data.manager.async_register_platform(
        Platform.NUMBER, IotmpNumber, async_add_entities
    )


class IotmpNumber(IotmpControlEntity, NumberEntity):
    """A numeric input (or a numeric field of an input object)."""

    def __init__(self, manager: IotmpManager, device_id: str, spec: EntitySpec) -> None:
        """Take range, step, mode, unit and device class from the spec."""
        super().__init__(manager, device_id, spec)
        self._attr_device_class = enum_or_none(NumberDeviceClass, spec.device_class)
        self._attr_native_unit_of_measurement = spec.unit
        number = spec.number or NumberSpec(min=-1e6, max=1e6, step=1.0, mode="box")
        self._attr_native_min_value = float(number.min)
        self._attr_native_max_value = float(number.max)
        self._attr_native_step = float(number.step)
        self._attr_mode = enum_or_none(NumberMode, number.mode) or NumberMode.AUTO
        self._integers = float(number.step).is_integer()

    @property
    def native_value(self) -> float | None:
        """The device's last reported input."""
        value = self.raw_value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return value

    async def async_set_native_value(self, value: float) -> None:
        """Write the number (as an integer when the step is whole)."""
        if self._integers and float(value).is_integer():
            await self.async_write_value(int(value))
        else:
            await self.async_write_value(value)
