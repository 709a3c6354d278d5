"""Pure rules: IOTMP resource descriptions -> Home Assistant entity descriptions.

No Home Assistant imports here (a test enforces it): every device class, unit and
state class is a plain string that is valid on both Home Assistant 2025.4 and
2026.x (a test checks each one against the installed Home Assistant).

Rules (``DESIGN.md`` "From resources to entities"; the open cases decided here):

* Names with a path segment starting with ``$`` are internal: no entities.
* ``fn`` 1 -> one ``button``. ``fn`` 2 -> controls for the input sample,
  ``fn`` 3 -> read-only entities for the output sample, ``fn`` 4 -> both.
  Any other or missing ``fn`` (0 container, 5 legacy stream, junk) -> nothing.
* Output number -> ``sensor``, state class ``measurement``, device class and unit
  guessed from the words of the name (see "Name guesses" below). Energy, gas and
  water get ``total_increasing`` (Energy dashboard); a name ending in a counter
  word (count, counter, total, pulses) gets ``total_increasing`` too, without a
  device class unless the class allows it ("energy_total").
* Output boolean -> ``binary_sensor`` (conservative device class from the name).
* Output string -> ``sensor`` without state class or unit.
* Output object -> one entity per field by the same rules, recursively; the name
  is "resource field" and the guess uses the field name. A generic field name
  ("value", "raw", "avg", "min", ...) falls back to the parent/resource name.
* Output null / missing sample (unknown type), bytes or anything odd -> ``sensor``
  without device class, unit or state class (the value is shown as is), so the
  user sees the resource and can set an override. ``value_type`` is "unknown".
* Output list -> ``sensor`` without state class, ``value_type`` "list": the
  integration shows it as compact JSON text (cut to the 255 characters a state
  may hold).
* Input boolean -> ``switch`` (device class ``outlet`` for plug/outlet/socket
  names, else ``switch``); a ``light`` with color mode ``onoff`` when a word of
  the name is lamp, light, bulb or led ("ledger" is not "led").
* Input number -> ``number``: brightness-like names (brightness, dim, level,
  pwm, duty, ...) 0-255 slider (wider when the sample is larger: 1023, 4095,
  65535); percent-like (percent, pct, volume, position, humidity) 0-100 slider
  with unit "%"; servo/angle 0-180 slider with unit "°"; temperature setpoints a
  box with device class ``temperature`` and "°C" (-50..150, "°F" -58..302 for
  Fahrenheit names); anything else a box from -1e6 to 1e6 (widened to hold the
  sample). Step 1 for an integer sample, else 0.1 (percent, temperature) or 0.01.
  A sample outside a preset range falls through to the next rule / the box.
* Input string -> ``text``. Input null / missing (unknown type) or list ->
  ``text``: any JSON can be typed; the integration sends text that parses as
  JSON as that JSON value, other text as a string (``value_type`` tells which).
* Input object with r, g, b (or red, green, blue) numbers -> ONE ``light`` with
  color mode ``rgb`` (brightness is part of RGB mode in Home Assistant);
  ``on_field`` is the first boolean of "on", "state", "power", "enabled"
  (else the light is on when any channel is above 0), ``brightness_field`` the
  number named "brightness", "bri", "dim", "dimmer" or "level" (exact names
  first), or such a name plus a percent word ("brightness_pct": then
  ``brightness_max`` is 100, else 255). RGB channels are 0-255.
  With on + brightness and no colour -> ``light`` with ``brightness``; with only
  an on boolean in a light-named resource -> ``light`` with ``onoff``.
  Remaining fields become their own controls. Nested objects follow the same
  rules (a nested {r,g,b} is a light too).
* Other input object -> one control per field by the input rules; a write of a
  field sends the whole merged object (the integration keeps the last input).
  An empty input object -> a ``button`` for ``fn`` 4 (runs the function), and
  nothing for ``fn`` 2.
* Writes of a ``button`` send no body.

Keys (stable ids within a device, part of the entity unique ids):

* ``"<resource>"`` for the whole value of a ``fn`` 1, 2 or 3 resource;
* ``"<resource>/<f1>.<f2>..."`` for a field of an object value;
* ``fn`` 4 puts the direction first in the field path: ``"<resource>/in"``,
  ``"<resource>/out"`` for whole values, ``"<resource>/in.<f1>..."`` and
  ``"<resource>/out.<f1>..."`` for fields (``path`` itself never holds the
  direction; ``direction`` does).
* Keys use the raw names (unchanged unicode, case and punctuation). Should two
  specs of one device still get the same key (a field named "a.b" next to a
  nested a -> b, a resource "x/y" next to field "y" of resource "x"),
  ``map_device`` suffixes the later ones (in sorted resource order) with
  ``"~2"``, ``"~3"``, ...; the same input always gives the same keys.

Overrides (``ResourceOverride``): looked up by entity key first, then by
resource name, field values merged (the key's values win). ``None`` keeps the
guess; an empty string clears the device class or unit. A platform that makes
no sense for the value (``valid_platforms``), a device class unknown for the
platform or a unit the device class does not allow is ignored; the reason is in
``MappingResult.notes`` (``map_resource_with_notes`` / ``map_device_with_notes``).

Name guesses: names are split into words on ``_ - / . :`` spaces, any other
non-alphanumeric character and camelCase ("airQuality" -> air, quality); a word
matches a rule only as a whole word (optionally with trailing digits: "temp1"),
or two/three adjacent words joined ("pm2_5" -> pm25, "light_level"). Words are
read from the end ("battery_voltage" is a voltage, "water_temperature" a
temperature). Weak words (current, water, gas, signal, flow, wind, soil, ...)
only count when nothing but neutral words follow ("current_state" is no current,
"gas_resistance" no gas). Unit words refine the unit ("temp_f" -> °F,
"bat_mv" -> mV, "power_kw" -> kW); a percent word with a class that has no "%"
drops the class.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, Protocol

from iotmp.protocol.message import ABSENT

__all__ = [
    "BINARY_SENSOR_DEVICE_CLASSES",
    "BUTTON_DEVICE_CLASSES",
    "DIRECTION_IN",
    "DIRECTION_OUT",
    "FIRMWARE_PROPERTIES",
    "NUMBER_DEVICE_CLASSES",
    "NUMBER_DEVICE_CLASS_UNITS",
    "PLATFORMS",
    "SENSOR_DEVICE_CLASSES",
    "SENSOR_DEVICE_CLASS_UNITS",
    "SWITCH_DEVICE_CLASSES",
    "EntitySpec",
    "LightSpec",
    "MappingResult",
    "NumberSpec",
    "ResourceInfoLike",
    "ResourceOverride",
    "device_classes_for",
    "firmware_version",
    "is_internal",
    "map_device",
    "map_device_with_notes",
    "map_resource",
    "map_resource_with_notes",
    "prettify",
    "units_for",
    "valid_platforms",
]

# --------------------------------------------------------------------------- model

DIRECTION_IN: Final = "in"
DIRECTION_OUT: Final = "out"

SENSOR: Final = "sensor"
BINARY_SENSOR: Final = "binary_sensor"
SWITCH: Final = "switch"
LIGHT: Final = "light"
NUMBER: Final = "number"
TEXT: Final = "text"
BUTTON: Final = "button"
PLATFORMS: Final = (SENSOR, BINARY_SENSOR, SWITCH, LIGHT, NUMBER, TEXT, BUTTON)

MEASUREMENT: Final = "measurement"
TOTAL_INCREASING: Final = "total_increasing"


class ValueType(StrEnum):
    """What the sample told about the value a spec reads or writes (a spec's ``value_type``)."""

    BOOL = "bool"
    NUMBER = "number"
    STRING = "string"
    OBJECT = "object"
    LIST = "list"
    UNKNOWN = "unknown"


MAX_SPECS_PER_RESOURCE: Final = 256
"""Fields past this many (depth first) are left out, with a note."""


class ResourceInfoLike(Protocol):
    """What the mapping reads of a resource (``client.models.ResourceInfo`` fits)."""

    @property
    def name(self) -> str:
        """Resource name as the server knows it ("a/b" for legacy nesting)."""

    @property
    def fn(self) -> int:
        """Function type: 1 run, 2 input, 3 output, 4 input and output."""

    @property
    def sample_in(self) -> Any:
        """Current input sample, ``ABSENT`` when missing."""

    @property
    def sample_out(self) -> Any:
        """Current output sample, ``ABSENT`` when missing."""


@dataclass(frozen=True, slots=True)
class NumberSpec:
    """Range of a ``number`` entity."""

    min: float
    max: float
    step: float
    mode: str  # "box" | "slider"


@dataclass(frozen=True, slots=True)
class LightSpec:
    """How a ``light`` maps onto the resource value at ``EntitySpec.path``.

    ``on_field`` is None when the value itself is the on/off boolean
    (``color_modes`` {"onoff"}) or when an RGB light has no on field (it is on
    while any channel is above 0). Fields are the raw keys of the value.
    """

    color_modes: frozenset[str]
    on_field: str | None = None
    brightness_field: str | None = None
    rgb_fields: tuple[str, str, str] | None = None
    brightness_max: int = 255


@dataclass(frozen=True, slots=True)
class ResourceOverride:
    """User choice from the options flow; ``None`` keeps the guess, "" clears."""

    platform: str | None = None
    device_class: str | None = None
    unit: str | None = None
    number_min: float | None = None
    number_max: float | None = None
    number_step: float | None = None
    number_mode: str | None = None
    """Range, step and "slider"/"box" of a ``number`` (None keeps the guess)."""


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """One entity to create for a resource (see the module docstring)."""

    key: str
    platform: str
    resource: str
    path: tuple[str, ...]
    direction: str
    name: str
    device_class: str | None
    unit: str | None
    state_class: str | None
    number: NumberSpec | None
    light: LightSpec | None
    fn: int
    value_type: str = ValueType.UNKNOWN
    """"bool" | "number" | "string" | "object" | "list" | "unknown" (from the sample)."""
    entity_category: str | None = None
    """"diagnostic" for signal strength, uptime and the like, else None."""
    icon: str | None = None
    """An ``mdi:`` icon from the name when no device class gives one, else None."""


@dataclass(frozen=True, slots=True)
class MappingResult:
    """Specs plus human-readable notes (skipped parts, ignored overrides)."""

    specs: list[EntitySpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------ HA-valid string sets
# Only values valid on both Home Assistant 2025.4 and 2026.x. The micro sign in
# "µg/m³" is U+00B5: 2025.4 only accepts that one, 2026.x maps it to U+03BC itself
# (``sensor.const.AMBIGUOUS_UNITS``).

UG_M3: Final = "\u00b5g/m\u00b3"
_UG_M3_GREEK: Final = "\u03bcg/m\u00b3"

_PRESSURE_UNITS = frozenset({"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"})
_ENERGY_UNITS = frozenset(
    {"Wh", "kWh", "MWh", "GWh", "TWh", "mWh", "J", "kJ", "MJ", "GJ", "cal", "kcal", "Mcal", "Gcal"}
)
_SPEED_UNITS = frozenset({"m/s", "km/h", "mph", "ft/s", "kn", "mm/s", "in/s", "Beaufort"})

SENSOR_DEVICE_CLASS_UNITS: Final[Mapping[str, frozenset[str | None]]] = {
    "apparent_power": frozenset({"VA"}),
    "aqi": frozenset({None}),
    "atmospheric_pressure": _PRESSURE_UNITS,
    "battery": frozenset({"%"}),
    "carbon_dioxide": frozenset({"ppm"}),
    "carbon_monoxide": frozenset({"ppm"}),
    "current": frozenset({"A", "mA"}),
    "distance": frozenset({"mm", "cm", "m", "km", "in", "ft", "yd", "mi"}),
    "duration": frozenset({"d", "h", "min", "s", "ms"}),
    "energy": _ENERGY_UNITS,
    "frequency": frozenset({"Hz", "kHz", "MHz", "GHz"}),
    "gas": frozenset({"m³", "ft³", "CCF"}),
    "humidity": frozenset({"%"}),
    "illuminance": frozenset({"lx"}),
    "irradiance": frozenset({"W/m²"}),
    "moisture": frozenset({"%"}),
    "ph": frozenset({None}),
    "pm1": frozenset({UG_M3}),
    "pm10": frozenset({UG_M3}),
    "pm25": frozenset({UG_M3}),
    "power": frozenset({"W", "kW", "mW", "MW", "GW", "TW"}),
    "power_factor": frozenset({"%", None}),
    "pressure": _PRESSURE_UNITS,
    "signal_strength": frozenset({"dB", "dBm"}),
    "sound_pressure": frozenset({"dB", "dBA"}),
    "speed": _SPEED_UNITS,
    "temperature": frozenset({"°C", "°F", "K"}),
    "volatile_organic_compounds_parts": frozenset({"ppb", "ppm"}),
    "voltage": frozenset({"V", "mV", "kV", "MV"}),
    "volume": frozenset({"L", "mL", "m³", "ft³", "CCF", "gal", "fl. oz."}),
    "volume_flow_rate": frozenset({"L/min", "m³/h", "gal/min", "ft³/min", "mL/s"}),
    "water": frozenset({"L", "m³", "gal", "ft³", "CCF"}),
    "weight": frozenset({"g", "kg", "mg", "lb", "oz", "st"}),
    "wind_speed": frozenset({"m/s", "km/h", "mph", "ft/s", "kn", "Beaufort"}),
}
"""Sensor device classes this module knows, with the units valid on both versions."""

SENSOR_DEVICE_CLASSES: Final = tuple(sorted(SENSOR_DEVICE_CLASS_UNITS))

_TOTAL_CLASSES: Final = frozenset({"energy", "gas", "water", "volume"})
"""Sensor classes whose state class must be total/total_increasing."""
_ANY_STATE_CLASS: Final = frozenset({"distance", "duration", "weight"})
"""Sensor classes that accept measurement and total_increasing."""

BINARY_SENSOR_DEVICE_CLASSES: Final = (
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
    "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
    "smoke", "sound", "tamper", "update", "vibration", "window",
)  # fmt: skip
SWITCH_DEVICE_CLASSES: Final = ("outlet", "switch")
BUTTON_DEVICE_CLASSES: Final = ("identify", "restart", "update")
NUMBER_DEVICE_CLASS_UNITS: Final[Mapping[str, frozenset[str | None]]] = {
    key: units
    for key, units in SENSOR_DEVICE_CLASS_UNITS.items()
    if key not in {"duration", "pm1", "pm10", "pm25"}  # no sane number settings
}
NUMBER_DEVICE_CLASSES: Final = tuple(sorted(NUMBER_DEVICE_CLASS_UNITS))

_DEFAULT_UNIT: Final[Mapping[str, str | None]] = {
    "apparent_power": "VA",
    "aqi": None,
    "atmospheric_pressure": "hPa",
    "battery": "%",
    "carbon_dioxide": "ppm",
    "carbon_monoxide": "ppm",
    "current": "A",
    "distance": "cm",
    "duration": "s",
    "energy": "kWh",
    "frequency": "Hz",
    "gas": "m³",
    "humidity": "%",
    "illuminance": "lx",
    "irradiance": "W/m²",
    "moisture": "%",
    "ph": None,
    "pm1": UG_M3,
    "pm10": UG_M3,
    "pm25": UG_M3,
    "power": "W",
    "power_factor": None,
    "pressure": "hPa",
    "signal_strength": "dBm",
    "sound_pressure": "dB",
    "speed": "m/s",
    "temperature": "°C",
    "volatile_organic_compounds_parts": "ppb",
    "voltage": "V",
    "volume": "L",
    "volume_flow_rate": "L/min",
    "water": "L",
    "weight": "kg",
    "wind_speed": "m/s",
}


def device_classes_for(platform: str) -> list[str]:
    """Device classes the options flow may offer for ``platform`` (valid on both HA)."""
    table: Mapping[str, Sequence[str]] = {
        SENSOR: SENSOR_DEVICE_CLASSES,
        BINARY_SENSOR: BINARY_SENSOR_DEVICE_CLASSES,
        SWITCH: SWITCH_DEVICE_CLASSES,
        BUTTON: BUTTON_DEVICE_CLASSES,
        NUMBER: NUMBER_DEVICE_CLASSES,
    }
    return list(table.get(platform, ()))


def units_for(platform: str, device_class: str | None) -> list[str] | None:
    """Units allowed for ``device_class`` on ``platform``; None = any unit (or no class).

    An empty list means the platform takes no unit at all.
    """
    if platform not in {SENSOR, NUMBER}:
        return []
    if device_class is None:
        return None
    table = SENSOR_DEVICE_CLASS_UNITS if platform == SENSOR else NUMBER_DEVICE_CLASS_UNITS
    units = table.get(device_class)
    if units is None:
        return None
    return sorted(unit for unit in units if unit is not None)


def _default_state_class(device_class: str | None) -> str:
    return TOTAL_INCREASING if device_class in _TOTAL_CLASSES else MEASUREMENT


def _allows_total(device_class: str | None) -> bool:
    return device_class is None or device_class in _TOTAL_CLASSES | _ANY_STATE_CLASS


# --------------------------------------------------------------------------- words

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPLIT = re.compile(r"[\W_]+")
_DIGITS_TAIL = re.compile(r"^(.*?[^\d])\d+$")

_ACRONYMS: Final[Mapping[str, str]] = {
    "ac": "AC", "adc": "ADC", "aqi": "AQI", "co2": "CO2", "cpu": "CPU", "dc": "DC",
    "dht": "DHT", "eco2": "eCO2", "gpio": "GPIO", "hvac": "HVAC", "iaq": "IAQ", "id": "ID",
    "ip": "IP", "ir": "IR", "led": "LED", "leds": "LEDs", "ota": "OTA", "ph": "pH",
    "pir": "PIR", "pm1": "PM1", "pm10": "PM10", "pm25": "PM2.5", "pwm": "PWM", "rgb": "RGB",
    "rgbw": "RGBW", "rssi": "RSSI", "tvoc": "TVOC", "usb": "USB", "uv": "UV", "voc": "VOC",
    "wifi": "Wi-Fi",
}  # fmt: skip


def _raw_words(name: str) -> list[str]:
    words: list[str] = []
    for part in _SPLIT.split(name):
        if part:
            words.extend(piece for piece in _CAMEL.split(part) if piece)
    return words


def _tokens(name: str) -> list[str]:
    """Lower-case words of a name, for matching."""
    return [word.lower() for word in _raw_words(name)]


_PM25_SPELLINGS = re.compile(r"(?i)(?<![a-z])pm[_\-. ]?2[_\-. ]5(?!\d)")


def _pretty_parts(name: str) -> list[str]:
    """Display words of a name, without sentence-case capitalisation."""
    out: list[str] = []
    for word in _raw_words(_PM25_SPELLINGS.sub("pm25", name)):
        lower = word.lower()
        if lower in _ACRONYMS:
            out.append(_ACRONYMS[lower])
        elif len(word) > 1 and word[0].isupper() and word[1:].islower():
            out.append(lower)
        else:
            out.append(word)
    return out


def prettify(name: str) -> str:
    """Human name from a raw name: "GPIO_16" -> "GPIO 16", "rgb_lamp" -> "RGB lamp".

    Separators become spaces, camelCase is split, Title-case words are lowered
    (sentence case), all-caps words, known acronyms and other scripts are kept.
    Returns "" when the name has no letters or digits.
    """
    out = _pretty_parts(name)
    if not out:
        return ""
    first = out[0]
    if first[:1].islower() and first not in _ACRONYMS.values():
        out[0] = first[:1].upper() + first[1:]
    return " ".join(out)


def _candidates(tokens: Sequence[str], index: int) -> list[str]:
    """Forms to look up for the word at ``index``: joined with 1-2 previous words, itself."""
    word = tokens[index]
    found: list[str] = []
    if index >= 2:
        found.append(tokens[index - 2] + tokens[index - 1] + word)
    if index >= 1:
        found.append(tokens[index - 1] + word)
    found.append(word)
    match = _DIGITS_TAIL.match(word)
    if match and match.group(1) not in found:
        found.append(match.group(1))
    return found


# Words that may follow a weak word without changing what it names.
_FOLLOW_SENSOR: Final = frozenset({
    "value", "val", "values", "reading", "readings", "sensor", "raw", "avg", "average",
    "mean", "min", "max", "minimum", "maximum", "now", "actual", "today", "daily", "total",
    "meter", "usage", "consumption", "consumed", "volume", "vol", "strength", "rate", "data",
    "last", "measured", "count", "counter", "pulses",
})  # fmt: skip
_FOLLOW_BINARY: Final = frozenset({
    "sensor", "state", "status", "detected", "detector", "detection", "alarm", "active",
    "on", "value",
})  # fmt: skip
_GENERIC_FIELD: Final = frozenset({
    "value", "val", "reading", "raw", "avg", "average", "mean", "min", "max", "now", "last",
    "actual", "data", "out", "output", "in", "input", "v", "x", "current", "result", "res",
})  # fmt: skip
_COUNTER: Final = frozenset({"count", "counter", "counts", "total", "pulses", "impulses"})
_PERCENT: Final = frozenset({"percent", "pct", "percentage", "perc"})


@dataclass(frozen=True, slots=True)
class _Guess:
    device_class: str | None
    unit: str | None = None  # None: the class default
    weak: bool = False
    veto: frozenset[str] = frozenset()
    state_class: str | None = None  # None: the class default
    category: str | None = None


_DIAGNOSTIC: Final = "diagnostic"


def _g(
    device_class: str | None,
    unit: str | None = None,
    *,
    weak: bool = False,
    veto: frozenset[str] = frozenset(),
    state_class: str | None = None,
    category: str | None = None,
) -> _Guess:
    return _Guess(device_class, unit, weak, veto, state_class, category)


_SENSOR_WORDS: Final[Mapping[str, _Guess]] = {
    # temperature
    "temperature": _g("temperature"), "temp": _g("temperature"),
    "temperatura": _g("temperature"), "celsius": _g("temperature", "°C"),
    "fahrenheit": _g("temperature", "°F"), "dewpoint": _g("temperature"),
    "heatindex": _g("temperature"),
    # humidity / moisture
    "humidity": _g("humidity"), "hum": _g("humidity"), "humid": _g("humidity"),
    "rh": _g("humidity", weak=True), "absolutehumidity": _g(None),
    "moisture": _g("moisture"), "soil": _g("moisture", weak=True),
    # pressure
    "pressure": _g("pressure"), "press": _g("pressure"), "baro": _g("pressure"),
    "barometer": _g("pressure"), "barometric": _g("pressure"),
    "hpa": _g("pressure", "hPa", weak=True), "mbar": _g("pressure", "mbar", weak=True),
    "psi": _g("pressure", "psi", weak=True), "kpa": _g("pressure", "kPa", weak=True),
    # electricity
    "voltage": _g("voltage"), "volt": _g("voltage"), "volts": _g("voltage"),
    "vcc": _g("voltage"), "vdd": _g("voltage"), "vbat": _g("voltage"),
    "vbatt": _g("voltage"), "millivolt": _g("voltage", "mV"),
    "millivolts": _g("voltage", "mV"), "mv": _g("voltage", "mV", weak=True),
    "v": _g("voltage", "V", weak=True),
    "current": _g("current", weak=True), "amps": _g("current"), "amp": _g("current"),
    "ampere": _g("current"), "amperes": _g("current"), "amperage": _g("current"),
    "milliamp": _g("current", "mA"), "milliamps": _g("current", "mA"),
    "ma": _g("current", "mA", weak=True),
    "power": _g("power"), "watt": _g("power"), "watts": _g("power"),
    "wattage": _g("power"), "kw": _g("power", "kW", weak=True),
    "kilowatt": _g("power", "kW"), "kilowatts": _g("power", "kW"),
    "apparentpower": _g("apparent_power"), "powerfactor": _g("power_factor"),
    "cosphi": _g("power_factor"), "pf": _g("power_factor", weak=True),
    "energy": _g("energy"), "kwh": _g("energy", "kWh"), "wh": _g("energy", "Wh", weak=True),
    "frequency": _g("frequency"), "freq": _g("frequency"), "hz": _g("frequency", "Hz"),
    "khz": _g("frequency", "kHz"), "mhz": _g("frequency", "MHz"),
    # battery
    "battery": _g("battery"), "bat": _g("battery"), "batt": _g("battery"),
    "soc": _g("battery", weak=True),
    # light
    "illuminance": _g("illuminance"), "illumination": _g("illuminance"),
    "lux": _g("illuminance"), "lx": _g("illuminance"), "luminosity": _g("illuminance"),
    "lightlevel": _g("illuminance"), "ambientlight": _g("illuminance"),
    "irradiance": _g("irradiance"), "solarradiation": _g("irradiance"),
    # air
    "co2": _g("carbon_dioxide"), "eco2": _g("carbon_dioxide"),
    "carbondioxide": _g("carbon_dioxide"), "carbonmonoxide": _g("carbon_monoxide"),
    "co": _g("carbon_monoxide", weak=True), "tvoc": _g("volatile_organic_compounds_parts"),
    "voc": _g("volatile_organic_compounds_parts"), "pm25": _g("pm25"),
    "pm10": _g("pm10"), "pm1": _g("pm1"), "aqi": _g("aqi"), "iaq": _g("aqi"),
    "ph": _g("ph", weak=True),
    # radio
    "rssi": _g("signal_strength", category=_DIAGNOSTIC),
    "dbm": _g("signal_strength", "dBm", category=_DIAGNOSTIC),
    "signal": _g("signal_strength", weak=True, category=_DIAGNOSTIC),
    # motion, size
    "distance": _g("distance"), "dist": _g("distance"),
    "speed": _g("speed", veto=frozenset({"fan", "motor", "pump", "rpm", "servo", "stepper"})),
    "velocity": _g("speed"), "windspeed": _g("wind_speed"),
    "wind": _g("wind_speed", weak=True), "weight": _g("weight"), "mass": _g("weight"),
    "kg": _g("weight", "kg", weak=True),
    # volumes
    "gas": _g("gas", weak=True), "water": _g("water", weak=True),
    "flow": _g("volume_flow_rate", weak=True), "flowrate": _g("volume_flow_rate"),
    # sound
    "noise": _g("sound_pressure"), "loudness": _g("sound_pressure"),
    "sound": _g("sound_pressure", weak=True),
    # time
    "uptime": _g("duration", "s", state_class=TOTAL_INCREASING, category=_DIAGNOSTIC),
    "millis": _g("duration", "ms", state_class=TOTAL_INCREASING, category=_DIAGNOSTIC),
    # units without a device class
    "rpm": _g(None, "rpm", weak=True),
}  # fmt: skip

# Unit words per device class ("temp_f" -> °F). Checked on every word of the name.
_UNIT_WORDS: Final[dict[str, Mapping[str, str]]] = {
    "temperature": {
        "c": "°C", "degc": "°C", "celsius": "°C", "f": "°F", "degf": "°F",
        "fahrenheit": "°F", "k": "K", "kelvin": "K",
    },
    "voltage": {"v": "V", "volt": "V", "volts": "V", "mv": "mV", "millivolt": "mV",
                "millivolts": "mV", "kv": "kV"},
    "current": {"a": "A", "amps": "A", "ma": "mA", "milliamp": "mA", "milliamps": "mA"},
    "power": {"w": "W", "watt": "W", "watts": "W", "kw": "kW", "kilowatt": "kW",
              "kilowatts": "kW"},
    "energy": {"wh": "Wh", "kwh": "kWh", "j": "J", "kj": "kJ"},
    "pressure": {"pa": "Pa", "hpa": "hPa", "kpa": "kPa", "bar": "bar", "mbar": "mbar",
                 "psi": "psi", "mmhg": "mmHg", "inhg": "inHg"},
    "frequency": {"hz": "Hz", "khz": "kHz", "mhz": "MHz", "ghz": "GHz"},
    "distance": {"mm": "mm", "cm": "cm", "m": "m", "km": "km", "ft": "ft", "yd": "yd"},
    "speed": {"kmh": "km/h", "kph": "km/h", "mph": "mph", "ms": "m/s", "mps": "m/s",
              "kn": "kn", "knots": "kn"},
    "wind_speed": {"kmh": "km/h", "kph": "km/h", "mph": "mph", "ms": "m/s", "mps": "m/s",
                   "kn": "kn", "knots": "kn"},
    "water": {"l": "L", "liter": "L", "liters": "L", "litre": "L", "litres": "L",
              "m3": "m³", "gal": "gal", "gallons": "gal"},
    "gas": {"m3": "m³", "ft3": "ft³"},
    "weight": {"g": "g", "grams": "g", "kg": "kg", "mg": "mg", "lb": "lb", "lbs": "lb",
               "oz": "oz"},
    "signal_strength": {"db": "dB", "dbm": "dBm"},
    "duration": {"ms": "ms", "s": "s", "sec": "s", "seconds": "s", "min": "min",
                 "minutes": "min", "h": "h", "hours": "h", "d": "d", "days": "d"},
    "volume_flow_rate": {"lmin": "L/min", "m3h": "m³/h"},
}  # fmt: skip
_UNIT_WORDS["atmospheric_pressure"] = _UNIT_WORDS["pressure"]

_BINARY_WORDS: Final[Mapping[str, _Guess]] = {
    "motion": _g("motion"), "pir": _g("motion"), "movement": _g("motion"),
    "door": _g("door"), "garagedoor": _g("garage_door"), "garage": _g("garage_door"),
    "window": _g("window"), "occupancy": _g("occupancy"), "occupied": _g("occupancy"),
    "presence": _g("presence"), "present": _g("presence"),
    "leak": _g("moisture"), "leakage": _g("moisture"), "flood": _g("moisture"),
    "moisture": _g("moisture"), "wet": _g("moisture"), "rain": _g("moisture"),
    "water": _g("moisture", weak=True), "smoke": _g("smoke"), "gas": _g("gas"),
    "co": _g("carbon_monoxide", weak=True), "carbonmonoxide": _g("carbon_monoxide"),
    "vibration": _g("vibration"), "tamper": _g("tamper"),
    "problem": _g("problem"), "fault": _g("problem"), "error": _g("problem"),
    "failure": _g("problem"), "connected": _g("connectivity", category=_DIAGNOSTIC),
    "connectivity": _g("connectivity", category=_DIAGNOSTIC),
    "online": _g("connectivity", category=_DIAGNOSTIC),
    "plug": _g("plug"), "power": _g("power"), "running": _g("running"),
    "heat": _g("heat"), "overheat": _g("heat"), "cold": _g("cold"), "frost": _g("cold"),
    "freeze": _g("cold"), "lowbat": _g("battery"), "charging": _g("battery_charging"),
    "sound": _g("sound"), "noise": _g("sound"),
}  # fmt: skip
_BINARY_LOW: Final[Mapping[str, _Guess]] = {
    "open": _g("opening"), "opened": _g("opening"), "opening": _g("opening"),
    "contact": _g("opening"), "reed": _g("opening"),
    "battery": _g("battery"), "bat": _g("battery"), "batt": _g("battery"),
}  # fmt: skip

_LIGHT_WORDS: Final = frozenset(
    {"lamp", "lamps", "light", "lights", "lighting", "bulb", "bulbs", "led", "leds"}
)
_OUTLET_WORDS: Final = frozenset({"plug", "plugs", "outlet", "outlets", "socket", "sockets"})
_BUTTON_WORDS: Final[Mapping[str, str]] = {
    "reboot": "restart", "restart": "restart", "identify": "identify",
}  # fmt: skip

_NUM_TEMPERATURE: Final = frozenset(
    {"temperature", "temp", "setpoint", "thermostat", "celsius", "fahrenheit"}
)
_NUM_PERCENT: Final = frozenset(
    {"percent", "pct", "percentage", "perc", "volume", "position", "pos", "humidity"}
)
_NUM_BRIGHTNESS: Final = frozenset(
    {"brightness", "bright", "bri", "dim", "dimmer", "dimming", "pwm", "duty", "level",
     "intensity"}
)  # fmt: skip
_NUM_ANGLE: Final = frozenset({"servo", "angle", "degrees", "deg"})

_RGB_KEYS: Final = (("r", "g", "b"), ("red", "green", "blue"))
_ON_KEYS: Final = ("on", "state", "power", "enabled")
_BRIGHTNESS_KEYS: Final = ("brightness", "bri", "dim", "dimmer", "level")


def _scan(
    tokens: Sequence[str],
    table: Mapping[str, _Guess],
    follow: frozenset[str],
    *,
    end: int | None = None,
) -> _Guess | None:
    """Rule of the last word (before ``end``) that names something (module docstring)."""
    stop = len(tokens) if end is None else end
    for index in range(stop - 1, -1, -1):
        for cand in _candidates(tokens, index):
            guess = table.get(cand)
            if guess is None:
                continue
            if guess.veto and any(token in guess.veto for token in tokens):
                continue
            if guess.weak and not all(
                token in follow or token.isdigit() or _is_unit_word(token)
                for token in tokens[index + 1 :]
            ):
                continue
            return guess
    return None


def _is_unit_word(token: str) -> bool:
    return any(token in words for words in _UNIT_WORDS.values())


@dataclass(frozen=True, slots=True)
class _SensorGuess:
    device_class: str | None
    unit: str | None
    state_class: str | None
    category: str | None = None


def _guess_number_sensor(tokens: Sequence[str]) -> _SensorGuess:
    """Device class, unit and state class of a numeric output from its name words."""
    last = max((i for i, token in enumerate(tokens) if not token.isdigit()), default=-1)
    counter = last >= 0 and tokens[last] in _COUNTER
    guess = _scan(tokens, _SENSOR_WORDS, _FOLLOW_SENSOR, end=last if counter else None)
    percent = any(token in _PERCENT for token in tokens)
    if guess is None:
        if counter:
            return _SensorGuess(None, None, TOTAL_INCREASING)
        return _SensorGuess(None, "%" if percent else None, MEASUREMENT)
    device_class = guess.device_class
    if device_class is None:
        return _SensorGuess(None, guess.unit, MEASUREMENT, guess.category)
    unit = guess.unit or _DEFAULT_UNIT.get(device_class)
    allowed = SENSOR_DEVICE_CLASS_UNITS.get(device_class, frozenset({unit}))
    hints = _UNIT_WORDS.get(device_class, {})
    for token in tokens:
        hint = hints.get(token)
        if hint is not None and hint in allowed:
            unit = hint
            break
    if percent and "%" not in allowed:
        return _SensorGuess(None, "%", MEASUREMENT)
    state_class = guess.state_class or _default_state_class(device_class)
    if counter:
        if not _allows_total(device_class):
            return _SensorGuess(None, None, TOTAL_INCREASING)
        state_class = TOTAL_INCREASING
    return _SensorGuess(device_class, unit, state_class, guess.category)


def _guess_binary(tokens: Sequence[str]) -> tuple[str | None, str | None]:
    guess = _scan(tokens, _BINARY_WORDS, _FOLLOW_BINARY) or _scan(
        tokens, _BINARY_LOW, _FOLLOW_BINARY
    )
    if guess is None:
        return None, None
    return guess.device_class, guess.category


def _is_generic(tokens: Sequence[str]) -> bool:
    return all(token in _GENERIC_FIELD or token.isdigit() for token in tokens)


def _guess_tokens(resource: str, path: Sequence[str]) -> list[str]:
    """Words that name a value: the last field, or its parents when it is generic."""
    names = [resource, *path]
    for name in reversed(names):
        tokens = _tokens(name)
        if tokens and not _is_generic(tokens):
            return tokens
    return _tokens(names[-1])


def _all_tokens(resource: str, path: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for name in (resource, *path):
        for token in _tokens(name):
            found.add(token)
            # "led1", "lamp2": the same word with trailing digits, as for sensor words.
            found.add(token.rstrip("0123456789") or token)
    return found


# ------------------------------------------------------------------------- values


def _kind(value: Any) -> str:
    if value is ABSENT or value is None:
        return ValueType.UNKNOWN
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, int | float):
        return ValueType.NUMBER
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, Mapping):
        return ValueType.OBJECT
    if isinstance(value, list | tuple):
        return ValueType.LIST
    return ValueType.UNKNOWN


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


# ------------------------------------------------------------------------ builder


@dataclass(slots=True)
class _Builder:
    """Collects the specs of one resource."""

    resource: str
    fn: int
    side_prefix: bool  # fn 4: the direction goes first in the key's field path
    specs: list[EntitySpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    truncated: bool = False
    hints: Mapping[str, Any] = field(default_factory=dict)
    """The resource's description entry (``min``/``max``/``step`` of a number)."""

    def key(self, direction: str, path: Sequence[str]) -> str:
        parts = [direction, *path] if self.side_prefix else list(path)
        return f"{self.resource}/{'.'.join(parts)}" if parts else self.resource

    def name(self, path: Sequence[str]) -> str:
        words = [prettify(self.resource) or self.resource]
        for part in path:
            words.append(" ".join(_pretty_parts(part)) or part)
        return " ".join(word for word in words if word) or "Value"

    def add(self, spec: EntitySpec) -> None:
        if len(self.specs) >= MAX_SPECS_PER_RESOURCE:
            if not self.truncated:
                self.truncated = True
                self.notes.append(
                    f"{self.resource}: more than {MAX_SPECS_PER_RESOURCE} values; "
                    "the rest are left out"
                )
            return
        self.specs.append(spec)

    def spec(
        self,
        *,
        platform: str,
        direction: str,
        path: Sequence[str],
        value_type: str,
        device_class: str | None = None,
        unit: str | None = None,
        state_class: str | None = None,
        number: NumberSpec | None = None,
        light: LightSpec | None = None,
        entity_category: str | None = None,
    ) -> EntitySpec:
        return EntitySpec(
            key=self.key(direction, path),
            platform=platform,
            resource=self.resource,
            path=tuple(path),
            direction=direction,
            name=self.name(path),
            device_class=device_class,
            unit=unit,
            state_class=state_class,
            number=number,
            light=light,
            fn=self.fn,
            value_type=value_type,
            entity_category=entity_category,
            icon=None if device_class is not None else _icon_for(self.resource, path),
        )

    # -- outputs ------------------------------------------------------------------

    def output(self, value: Any, path: tuple[str, ...]) -> None:
        kind = _kind(value)
        if kind == ValueType.OBJECT:
            if not value:
                self.notes.append(f"{self.key(DIRECTION_OUT, path)}: empty object, nothing to show")
            for child, child_value in value.items():
                if self.truncated:
                    return
                self.output(child_value, (*path, str(child)))
            return
        if kind == ValueType.NUMBER:
            guess = _guess_number_sensor(_guess_tokens(self.resource, path))
            self.add(
                self.spec(
                    platform=SENSOR, direction=DIRECTION_OUT, path=path, value_type=kind,
                    device_class=guess.device_class, unit=guess.unit,
                    # A function's output (fn 4) is a result, not a measurement.
                    state_class=None if self.fn == 4 else guess.state_class,
                    entity_category=guess.category,
                )
            )  # fmt: skip
        elif kind == ValueType.BOOL:
            device_class, category = _guess_binary(_guess_tokens(self.resource, path))
            self.add(
                self.spec(
                    platform=BINARY_SENSOR, direction=DIRECTION_OUT, path=path,
                    value_type=kind, device_class=device_class, entity_category=category,
                )
            )  # fmt: skip
        else:  # string, list, unknown: shown as is
            self.add(
                self.spec(platform=SENSOR, direction=DIRECTION_OUT, path=path, value_type=kind)
            )

    # -- inputs -------------------------------------------------------------------

    def input(self, value: Any, path: tuple[str, ...]) -> None:
        kind = _kind(value)
        if kind == ValueType.OBJECT:
            self.input_object(value, path)
        elif kind == ValueType.BOOL:
            self.input_bool(path)
        elif kind == ValueType.NUMBER:
            number, device_class, unit = _number_for(_guess_tokens(self.resource, path), value)
            if not path:
                number = _hinted_number(number, self.hints, value)
            self.add(
                self.spec(
                    platform=NUMBER, direction=DIRECTION_IN, path=path, value_type=kind,
                    device_class=device_class, unit=unit, number=number,
                )
            )  # fmt: skip
        else:  # string, list, unknown: any JSON can be typed
            self.add(self.spec(platform=TEXT, direction=DIRECTION_IN, path=path, value_type=kind))

    def input_bool(self, path: tuple[str, ...]) -> None:
        words = _all_tokens(self.resource, path)
        if words & _LIGHT_WORDS:
            self.add(
                self.spec(
                    platform=LIGHT, direction=DIRECTION_IN, path=path, value_type=ValueType.BOOL,
                    light=LightSpec(color_modes=frozenset({"onoff"})),
                )
            )  # fmt: skip
            return
        self.add(
            self.spec(
                platform=SWITCH, direction=DIRECTION_IN, path=path, value_type=ValueType.BOOL,
                device_class="outlet" if words & _OUTLET_WORDS else "switch",
            )
        )  # fmt: skip

    def input_object(self, value: Mapping[Any, Any], path: tuple[str, ...]) -> None:
        items = {str(key): item for key, item in value.items()}
        if not items:
            if not path and self.fn == 4:
                self.add(
                    self.spec(
                        platform=BUTTON,
                        direction=DIRECTION_IN,
                        path=path,
                        value_type=ValueType.OBJECT,
                    )
                )
            else:
                self.notes.append(f"{self.key(DIRECTION_IN, path)}: empty object, no control")
            return
        used = self.light_from_object(items, path)
        for child, child_value in items.items():
            if self.truncated:
                return
            if child not in used:
                self.input(child_value, (*path, child))

    def light_from_object(self, items: Mapping[str, Any], path: tuple[str, ...]) -> set[str]:
        """Add a light when the object looks like one; return the keys it uses."""
        by_lower: dict[str, str] = {}
        for key in items:
            by_lower.setdefault(key.lower(), key)
        rgb: tuple[str, str, str] | None = None
        for names in _RGB_KEYS:
            keys = [by_lower.get(name) for name in names]
            found = [key for key in keys if key is not None and _is_number(items[key])]
            if len(found) == 3:
                rgb = (found[0], found[1], found[2])
                break
        on_field = next(
            (
                by_lower[name]
                for name in _ON_KEYS
                if name in by_lower and isinstance(items[by_lower[name]], bool)
            ),
            None,
        )
        brightness_field = _brightness_key(items)
        if rgb is not None:
            modes = frozenset({"rgb"})
        elif on_field is not None and brightness_field is not None:
            modes = frozenset({"brightness"})
        elif on_field is not None and _all_tokens(self.resource, path) & _LIGHT_WORDS:
            modes = frozenset({"onoff"})
        else:
            return set()
        brightness_max = 255
        if brightness_field is not None and set(_tokens(brightness_field)) & _PERCENT:
            sample = _finite(items[brightness_field])
            brightness_max = 100 if sample is None or sample <= 100 else 255
        light = LightSpec(
            color_modes=modes,
            on_field=on_field,
            brightness_field=brightness_field if "onoff" not in modes else None,
            rgb_fields=rgb,
            brightness_max=brightness_max,
        )
        self.add(
            self.spec(
                platform=LIGHT, direction=DIRECTION_IN, path=path, value_type=ValueType.OBJECT,
                light=light,
            )
        )  # fmt: skip
        used = {key for key in (on_field, light.brightness_field) if key is not None}
        used.update(rgb or ())
        return used


def _brightness_key(items: Mapping[str, Any]) -> str | None:
    """Find the brightness field of a light-like object ("brightness", "dim", "bri_pct")."""
    best: tuple[tuple[int, int], str] | None = None
    for key, item in items.items():
        tokens = _tokens(key)
        if not _is_number(item) or not tokens or tokens[0] not in _BRIGHTNESS_KEYS:
            continue
        if len(tokens) > 2 or (len(tokens) == 2 and tokens[1] not in _PERCENT):
            continue
        rank = (len(tokens), _BRIGHTNESS_KEYS.index(tokens[0]))  # exact names first
        if best is None or rank < best[0]:
            best = (rank, key)
    return None if best is None else best[1]


_NUM_SPEED: Final = frozenset({"speed", "fan", "rate", "power"})
_NUM_HOUR: Final = frozenset({"hour", "hours", "hr", "hh"})
_NUM_MINUTE: Final = frozenset({"minute", "minutes", "min", "mm"})
_ICONS: Final[tuple[tuple[frozenset[str], str], ...]] = (
    (frozenset({"count", "counter", "counts", "tally", "clicks", "pulses"}), "mdi:counter"),
    (frozenset({"status", "state", "mode"}), "mdi:list-status"),
    (frozenset({"light", "lux", "luminosity", "ldr", "brightness"}), "mdi:brightness-6"),
    (frozenset({"fan", "speed", "rpm"}), "mdi:fan"),
    (frozenset({"hour", "hours", "minute", "schedule", "time", "timer"}), "mdi:clock-outline"),
    (frozenset({"level", "tank", "depth"}), "mdi:gauge"),
    (frozenset({"motion", "presence", "occupancy"}), "mdi:motion-sensor"),
    (frozenset({"door", "window"}), "mdi:door"),
    (frozenset({"gpio", "pin", "relay"}), "mdi:electric-switch"),
    (frozenset({"version", "firmware", "fw"}), "mdi:chip"),
    (frozenset({"ip", "mac", "ssid", "wifi"}), "mdi:wifi"),
    (frozenset({"error", "errors", "fault", "alarm"}), "mdi:alert-circle-outline"),
)  # fmt: skip


def _icon_for(resource: str, path: Sequence[str]) -> str | None:
    """Icon of an entity without a device class, from the words of its name."""
    words = _all_tokens(resource, path)
    for keys, icon in _ICONS:
        if words & keys:
            return icon
    return None


def _hinted_number(number: NumberSpec, hints: Mapping[str, Any], sample: Any) -> NumberSpec:
    """``min``/``max``/``step`` from the description (when sane) win over the guess."""
    low = _finite(hints.get("min"))
    high = _finite(hints.get("max"))
    step = _finite(hints.get("step"))
    if low is None or high is None or not low < high:
        return number
    value = _finite(sample)
    if value is not None and not low <= value <= high:
        return number  # the device's own value says the range is wrong
    if step is None or not 0 < step <= high - low:
        step = number.step
    mode = "slider" if (high - low) / step <= 1000 else "box"
    return NumberSpec(low, high, step, mode)


def _number_for(tokens: Sequence[str], sample: Any) -> tuple[NumberSpec, str | None, str | None]:
    """Range, device class and unit of a ``number`` from its name words and sample."""
    value = _finite(sample)
    integral = isinstance(sample, int) and not isinstance(sample, bool)
    words = set(tokens)
    if words & _NUM_PERCENT and (value is None or 0 <= value <= 100):
        device_class = "humidity" if "humidity" in words else None
        return NumberSpec(0.0, 100.0, 1.0 if integral else 0.1, "slider"), device_class, "%"
    if words & _NUM_TEMPERATURE:
        unit = "°F" if words & {"fahrenheit", "f", "degf"} else "°C"
        low, high = (-58.0, 302.0) if unit == "°F" else (-50.0, 150.0)
        if value is None or low <= value <= high:
            return NumberSpec(low, high, 1.0 if integral else 0.1, "box"), "temperature", unit
    if words & _NUM_BRIGHTNESS and (value is None or value >= 0):
        for top in (255.0, 1023.0, 4095.0, 65535.0):
            if value is None or value <= top:
                return NumberSpec(0.0, top, 1.0, "slider"), None, None
    if words & _NUM_ANGLE and (value is None or 0 <= value <= 360):
        top = 180.0 if value is None or value <= 180 else 360.0
        return NumberSpec(0.0, top, 1.0, "slider"), None, "°"
    if words & _NUM_HOUR and integral and (value is None or 0 <= value <= 23):
        return NumberSpec(0.0, 23.0, 1.0, "box"), None, "h"
    if words & _NUM_MINUTE and integral and (value is None or 0 <= value <= 59):
        return NumberSpec(0.0, 59.0, 1.0, "box"), None, "min"
    if words & _NUM_SPEED and (value is None or 0 <= value <= 100):
        return NumberSpec(0.0, 100.0, 1.0 if integral else 0.1, "slider"), None, None
    bound = 1_000_000.0
    while value is not None and abs(value) > bound and bound < 1e15:
        bound *= 10
    step = 1.0 if integral else 0.01
    return NumberSpec(-bound, bound, step, "box"), None, None


# ---------------------------------------------------------------------- overrides


def _spec_platforms(spec: EntitySpec) -> list[str]:
    """Platforms that make sense for the value behind ``spec``."""
    if spec.platform == BUTTON:
        return [BUTTON]
    if spec.direction == DIRECTION_OUT:
        return [SENSOR, BINARY_SENSOR] if spec.value_type == ValueType.BOOL else [SENSOR]
    if spec.value_type == ValueType.BOOL:
        return [SWITCH, LIGHT]
    if spec.value_type == ValueType.NUMBER:
        return [NUMBER]
    if spec.value_type == ValueType.STRING:
        return [TEXT]
    if spec.value_type == ValueType.OBJECT:
        return [spec.platform]
    return [SWITCH, NUMBER, TEXT]  # unknown or list: the user knows better


def _ordered(platforms: Iterable[str]) -> list[str]:
    found = set(platforms)
    return [platform for platform in PLATFORMS if platform in found]


def _unit_table(platform: str) -> Mapping[str, frozenset[str | None]]:
    return SENSOR_DEVICE_CLASS_UNITS if platform == SENSOR else NUMBER_DEVICE_CLASS_UNITS


def _retarget(spec: EntitySpec, platform: str) -> EntitySpec:
    """Re-make ``spec`` for another platform that fits its value."""
    blank = replace(
        spec, platform=platform, device_class=None, unit=None, state_class=None, number=None,
        light=None, entity_category=None,
    )  # fmt: skip
    if platform == SENSOR and spec.value_type == ValueType.NUMBER:
        return replace(blank, state_class=MEASUREMENT)
    if platform == SWITCH:
        return replace(blank, device_class="switch")
    if platform == LIGHT:
        return replace(blank, light=LightSpec(color_modes=frozenset({"onoff"})))
    if platform == NUMBER:
        return replace(blank, number=_number_for((), None)[0])
    return blank


def _override_platform(spec: EntitySpec, platform: str, notes: list[str]) -> EntitySpec:
    allowed = _spec_platforms(spec)
    if platform == spec.platform:
        return spec
    if platform in allowed:
        return _retarget(spec, platform)
    side = "input" if spec.direction == DIRECTION_IN else "output"
    notes.append(
        f"{spec.key}: platform {platform!r} does not fit a {spec.value_type} {side}; "
        f"possible: {', '.join(_ordered(allowed))}"
    )
    return spec


def _override_device_class(spec: EntitySpec, device_class: str, notes: list[str]) -> EntitySpec:
    if device_class == "":
        return replace(spec, device_class=None)
    if device_class not in device_classes_for(spec.platform):
        notes.append(f"{spec.key}: {device_class!r} is no {spec.platform} device class")
        return spec
    if spec.platform not in {SENSOR, NUMBER}:
        return replace(spec, device_class=device_class)
    if spec.platform == SENSOR and spec.value_type not in {ValueType.NUMBER, ValueType.UNKNOWN}:
        notes.append(
            f"{spec.key}: device class {device_class!r} needs a number, "
            f"the value is a {spec.value_type}"
        )
        return spec
    units = _unit_table(spec.platform)[device_class]
    unit = spec.unit if spec.unit in units else _DEFAULT_UNIT.get(device_class)
    state_class = spec.state_class
    if spec.platform == SENSOR:
        keep_total = state_class == TOTAL_INCREASING and _allows_total(device_class)
        state_class = TOTAL_INCREASING if keep_total else _default_state_class(device_class)
    return replace(spec, device_class=device_class, unit=unit, state_class=state_class)


def _override_unit(spec: EntitySpec, unit: str, notes: list[str]) -> EntitySpec:
    if spec.platform not in {SENSOR, NUMBER}:
        if unit:
            notes.append(f"{spec.key}: a {spec.platform} has no unit")
        return spec
    units = _unit_table(spec.platform).get(spec.device_class or "")
    if unit == "":
        if units is not None and None not in units:
            notes.append(f"{spec.key}: device class {spec.device_class!r} needs a unit")
            return spec
        return replace(spec, unit=None)
    if spec.platform == SENSOR and spec.value_type not in {ValueType.NUMBER, ValueType.UNKNOWN}:
        notes.append(f"{spec.key}: a unit needs a number, the value is a {spec.value_type}")
        return spec
    unit = UG_M3 if unit == _UG_M3_GREEK else unit
    if units is not None and unit not in units:
        possible = ", ".join(sorted(u for u in units if u is not None))
        notes.append(
            f"{spec.key}: unit {unit!r} does not fit device class {spec.device_class!r}; "
            f"possible: {possible}"
        )
        return spec
    if spec.platform == SENSOR and spec.state_class is None:
        spec = replace(spec, state_class=MEASUREMENT)
    return replace(spec, unit=unit)


def _apply_override(spec: EntitySpec, override: ResourceOverride, notes: list[str]) -> EntitySpec:
    if override.platform:
        spec = _override_platform(spec, override.platform, notes)
    if override.device_class is not None:
        spec = _override_device_class(spec, override.device_class, notes)
    if override.unit is not None:
        spec = _override_unit(spec, override.unit, notes)
    if (
        override.number_min is not None
        or override.number_max is not None
        or override.number_step is not None
        or override.number_mode is not None
    ):
        spec = _override_number(spec, override, notes)
    return spec


def _override_number(spec: EntitySpec, override: ResourceOverride, notes: list[str]) -> EntitySpec:
    if spec.platform != NUMBER or spec.number is None:
        notes.append(f"{spec.key}: range and step are for number entities")
        return spec
    current = spec.number
    low = current.min if override.number_min is None else _finite(override.number_min)
    high = current.max if override.number_max is None else _finite(override.number_max)
    step = current.step if override.number_step is None else _finite(override.number_step)
    mode = override.number_mode or current.mode
    if low is None or high is None or step is None or not low < high:
        notes.append(f"{spec.key}: the minimum must be below the maximum")
        return spec
    if not 0 < step <= high - low:
        notes.append(f"{spec.key}: the step must be above 0 and fit the range")
        return spec
    if mode not in ("box", "slider"):
        notes.append(f"{spec.key}: mode {mode!r} is neither box nor slider")
        return spec
    return replace(spec, number=NumberSpec(low, high, step, mode))


def _merge(base: ResourceOverride | None, top: ResourceOverride | None) -> ResourceOverride | None:
    """``top``'s set values over ``base``'s."""
    if base is None or top is None:
        return top or base
    return ResourceOverride(
        platform=top.platform if top.platform is not None else base.platform,
        device_class=top.device_class if top.device_class is not None else base.device_class,
        unit=top.unit if top.unit is not None else base.unit,
        number_min=top.number_min if top.number_min is not None else base.number_min,
        number_max=top.number_max if top.number_max is not None else base.number_max,
        number_step=top.number_step if top.number_step is not None else base.number_step,
        number_mode=top.number_mode if top.number_mode is not None else base.number_mode,
    )


# ----------------------------------------------------------------------- mapping


def is_internal(name: str) -> bool:
    """Whether a resource name is internal (a path segment starts with ``$``)."""
    return any(segment.startswith("$") for segment in name.split("/"))


def _fn_of(info: Any) -> int | None:
    fn = getattr(info, "fn", None)
    if isinstance(fn, bool) or not isinstance(fn, int):
        return None
    return fn


def _build(name: str, fn: int | None, info: Any) -> _Builder | None:
    sample_in = getattr(info, "sample_in", ABSENT)
    sample_out = getattr(info, "sample_out", ABSENT)
    raw = getattr(info, "raw", None)
    builder = _Builder(
        resource=name,
        fn=fn or 0,
        side_prefix=fn == 4,
        hints=raw if isinstance(raw, Mapping) else {},
    )
    if fn == 1:
        device_class = next(
            (_BUTTON_WORDS[token] for token in reversed(_tokens(name)) if token in _BUTTON_WORDS),
            None,
        )
        builder.add(
            builder.spec(
                platform=BUTTON, direction=DIRECTION_IN, path=(), value_type=ValueType.UNKNOWN,
                device_class=device_class,
            )
        )  # fmt: skip
    elif fn == 2:
        builder.input(sample_in, ())
    elif fn == 3:
        builder.output(sample_out, ())
    elif fn == 4:
        builder.input(sample_in, ())
        input_names = {spec.name for spec in builder.specs}
        first_out = len(builder.specs)
        builder.output(sample_out, ())
        for index in range(first_out, len(builder.specs)):
            spec = builder.specs[index]
            if spec.name in input_names:
                builder.specs[index] = replace(spec, name=f"{spec.name} output")
    else:
        return None
    return builder


def map_resource_with_notes(
    info: ResourceInfoLike,
    override: ResourceOverride | None = None,
    *,
    overrides: Mapping[str, ResourceOverride] | None = None,
) -> MappingResult:
    """Entity specs for one resource plus notes on what was skipped or ignored.

    ``override`` applies to every spec of the resource (default:
    ``overrides[name]``); ``overrides`` may also hold per-key overrides
    (``"resource/field"``) whose set values win. Never raises.
    """
    name = getattr(info, "name", None)
    if not isinstance(name, str):
        return MappingResult([], [f"{name!r}: resource without a usable name"])
    if is_internal(name):
        return MappingResult()
    fn = _fn_of(info)
    builder = _build(name, fn, info)
    if builder is None:
        fn_text = repr(getattr(info, "fn", None))
        return MappingResult([], [f"{name}: function type {fn_text} has no entities"])
    if override is None and overrides:
        override = overrides.get(name)
    specs: list[EntitySpec] = []
    notes = builder.notes
    for spec in builder.specs:
        per_key = overrides.get(spec.key) if overrides and spec.key != name else None
        chosen = _merge(override, per_key)
        specs.append(_apply_override(spec, chosen, notes) if chosen is not None else spec)
    return MappingResult(specs, notes)


def map_resource(
    info: ResourceInfoLike,
    override: ResourceOverride | None = None,
    *,
    overrides: Mapping[str, ResourceOverride] | None = None,
) -> list[EntitySpec]:
    """Entity specs for one resource (see ``map_resource_with_notes``)."""
    return map_resource_with_notes(info, override, overrides=overrides).specs


@dataclass(frozen=True, slots=True)
class _Named:
    """A resource description seen under its mapping key (when it has no usable name)."""

    name: str
    fn: Any
    sample_in: Any
    sample_out: Any


def map_device_with_notes(
    resources: Mapping[str, ResourceInfoLike],
    overrides: Mapping[str, ResourceOverride] | None = None,
) -> MappingResult:
    """Entity specs of a whole device, sorted by resource name, keys unique."""
    specs: list[EntitySpec] = []
    notes: list[str] = []
    for resource_key in sorted(resources, key=str):
        info: Any = resources[resource_key]
        if not isinstance(getattr(info, "name", None), str):
            if not isinstance(resource_key, str):
                notes.append(f"{resource_key!r}: resource without a usable name")
                continue
            info = _Named(
                resource_key,
                getattr(info, "fn", None),
                getattr(info, "sample_in", ABSENT),
                getattr(info, "sample_out", ABSENT),
            )
        result = map_resource_with_notes(info, overrides=overrides)
        specs.extend(result.specs)
        notes.extend(result.notes)
    used: set[str] = set()
    unique: list[EntitySpec] = []
    for spec in specs:
        final = spec
        if spec.key in used:
            count = 2
            while f"{spec.key}~{count}" in used:
                count += 1
            final = replace(spec, key=f"{spec.key}~{count}")
            notes.append(f"{spec.key}: key used twice, this one is {final.key}")
        used.add(final.key)
        unique.append(final)
    return MappingResult(unique, notes)


def map_device(
    resources: Mapping[str, ResourceInfoLike],
    overrides: Mapping[str, ResourceOverride] | None = None,
) -> list[EntitySpec]:
    """Entity specs of a whole device (see ``map_device_with_notes``)."""
    return map_device_with_notes(resources, overrides).specs


def valid_platforms(info: ResourceInfoLike, key: str | None = None) -> list[str]:
    """Platforms the options flow may offer for a resource (or one of its keys).

    For a resource with several values this is the union over its values; an
    override to a platform that does not fit one value leaves that value as is.
    """
    platforms: list[str] = []
    for spec in map_resource(info):
        if key is None or spec.key == key:
            platforms.extend(_spec_platforms(spec))
    return _ordered(platforms)


# -- device info -------------------------------------------------------------------

FIRMWARE_PROPERTIES: Final = ("firmware_version", "firmware", "fw_version", "sw_version", "version")
"""Device properties that hold the firmware version, most specific first."""
MAX_VERSION_LENGTH: Final = 64


def firmware_version(properties: Iterable[Mapping[str, Any]]) -> str | None:
    """Return the firmware version a device keeps in its properties (property objects).

    The first of :data:`FIRMWARE_PROPERTIES` whose value is a short text or number,
    or an object with such a ``version``; None when there is none.
    """
    values = {
        str(item.get("property")): item.get("value")
        for item in properties
        if isinstance(item, Mapping)
    }
    for name in FIRMWARE_PROPERTIES:
        value = values.get(name)
        if isinstance(value, Mapping):
            value = value.get("version")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            continue
        text = str(value).strip()
        if text and len(text) <= MAX_VERSION_LENGTH and "\n" not in text:
            return text
    return None
