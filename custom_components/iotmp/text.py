"""Text entities for string inputs."""

from __future__ import annotations

import json
from typing import Any

from homeassistant.components.text import TextEntity
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import IotmpConfigEntry
from .entity import IotmpControlEntity

# One command at a time per entity; the state comes back on the stream.
PARALLEL_UPDATES = 1

MAX_LENGTH = 255


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IotmpConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add text entities for current and future devices."""
    entry.runtime_data.manager.async_register_platform(Platform.TEXT, IotmpText, async_add_entities)


class IotmpText(IotmpControlEntity, TextEntity):
    """A string input (or a string field of an input object)."""

    _attr_translation_key = "text_input"
    _attr_native_max = MAX_LENGTH

    @property
    def native_value(self) -> str | None:
        """The device's last reported input (JSON text for values that are not strings)."""
        value = self.raw_value
        if value is None:
            return None
        if isinstance(value, str):
            return value[:MAX_LENGTH]
        if isinstance(value, bytes):
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)[:MAX_LENGTH]

    async def async_set_value(self, value: str) -> None:
        """Write the new text; the device's echo updates the state.

        A string input gets the text as is; an input of unknown type (or a list)
        gets text that parses as JSON as that JSON value.
        """
        payload: Any = value
        if self.spec.value_type != "string":
            try:
                payload = json.loads(value)
            except ValueError:
                payload = value
        await self.async_write_value(payload)
