"""Base entity for IOTMP resources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.const import EntityCategory
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity

from iotmp.ha_mapping import EntitySpec

from .const import DOMAIN, MANUFACTURER
from .coordinator import IotmpManager


class IotmpEntity(Entity):
    """An entity built from one entity spec of one IOTMP device, updated by push."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    _name_from_spec = True
    """Whether the device-supplied name is used (else the translation key names it)."""

    def __init__(self, manager: IotmpManager, device_id: str, spec: EntitySpec) -> None:
        """Bind the entity to its device and spec."""
        self.manager = manager
        self.device_id = device_id
        self.spec = spec
        self._attr_unique_id = manager.unique_id(device_id, spec.key)
        if self._name_from_spec:
            self._attr_name = spec.name
        if spec.entity_category == EntityCategory.DIAGNOSTIC:
            # Uptime, signal strength and the like: kept out of the way.
            self._attr_entity_category = EntityCategory.DIAGNOSTIC
            self._attr_entity_registry_enabled_default = False
        if spec.icon is not None:
            self._attr_icon = spec.icon
        device = manager.devices[device_id]
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, manager.device_identifier(device_id))},
            name=device.name,
            manufacturer=MANUFACTURER,
            model=device.model or "IOTMP device",
        )

    @property
    def available(self) -> bool:
        """Server reachable and device connected."""
        return self.manager.available(self.device_id)

    @property
    def raw_value(self) -> Any:
        """The current value of this entity's resource field (``None`` if unknown)."""
        return self.manager.value(self.device_id, self.spec)

    async def async_added_to_hass(self) -> None:
        """Follow the device's availability and this resource's values."""
        await super().async_added_to_hass()
        self.async_on_remove(
            self.manager.async_add_listener(self.device_id, "", self._async_update)
        )
        if self.spec.resource:
            self.async_on_remove(
                self.manager.async_add_listener(
                    self.device_id, self.spec.resource, self._async_update
                )
            )

    @callback
    def _async_update(self) -> None:
        self.async_write_ha_state()


class IotmpControlEntity(IotmpEntity):
    """An entity that writes an input resource (or a field of an input object)."""

    async def async_write_value(self, value: Any) -> None:
        """Write this entity's value: the whole input, or its field merged into the object."""
        if not self.spec.path:
            await self.manager.async_write(self.device_id, self.spec.resource, value)
            return
        await self.async_write_fields(self.spec.path[:-1], {self.spec.path[-1]: value})

    async def async_write_fields(self, path: tuple[str, ...], changes: Mapping[str, Any]) -> None:
        """Write several fields of the object at ``path`` inside the input at once."""
        await self.manager.async_write_fields(self.device_id, self.spec.resource, path, changes)
