"""Every device class, unit and state class the mapping emits is valid in the installed HA.

Runs on both test legs (Home Assistant 2025.4 and 2026.x), so together they prove
the strings are valid on both. The corpus covers every name rule (each word of
the rule tables, with unit words, counter and percent words), every input
number rule, lights, buttons and every override the options flow can offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from iotmp import ha_mapping as mapping
from iotmp.ha_mapping import (
    EntitySpec,
    ResourceOverride,
    device_classes_for,
    map_resource,
    units_for,
)
from iotmp.protocol.message import ABSENT


@dataclass(frozen=True)
class Info:
    name: str
    fn: int
    sample_in: Any = ABSENT
    sample_out: Any = ABSENT


@dataclass(frozen=True)
class HaTables:
    """What the installed Home Assistant accepts."""

    sensor_classes: set[str]
    sensor_units: dict[str, set[str | None]]
    sensor_state_classes: dict[str, set[str]]
    state_classes: set[str]
    state_class_units: dict[str, set[str | None]]
    ambiguous_units: dict[str, str]
    binary_classes: set[str]
    switch_classes: set[str]
    button_classes: set[str]
    number_classes: set[str]
    number_units: dict[str, set[str | None]]
    number_ambiguous_units: dict[str, str]
    number_modes: set[str]
    color_modes: set[str]
    entity_categories: set[str]


def _strs(units: Any) -> set[str | None]:
    return {None if unit is None else str(unit) for unit in units}


def installed_ha() -> HaTables:
    from homeassistant.components.binary_sensor import BinarySensorDeviceClass
    from homeassistant.components.button import ButtonDeviceClass
    from homeassistant.components.light.const import ColorMode
    from homeassistant.components.number import NumberDeviceClass, NumberMode
    from homeassistant.components.number import const as number_const
    from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
    from homeassistant.components.sensor import const as sensor_const
    from homeassistant.components.switch import SwitchDeviceClass
    from homeassistant.const import EntityCategory

    return HaTables(
        sensor_classes={c.value for c in SensorDeviceClass},
        sensor_units={str(k): _strs(v) for k, v in sensor_const.DEVICE_CLASS_UNITS.items()},
        sensor_state_classes={
            str(k): {str(s) for s in v} for k, v in sensor_const.DEVICE_CLASS_STATE_CLASSES.items()
        },
        state_classes={c.value for c in SensorStateClass},
        state_class_units={
            str(k): _strs(v) for k, v in getattr(sensor_const, "STATE_CLASS_UNITS", {}).items()
        },
        ambiguous_units={
            str(k): str(v) for k, v in getattr(sensor_const, "AMBIGUOUS_UNITS", {}).items()
        },
        binary_classes={c.value for c in BinarySensorDeviceClass},
        switch_classes={c.value for c in SwitchDeviceClass},
        button_classes={c.value for c in ButtonDeviceClass},
        number_classes={c.value for c in NumberDeviceClass},
        number_units={str(k): _strs(v) for k, v in number_const.DEVICE_CLASS_UNITS.items()},
        number_ambiguous_units={
            str(k): str(v) for k, v in getattr(number_const, "AMBIGUOUS_UNITS", {}).items()
        },
        number_modes={m.value for m in NumberMode},
        color_modes={m.value for m in ColorMode},
        entity_categories={c.value for c in EntityCategory},
    )


def problems(spec: EntitySpec, ha: HaTables) -> list[str]:
    """Why Home Assistant would reject or warn about ``spec`` (empty when fine)."""
    found: list[str] = []
    dc, unit, sc = spec.device_class, spec.unit, spec.state_class
    if spec.entity_category is not None and spec.entity_category not in ha.entity_categories:
        found.append(f"entity category {spec.entity_category}")
    if spec.platform == "sensor":
        # What the sensor entity itself does with a legacy micro sign.
        native = ha.ambiguous_units.get(unit, unit) if unit is not None else None
        if sc is not None and sc not in ha.state_classes:
            found.append(f"state class {sc}")
        if sc is not None and sc in ha.state_class_units and native not in ha.state_class_units[sc]:
            found.append(f"unit {unit} for state class {sc}")
        if dc is not None:
            if dc not in ha.sensor_classes:
                found.append(f"sensor device class {dc}")
            elif dc in ha.sensor_units and native not in ha.sensor_units[dc]:
                found.append(f"unit {unit!r} for {dc}")
            if sc is not None and sc not in ha.sensor_state_classes.get(dc, {sc}):
                found.append(f"state class {sc} for {dc}")
        if (unit is not None or sc is not None or dc is not None) and spec.value_type not in {
            "number",
            "unknown",
        }:
            found.append(f"numeric sensor for a {spec.value_type} value")
    elif spec.platform == "binary_sensor":
        if dc is not None and dc not in ha.binary_classes:
            found.append(f"binary_sensor device class {dc}")
        if unit is not None or sc is not None:
            found.append("binary_sensor with unit/state class")
    elif spec.platform == "switch":
        if dc is not None and dc not in ha.switch_classes:
            found.append(f"switch device class {dc}")
    elif spec.platform == "button":
        if dc is not None and dc not in ha.button_classes:
            found.append(f"button device class {dc}")
    elif spec.platform == "number":
        if spec.number is None:
            found.append("number without range")
        else:
            if spec.number.mode not in ha.number_modes:
                found.append(f"number mode {spec.number.mode}")
            if not spec.number.min < spec.number.max or spec.number.step <= 0:
                found.append(f"number range {spec.number}")
        if dc is not None:
            if dc not in ha.number_classes:
                found.append(f"number device class {dc}")
            elif (
                dc in ha.number_units
                and (ha.number_ambiguous_units.get(unit, unit) if unit is not None else None)
                not in ha.number_units[dc]
            ):
                found.append(f"unit {unit!r} for number {dc}")
        if sc is not None:
            found.append("number with state class")
    elif spec.platform == "light":
        from homeassistant.components.light import valid_supported_color_modes
        from homeassistant.components.light.const import ColorMode

        if spec.light is None:
            found.append("light without LightSpec")
        else:
            modes = set(spec.light.color_modes)
            if not modes <= ha.color_modes:
                found.append(f"color modes {modes}")
            else:
                try:
                    valid_supported_color_modes({ColorMode(m) for m in modes})
                except Exception as err:  # vol.Invalid (2025.4) or probatio.Error (2026)
                    found.append(f"color modes {modes}: {err}")
        if dc is not None or unit is not None or sc is not None:
            found.append("light with device class/unit/state class")
    elif spec.platform == "text":
        if dc is not None or unit is not None or sc is not None:
            found.append("text with device class/unit/state class")
    else:
        found.append(f"platform {spec.platform}")
    return found


# ------------------------------------------------------------------------ corpus


def _sensor_names() -> list[str]:
    names: list[str] = []
    counters = ["total", "count"]
    for word, guess in mapping._SENSOR_WORDS.items():
        names += [word, f"{word}_value", f"{word}_percent", f"room_{word}"]
        names += [f"{word}_{counter}" for counter in counters]
        for unit_word in mapping._UNIT_WORDS.get(guess.device_class or "", {}):
            names.append(f"{word}_{unit_word}")
    return names


def corpus() -> list[EntitySpec]:
    specs: list[EntitySpec] = []
    for name in _sensor_names():
        for sample in (1, 2.5, True, "x", None, [1]):
            specs += map_resource(Info(name, 3, sample_out=sample))
    for word in [*mapping._BINARY_WORDS, *mapping._BINARY_LOW]:
        specs += map_resource(Info(f"{word}_state", 3, sample_out=True))
        specs += map_resource(Info(word, 3, sample_out=False))
    number_words = (
        mapping._NUM_TEMPERATURE | mapping._NUM_PERCENT | mapping._NUM_BRIGHTNESS
        | mapping._NUM_ANGLE | {"other", "temp_f"}
    )  # fmt: skip
    for word in sorted(number_words):
        for sample in (0, 1, 50, 99.5, 200, 1000, 5000, 70000, -5, 1e9, float("inf"), None):
            specs += map_resource(Info(word, 2, sample_in=sample))
    for word in [*mapping._LIGHT_WORDS, *mapping._OUTLET_WORDS, "relay"]:
        specs += map_resource(Info(word, 2, sample_in=True))
    for word in [*mapping._BUTTON_WORDS, "go"]:
        specs += map_resource(Info(word, 1))
    lights = [
        {"r": 1, "g": 2, "b": 3},
        {"red": 1, "green": 2, "blue": 3, "on": True, "brightness": 9},
        {"on": True, "brightness": 3},
        {"on": True, "dim_pct": 3},
    ]
    for value in lights:
        specs += map_resource(Info("lamp", 2, sample_in=value))
    specs += map_resource(Info("lamp", 2, sample_in={"on": True, "x": 1}))
    return specs


def override_corpus() -> list[EntitySpec]:
    specs: list[EntitySpec] = []
    targets = [
        Info("reading", 3, sample_out=1.5),
        Info("energy_total", 3, sample_out=1.5),
        Info("mystery", 3),
        Info("setting", 2, sample_in=3),
        Info("mystery", 2),
    ]
    for info in targets:
        for platform in ("sensor", "number"):
            for device_class in [*device_classes_for(platform), ""]:
                units = units_for(platform, device_class or None) or []
                unit: str | None
                for unit in [None, "", *units, "\u03bcg/m\u00b3", "furlongs"]:
                    override = ResourceOverride(device_class=device_class, unit=unit)
                    specs += map_resource(info, override)
    for platform in ("sensor", "binary_sensor", "switch", "light", "number", "text", "button"):
        classes: list[str | None] = [None, *device_classes_for(platform)]
        for chosen_class in classes:
            override = ResourceOverride(platform=platform, device_class=chosen_class)
            for info in (
                Info("door", 3, sample_out=True),
                Info("relay", 2, sample_in=True),
                Info("any", 2),
                Info("go", 1),
            ):
                specs += map_resource(info, override)
    return specs


@pytest.fixture(scope="module")
def ha() -> HaTables:
    return installed_ha()


def test_corpus_is_valid_in_installed_ha(ha: HaTables) -> None:
    specs = corpus()
    assert len(specs) > 1000
    bad = {f"{s.key} ({s.platform}): {p}" for s in specs for p in problems(s, ha)}
    assert not bad, sorted(bad)[:40]
    emitted = {s.device_class for s in specs if s.platform == "sensor"}
    assert {"temperature", "energy", "pm25", "signal_strength", "duration"} <= emitted


def test_overrides_are_valid_in_installed_ha(ha: HaTables) -> None:
    specs = override_corpus()
    bad = {f"{s.key} ({s.platform}): {p}" for s in specs for p in problems(s, ha)}
    assert not bad, sorted(bad)[:40]


def test_exported_tables_are_valid_in_installed_ha(ha: HaTables) -> None:
    for device_class, units in mapping.SENSOR_DEVICE_CLASS_UNITS.items():
        assert device_class in ha.sensor_classes
        allowed = ha.sensor_units.get(device_class)
        if allowed is not None:
            for unit in units:
                native = ha.ambiguous_units.get(unit, unit) if unit is not None else None
                assert native in allowed, (device_class, unit)
        default = mapping._DEFAULT_UNIT[device_class]
        assert default in units
    for device_class, units in mapping.NUMBER_DEVICE_CLASS_UNITS.items():
        assert device_class in ha.number_classes
        allowed = ha.number_units.get(device_class)
        if allowed is not None:
            assert set(units) <= allowed, device_class
    assert set(mapping.BINARY_SENSOR_DEVICE_CLASSES) <= ha.binary_classes
    assert set(mapping.SWITCH_DEVICE_CLASSES) <= ha.switch_classes
    assert set(mapping.BUTTON_DEVICE_CLASSES) <= ha.button_classes
    for device_class in mapping._TOTAL_CLASSES:
        assert "total_increasing" in ha.sensor_state_classes[device_class]
    for device_class in mapping._ANY_STATE_CLASS:
        assert {"measurement", "total_increasing"} <= ha.sensor_state_classes[device_class]


def test_rule_tables_only_name_known_classes() -> None:
    for guess in mapping._SENSOR_WORDS.values():
        assert guess.device_class is None or guess.device_class in mapping._DEFAULT_UNIT
        if guess.device_class is not None and guess.unit is not None:
            assert guess.unit in mapping.SENSOR_DEVICE_CLASS_UNITS[guess.device_class]
    for table in (mapping._BINARY_WORDS, mapping._BINARY_LOW):
        for guess in table.values():
            assert guess.device_class in mapping.BINARY_SENSOR_DEVICE_CLASSES
    for device_class, words in mapping._UNIT_WORDS.items():
        for unit in words.values():
            assert unit in mapping.SENSOR_DEVICE_CLASS_UNITS[device_class], (device_class, unit)


def test_micro_sign_choice(ha: HaTables) -> None:
    """µg/m³ with U+00B5 is what 2025.4 accepts and what 2026.x still maps to U+03BC."""
    spec = map_resource(Info("pm25", 3, sample_out=3))[0]
    assert spec.unit == "\u00b5g/m\u00b3"
    native = ha.ambiguous_units.get(spec.unit, spec.unit)
    assert native in ha.sensor_units["pm25"]
