"""Sensors for IOTMP output values."""

from __future__ import annotations

import json
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorStateClass,
)
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from iotmp.ha_mapping import EntitySpec

from .coordinator import IotmpConfigEntry, IotmpManager
from .entity import IotmpEntity
from .util import enum_or_none

# Reading only: every change arrives by push.
PARALLEL_UPDATES = 0

MAX_STATE_LENGTH = 255

_PRECISION: dict[SensorDeviceClass, int] = {
    SensorDeviceClass.TEMPERATURE: 1,
    SensorDeviceClass.HUMIDITY: 0,
    SensorDeviceClass.PRESSURE: 1,
    SensorDeviceClass.ATMOSPHERIC_PRESSURE: 1,
    SensorDeviceClass.VOLTAGE: 1,
    SensorDeviceClass.CURRENT: 2,
    SensorDeviceClass.POWER: 1,
    SensorDeviceClass.ENERGY: 3,
    SensorDeviceClass.BATTERY: 0,
    SensorDeviceClass.ILLUMINANCE: 0,
    SensorDeviceClass.CO2: 0,
    SensorDeviceClass.PM25: 0,
    SensorDeviceClass.PM10: 0,
}


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IotmpConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add sensors for current and future devices."""
    entry.runtime_data.manager.async_register_platform(
        Platform.SENSOR, IotmpSensor, async_add_entities
    )


class IotmpSensor(IotmpEntity, SensorEntity):
    """An output value (or a field of an output object)."""

    def __init__(self, manager: IotmpManager, device_id: str, spec: EntitySpec) -> None:
        """Take device class, unit and state class from the spec."""
        super().__init__(manager, device_id, spec)
        device_class = enum_or_none(SensorDeviceClass, spec.device_class)
        self._attr_device_class = device_class
        self._attr_native_unit_of_measurement = spec.unit
        self._attr_state_class = enum_or_none(SensorStateClass, spec.state_class)
        if device_class is not None and device_class in _PRECISION:
            self._attr_suggested_display_precision = _PRECISION[device_class]
        self._numeric = (
            spec.unit is not None
            or spec.state_class is not None
            or (
                device_class is not None
                and device_class
                not in (SensorDeviceClass.ENUM, SensorDeviceClass.TIMESTAMP, SensorDeviceClass.DATE)
            )
        )

    @property
    def native_value(self) -> Any:
        """The value; numeric sensors show unknown for values that are not numbers."""
        value = self.raw_value
        if value is None:
            return None
        if self._numeric:
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, int | float):
                return value
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
        if isinstance(value, dict | list):
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        elif isinstance(value, bytes):
            text = value.hex()
        else:
            text = str(value)
        return text[:MAX_STATE_LENGTH]
