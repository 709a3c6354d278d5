"""Lights for boolean inputs named like lights and colour/brightness input objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.components.light import ATTR_BRIGHTNESS, ATTR_RGB_COLOR, LightEntity
from homeassistant.components.light.const import ColorMode
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from iotmp.ha_mapping import EntitySpec, LightSpec

from .coordinator import IotmpConfigEntry, IotmpManager
from .entity import IotmpControlEntity

# One command at a time per entity; the state comes back on the stream.
PARALLEL_UPDATES = 1

WHITE = (255, 255, 255)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IotmpConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add lights for current and future devices."""
    entry.runtime_data.manager.async_register_platform(
        Platform.LIGHT, IotmpLight, async_add_entities
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class IotmpLight(IotmpControlEntity, LightEntity):
    """A light: a boolean input, or an object with on/brightness/r,g,b fields."""

    def __init__(self, manager: IotmpManager, device_id: str, spec: EntitySpec) -> None:
        """Pick the one colour mode the resource supports best."""
        super().__init__(manager, device_id, spec)
        light = spec.light or LightSpec(color_modes=frozenset({"onoff"}))
        self._on_field = light.on_field
        self._brightness_field = light.brightness_field
        self._rgb_fields = light.rgb_fields
        self._brightness_max = float(light.brightness_max)
        self._plain = (
            self._on_field is None and self._brightness_field is None and self._rgb_fields is None
        )
        """A boolean input: the whole value is on/off."""
        modes = light.color_modes
        if "rgb" in modes and self._rgb_fields:
            mode = ColorMode.RGB
        elif "brightness" in modes and self._brightness_field:
            mode = ColorMode.BRIGHTNESS
        else:
            mode = ColorMode.ONOFF
        self._attr_color_mode = mode
        self._attr_supported_color_modes = {mode}

    @property
    def _object(self) -> Mapping[str, Any] | None:
        value = self.raw_value
        return value if isinstance(value, Mapping) else None

    @property
    def _rgb(self) -> tuple[int, int, int] | None:
        obj = self._object
        if obj is None or self._rgb_fields is None:
            return None
        parts = [_number(obj.get(name)) for name in self._rgb_fields]
        if any(part is None for part in parts):
            return None
        red, green, blue = (max(0, min(255, round(part or 0))) for part in parts)
        return (red, green, blue)

    @property
    def is_on(self) -> bool | None:
        """On per the on field, the boolean input, or a non-black colour/brightness."""
        value = self.raw_value
        if value is None:
            return None
        if not isinstance(value, Mapping):
            return bool(value)
        if self._on_field is not None:
            state = value.get(self._on_field)
            return None if state is None else bool(state)
        if self._brightness_field is not None:
            level = _number(value.get(self._brightness_field))
            return None if level is None else level > 0
        rgb = self._rgb
        return None if rgb is None else any(rgb)

    @property
    def brightness(self) -> int | None:
        """Brightness 0-255, scaled from the device's range (or the brightest channel)."""
        obj = self._object
        if obj is None:
            return None
        if self._brightness_field is not None:
            level = _number(obj.get(self._brightness_field))
            if level is None:
                return None
            return max(0, min(255, round(level * 255 / self._brightness_max)))
        rgb = self._rgb
        return None if rgb is None else max(rgb)

    @property
    def rgb_color(self) -> tuple[int, int, int] | None:
        """The colour as the device reports it."""
        return self._rgb

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Switch on, optionally with a brightness and/or colour (one merged write)."""
        if self._plain:
            await self.async_write_value(True)
            return
        changes: dict[str, Any] = {}
        if self._on_field is not None:
            changes[self._on_field] = True
        brightness: int | None = kwargs.get(ATTR_BRIGHTNESS)
        rgb: tuple[int, int, int] | None = kwargs.get(ATTR_RGB_COLOR)
        if self._brightness_field is not None:
            if brightness is not None:
                changes[self._brightness_field] = self._scale_brightness(brightness)
            elif self._on_field is None and not self.is_on:
                changes[self._brightness_field] = self._scale_brightness(255)
        if self._rgb_fields is not None:
            if self._brightness_field is None:
                color = self._rgb_for_brightness(rgb, brightness)
            elif rgb is None and not any(self._rgb or (0, 0, 0)):
                color = WHITE  # black at any brightness is still dark
            else:
                color = rgb
            if color is not None:
                changes.update(zip(self._rgb_fields, color, strict=True))
        await self.async_write_fields(self.spec.path, changes)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Switch off (on field false, boolean false, or zero brightness/colour)."""
        if self._plain:
            await self.async_write_value(False)
            return
        changes: dict[str, Any] = {}
        if self._on_field is not None:
            changes[self._on_field] = False
        elif self._brightness_field is not None:
            changes[self._brightness_field] = 0
        elif self._rgb_fields is not None:
            changes.update(dict.fromkeys(self._rgb_fields, 0))
        await self.async_write_fields(self.spec.path, changes)

    def _scale_brightness(self, brightness: int) -> int:
        return round(brightness * self._brightness_max / 255)

    def _rgb_for_brightness(
        self, rgb: tuple[int, int, int] | None, brightness: int | None
    ) -> tuple[int, int, int] | None:
        """Colour for a light without a brightness field: brightness scales the channels."""
        if rgb is None and brightness is None:
            if self.is_on:
                return None
            return WHITE
        base = rgb or self._rgb or WHITE
        if not any(base):
            base = WHITE
        if brightness is None and rgb is not None and self.is_on:
            brightness = self.brightness  # a new colour keeps the current brightness
        if brightness is None:
            return base
        peak = max(base)
        return (
            round(base[0] * brightness / peak),
            round(base[1] * brightness / peak),
            round(base[2] * brightness / peak),
        )
