"""Rules of iotmp.ha_mapping (pure, no sockets, no Home Assistant)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from iotmp.ha_mapping import (
    MAX_SPECS_PER_RESOURCE,
    UG_M3,
    EntitySpec,
    LightSpec,
    NumberSpec,
    ResourceOverride,
    device_classes_for,
    is_internal,
    map_device,
    map_device_with_notes,
    map_resource,
    map_resource_with_notes,
    prettify,
    units_for,
    valid_platforms,
)
from iotmp.protocol.message import ABSENT


@dataclass(frozen=True)
class Info:
    """Stand-in with the attributes of client.models.ResourceInfo."""

    name: str
    fn: Any
    sample_in: Any = ABSENT
    sample_out: Any = ABSENT
    raw: dict[str, Any] = field(default_factory=dict)


def out(name: str, value: Any) -> Info:
    return Info(name, 3, sample_out=value)


def inp(name: str, value: Any) -> Info:
    return Info(name, 2, sample_in=value)


def one(info: Info, override: ResourceOverride | None = None) -> EntitySpec:
    specs = map_resource(info, override)
    assert len(specs) == 1, specs
    return specs[0]


def by_key(specs: list[EntitySpec]) -> dict[str, EntitySpec]:
    return {spec.key: spec for spec in specs}


# ------------------------------------------------------------------ DESIGN table


def test_row_fn1_button() -> None:
    spec = one(Info("reboot", 1))
    assert (spec.platform, spec.direction, spec.key, spec.path) == ("button", "in", "reboot", ())
    assert spec.name == "Reboot"
    assert spec.device_class == "restart"
    assert spec.fn == 1
    assert one(Info("beep", 1)).device_class is None


def test_row_output_number() -> None:
    spec = one(out("temperature", 21.5))
    assert spec.platform == "sensor"
    assert spec.direction == "out"
    assert (spec.device_class, spec.unit, spec.state_class) == ("temperature", "°C", "measurement")
    assert spec.value_type == "number"
    plain = one(out("millivolts_raw_thing", 1))
    assert plain.device_class == "voltage"
    other = one(out("speedometer_index", 3))
    assert (other.device_class, other.unit, other.state_class) == (None, None, "measurement")


def test_row_output_boolean() -> None:
    spec = one(out("motion", True))
    assert (spec.platform, spec.device_class, spec.unit, spec.state_class) == (
        "binary_sensor", "motion", None, None,
    )  # fmt: skip
    assert one(out("flag", False)).device_class is None


def test_row_output_string() -> None:
    spec = one(out("firmware", "1.2.3"))
    assert (spec.platform, spec.device_class, spec.unit, spec.state_class) == (
        "sensor", None, None, None,
    )  # fmt: skip
    assert spec.value_type == "string"


def test_row_output_object() -> None:
    specs = map_resource(out("environment", {"temperature": 21, "humidity": 40, "pressure": 1013}))
    assert [(s.key, s.name, s.path, s.device_class, s.unit) for s in specs] == [
        (
            "environment/temperature",
            "Environment temperature",
            ("temperature",),
            "temperature",
            "°C",
        ),
        ("environment/humidity", "Environment humidity", ("humidity",), "humidity", "%"),
        ("environment/pressure", "Environment pressure", ("pressure",), "pressure", "hPa"),
    ]
    assert {s.platform for s in specs} == {"sensor"}
    assert {s.direction for s in specs} == {"out"}


def test_row_input_boolean_switch_and_light() -> None:
    switch = one(inp("relay", True))
    assert (switch.platform, switch.device_class, switch.direction) == ("switch", "switch", "in")
    for name in ("lamp", "light", "bulb", "led", "desk_lamp", "LedStrip", "garden-lights"):
        spec = one(inp(name, False))
        assert spec.platform == "light", name
        assert spec.light == LightSpec(color_modes=frozenset({"onoff"}))
    assert one(inp("ledger", True)).platform == "switch"
    assert one(inp("sled", True)).platform == "switch"
    assert one(inp("smart_plug", True)).device_class == "outlet"


def test_row_input_number() -> None:
    assert one(inp("brightness", 10)).number == NumberSpec(0, 255, 1, "slider")
    assert one(inp("volume", 30)).number == NumberSpec(0, 100, 1, "slider")
    assert one(inp("volume", 30)).unit == "%"
    box = one(inp("setting", 7))
    assert box.number == NumberSpec(-1_000_000, 1_000_000, 1, "box")
    assert box.platform == "number"


def test_row_input_string() -> None:
    spec = one(inp("message", "hello"))
    assert (spec.platform, spec.value_type, spec.direction) == ("text", "string", "in")


def test_row_input_rgb_object() -> None:
    spec = one(inp("rgb", {"r": 0, "g": 255, "b": 0}))
    assert spec.platform == "light"
    assert spec.key == "rgb"
    assert spec.path == ()
    assert spec.light == LightSpec(
        color_modes=frozenset({"rgb"}), on_field=None, brightness_field=None,
        rgb_fields=("r", "g", "b"), brightness_max=255,
    )  # fmt: skip


def test_row_other_input_object() -> None:
    specs = by_key(map_resource(inp("config", {"enabled": True, "period": 10, "label": "x"})))
    assert {key: spec.platform for key, spec in specs.items()} == {
        "config/enabled": "switch",
        "config/period": "number",
        "config/label": "text",
    }
    assert specs["config/period"].name == "Config period"
    assert specs["config/enabled"].path == ("enabled",)


def test_row_fn4() -> None:
    info = Info("calc", 4, sample_in={"value1": 0, "value2": 0}, sample_out={"sum": 0, "mult": 0})
    specs = map_resource(info)
    assert [(s.key, s.platform, s.direction, s.path, s.name) for s in specs] == [
        ("calc/in.value1", "number", "in", ("value1",), "Calc value1"),
        ("calc/in.value2", "number", "in", ("value2",), "Calc value2"),
        ("calc/out.sum", "sensor", "out", ("sum",), "Calc sum"),
        ("calc/out.mult", "sensor", "out", ("mult",), "Calc mult"),
    ]
    assert {s.fn for s in specs} == {4}


def test_fn4_scalars_and_name_clash() -> None:
    specs = map_resource(Info("echo", 4, sample_in=3, sample_out=4.5))
    assert [(s.key, s.platform, s.name) for s in specs] == [
        ("echo/in", "number", "Echo"),
        ("echo/out", "sensor", "Echo output"),
    ]
    same = map_resource(Info("calc", 4, sample_in={"value": 1}, sample_out={"value": 2}))
    assert [s.name for s in same] == ["Calc value", "Calc value output"]


def test_fn4_empty_or_missing_input() -> None:
    specs = map_resource(Info("compute", 4, sample_in={}, sample_out={"result": 1}))
    assert [(s.key, s.platform) for s in specs] == [
        ("compute/in", "button"),
        ("compute/out.result", "sensor"),
    ]
    specs = map_resource(Info("compute", 4))
    assert [(s.key, s.platform, s.value_type) for s in specs] == [
        ("compute/in", "text", "unknown"),
        ("compute/out", "sensor", "unknown"),
    ]


# ---------------------------------------------------------------- sensor guesses

SENSOR_GUESSES = [
    # name, device class, unit, state class
    ("temperature", "temperature", "°C", "measurement"),
    ("temp", "temperature", "°C", "measurement"),
    ("Temp1", "temperature", "°C", "measurement"),
    ("celsius", "temperature", "°C", "measurement"),
    ("fahrenheit", "temperature", "°F", "measurement"),
    ("temp_f", "temperature", "°F", "measurement"),
    ("tempF", "temperature", "°F", "measurement"),
    ("water_temperature", "temperature", "°C", "measurement"),
    ("dew_point", "temperature", "°C", "measurement"),
    ("humidity", "humidity", "%", "measurement"),
    ("hum", "humidity", "%", "measurement"),
    ("pressure", "pressure", "hPa", "measurement"),
    ("baro", "pressure", "hPa", "measurement"),
    ("pressure_psi", "pressure", "psi", "measurement"),
    ("water_pressure_bar", "pressure", "bar", "measurement"),
    ("voltage", "voltage", "V", "measurement"),
    ("vcc", "voltage", "V", "measurement"),
    ("battery_voltage", "voltage", "V", "measurement"),
    ("bat_mv", "voltage", "mV", "measurement"),
    ("bat_v", "voltage", "V", "measurement"),
    ("current", "current", "A", "measurement"),
    ("amps", "current", "A", "measurement"),
    ("current_ma", "current", "mA", "measurement"),
    ("power", "power", "W", "measurement"),
    ("watts", "power", "W", "measurement"),
    ("power_kw", "power", "kW", "measurement"),
    ("total_power", "power", "W", "measurement"),
    ("energy", "energy", "kWh", "total_increasing"),
    ("kwh", "energy", "kWh", "total_increasing"),
    ("energy_wh", "energy", "Wh", "total_increasing"),
    ("energy_total", "energy", "kWh", "total_increasing"),
    ("total_energy", "energy", "kWh", "total_increasing"),
    ("battery", "battery", "%", "measurement"),
    ("bat", "battery", "%", "measurement"),
    ("battery_level", "battery", "%", "measurement"),
    ("illuminance", "illuminance", "lx", "measurement"),
    ("lux", "illuminance", "lx", "measurement"),
    ("light_level", "illuminance", "lx", "measurement"),
    ("co2", "carbon_dioxide", "ppm", "measurement"),
    ("CO2Level", "carbon_dioxide", "ppm", "measurement"),
    ("pm25", "pm25", UG_M3, "measurement"),
    ("pm2_5", "pm25", UG_M3, "measurement"),
    ("PM2.5", "pm25", UG_M3, "measurement"),
    ("pm_2_5", "pm25", UG_M3, "measurement"),
    ("pm10", "pm10", UG_M3, "measurement"),
    ("pm1", "pm1", UG_M3, "measurement"),
    ("tvoc", "volatile_organic_compounds_parts", "ppb", "measurement"),
    ("rssi", "signal_strength", "dBm", "measurement"),
    ("wifi_signal", "signal_strength", "dBm", "measurement"),
    ("signal_strength", "signal_strength", "dBm", "measurement"),
    ("frequency", "frequency", "Hz", "measurement"),
    ("freq_khz", "frequency", "kHz", "measurement"),
    ("distance", "distance", "cm", "measurement"),
    ("distance_mm", "distance", "mm", "measurement"),
    ("speed", "speed", "m/s", "measurement"),
    ("speed_kmh", "speed", "km/h", "measurement"),
    ("wind_speed", "wind_speed", "m/s", "measurement"),
    ("gas", "gas", "m³", "total_increasing"),
    ("gas_total", "gas", "m³", "total_increasing"),
    ("water", "water", "L", "total_increasing"),
    ("water_m3", "water", "m³", "total_increasing"),
    ("water_consumption", "water", "L", "total_increasing"),
    ("flow_rate", "volume_flow_rate", "L/min", "measurement"),
    ("soil_moisture", "moisture", "%", "measurement"),
    ("power_factor", "power_factor", None, "measurement"),
    ("noise", "sound_pressure", "dB", "measurement"),
    ("weight", "weight", "kg", "measurement"),
    ("uptime", "duration", "s", "total_increasing"),
    ("millis", "duration", "ms", "total_increasing"),
    ("aqi", "aqi", None, "measurement"),
    # counters
    ("count", None, None, "total_increasing"),
    ("pulse_count", None, None, "total_increasing"),
    ("counter", None, None, "total_increasing"),
    ("power_total", None, None, "total_increasing"),
    ("power_on_count", None, None, "total_increasing"),
    # percent / unit only
    ("cpu_percent", None, "%", "measurement"),
    ("signal_percent", None, "%", "measurement"),
    ("battery_pct", "battery", "%", "measurement"),
    ("fan_rpm", None, "rpm", "measurement"),
    # no guess: unrelated words, substrings, weak words not at the end
    ("temporary", None, None, "measurement"),
    ("template", None, None, "measurement"),
    ("contemplate", None, None, "measurement"),
    ("attempts", None, None, "measurement"),
    ("impressions", None, None, "measurement"),
    ("battleship", None, None, "measurement"),
    ("current_state", None, None, "measurement"),
    ("gas_resistance", None, None, "measurement"),
    ("water_level", None, None, "measurement"),
    ("fan_speed", None, None, "measurement"),
    ("powerful", None, None, "measurement"),
    ("colour", None, None, "measurement"),
    ("millis_offset_unrelated", "duration", "ms", "total_increasing"),
    ("x", None, None, "measurement"),
    ("", None, None, "measurement"),
]


@pytest.mark.parametrize(("name", "device_class", "unit", "state_class"), SENSOR_GUESSES)
def test_number_output_guess(
    name: str, device_class: str | None, unit: str | None, state_class: str
) -> None:
    spec = one(out(name, 12.5))
    assert spec.platform == "sensor"
    assert (spec.device_class, spec.unit, spec.state_class) == (device_class, unit, state_class)


def test_diagnostic_category() -> None:
    assert one(out("rssi", -70)).entity_category == "diagnostic"
    assert one(out("uptime", 5)).entity_category == "diagnostic"
    assert one(out("temperature", 5)).entity_category is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"temperature": 1, "humidity": 2}, ["temperature", "humidity"]),
        ({"celsius": 21.5, "humidity": 40}, ["temperature", "humidity"]),  # DHT example
        ({"value": 1, "min": 0, "max": 3}, ["temperature"] * 3),  # generic -> resource
        ({"status_code": 3}, [None]),  # not generic: no fall back
    ],
)
def test_object_fields_guess_from_field_then_resource(
    fields: dict[str, Any], expected: list[str | None]
) -> None:
    specs = map_resource(out("temperature", fields))
    assert [s.device_class for s in specs] == expected


def test_nested_output_object() -> None:
    value = {"indoor": {"temp": 21.0, "hum": 40}, "outdoor": {"temp": 3.5}, "ok": True}
    specs = by_key(map_resource(out("weather", value)))
    assert list(specs) == [
        "weather/indoor.temp", "weather/indoor.hum", "weather/outdoor.temp", "weather/ok",
    ]  # fmt: skip
    assert specs["weather/indoor.temp"].path == ("indoor", "temp")
    assert specs["weather/indoor.temp"].name == "Weather indoor temp"
    assert specs["weather/indoor.temp"].device_class == "temperature"
    assert specs["weather/ok"].platform == "binary_sensor"


@pytest.mark.parametrize(
    ("name", "device_class"),
    [
        ("motion", "motion"),
        ("pir", "motion"),
        ("door", "door"),
        ("door_open", "door"),
        ("front_door_state", "door"),
        ("window", "window"),
        ("garage_door", "garage_door"),
        ("occupancy", "occupancy"),
        ("presence", "presence"),
        ("leak", "moisture"),
        ("water_leak", "moisture"),
        ("water", "moisture"),
        ("water_detected", "moisture"),
        ("smoke", "smoke"),
        ("smoke_alarm", "smoke"),
        ("gas", "gas"),
        ("vibration", "vibration"),
        ("tamper", "tamper"),
        ("fault", "problem"),
        ("power_failure", "problem"),
        ("connected", "connectivity"),
        ("plug", "plug"),
        ("power", "power"),
        ("running", "running"),
        ("battery_low", "battery"),
        ("charging", "battery_charging"),
        ("open", "opening"),
        ("window_contact", "window"),
        ("contact", "opening"),
        ("doorbell_pressed", None),
        ("water_heater_on", None),
        ("flag", None),
        ("windowless", None),
    ],
)
def test_boolean_output_guess(name: str, device_class: str | None) -> None:
    spec = one(out(name, True))
    assert spec.platform == "binary_sensor"
    assert spec.device_class == device_class


# ----------------------------------------------------------------- input numbers


@pytest.mark.parametrize(
    ("name", "sample", "number", "device_class", "unit"),
    [
        ("brightness", 128, NumberSpec(0, 255, 1, "slider"), None, None),
        ("dim", 3, NumberSpec(0, 255, 1, "slider"), None, None),
        ("level", 3, NumberSpec(0, 255, 1, "slider"), None, None),
        ("pwm", 512, NumberSpec(0, 1023, 1, "slider"), None, None),
        ("pwm_duty", 3000, NumberSpec(0, 4095, 1, "slider"), None, None),
        ("percent", 50, NumberSpec(0, 100, 1, "slider"), None, "%"),
        ("volume", 0.5, NumberSpec(0, 100, 0.1, "slider"), None, "%"),
        ("blind_position", 20, NumberSpec(0, 100, 1, "slider"), None, "%"),
        ("volume_level", 20, NumberSpec(0, 100, 1, "slider"), None, "%"),
        ("humidity_setpoint", 45, NumberSpec(0, 100, 1, "slider"), "humidity", "%"),
        ("servo", 90, NumberSpec(0, 180, 1, "slider"), None, "°"),
        ("angle", 270, NumberSpec(0, 360, 1, "slider"), None, "°"),
        ("target_temp", 21.5, NumberSpec(-50, 150, 0.1, "box"), "temperature", "°C"),
        ("setpoint", 21, NumberSpec(-50, 150, 1, "box"), "temperature", "°C"),
        ("temp_f", 70, NumberSpec(-58, 302, 1, "box"), "temperature", "°F"),
        ("interval", 30, NumberSpec(-1e6, 1e6, 1, "box"), None, None),
        ("gain", 0.25, NumberSpec(-1e6, 1e6, 0.01, "box"), None, None),
        ("big", 12_345_678, NumberSpec(-1e8, 1e8, 1, "box"), None, None),
        ("percent", 250, NumberSpec(-1e6, 1e6, 1, "box"), None, None),  # not a percent
        ("brightness", -3, NumberSpec(-1e6, 1e6, 1, "box"), None, None),
        ("gain", float("nan"), NumberSpec(-1e6, 1e6, 0.01, "box"), None, None),
        ("gain", 10**400, NumberSpec(-1e6, 1e6, 1, "box"), None, None),
    ],
)
def test_number_input(
    name: str, sample: Any, number: NumberSpec, device_class: str | None, unit: str | None
) -> None:
    spec = one(inp(name, sample))
    assert spec.platform == "number"
    assert (spec.number, spec.device_class, spec.unit) == (number, device_class, unit)
    assert spec.state_class is None


# ------------------------------------------------------------------------ lights


def test_rgb_light_with_on_and_brightness() -> None:
    value = {"on": True, "r": 255, "g": 10, "b": 0, "brightness": 200, "effect": "rainbow"}
    specs = map_resource(inp("strip", value))
    assert [(s.key, s.platform) for s in specs] == [("strip", "light"), ("strip/effect", "text")]
    assert specs[0].light == LightSpec(
        color_modes=frozenset({"rgb"}), on_field="on", brightness_field="brightness",
        rgb_fields=("r", "g", "b"), brightness_max=255,
    )  # fmt: skip


def test_rgb_light_long_names_and_state_field() -> None:
    value = {"Red": 1, "Green": 2, "Blue": 3, "state": False, "dim": 40}
    light = one(inp("colour", value)).light
    assert light is not None
    assert light.rgb_fields == ("Red", "Green", "Blue")
    assert (light.on_field, light.brightness_field) == ("state", "dim")


def test_rgb_needs_numbers() -> None:
    specs = map_resource(inp("rgb", {"r": "ff", "g": 0, "b": 0}))
    assert [s.platform for s in specs] == ["text", "number", "number"]


def test_brightness_light_and_percent_brightness() -> None:
    light = one(inp("dimmer", {"on": True, "brightness": 30})).light
    assert light == LightSpec(
        color_modes=frozenset({"brightness"}), on_field="on", brightness_field="brightness"
    )
    light = one(inp("lamp", {"power": True, "brightness_pct": 30})).light
    assert light == LightSpec(
        color_modes=frozenset({"brightness"}), on_field="power",
        brightness_field="brightness_pct", brightness_max=100,
    )  # fmt: skip
    light = one(inp("lamp", {"on": True, "dimPercent": 30})).light
    assert light is not None
    assert (light.brightness_field, light.brightness_max) == ("dimPercent", 100)
    # An exact key wins over a percent one; the other becomes a number.
    specs = map_resource(inp("lamp", {"on": True, "level": 30, "brightness_percent": 1}))
    assert [s.platform for s in specs] == ["light", "number"]
    assert specs[0].light is not None
    assert specs[0].light.brightness_field == "level"
    assert specs[1].key == "lamp/brightness_percent"


def test_onoff_light_object_in_light_named_resource() -> None:
    specs = map_resource(inp("lamp", {"on": True, "timer": 30}))
    assert [(s.key, s.platform) for s in specs] == [("lamp", "light"), ("lamp/timer", "number")]
    assert specs[0].light == LightSpec(color_modes=frozenset({"onoff"}), on_field="on")
    # Same shape in a resource that does not say "light": plain controls.
    specs = map_resource(inp("pump", {"on": True, "timer": 30}))
    assert [(s.key, s.platform) for s in specs] == [("pump/on", "switch"), ("pump/timer", "number")]


def test_nested_rgb_in_other_input_object() -> None:
    value = {"colour": {"r": 1, "g": 2, "b": 3}, "mode": "fade", "speed": 4}
    specs = by_key(map_resource(inp("effects", value)))
    assert {k: s.platform for k, s in specs.items()} == {
        "effects/colour": "light", "effects/mode": "text", "effects/speed": "number",
    }  # fmt: skip
    assert specs["effects/colour"].path == ("colour",)
    assert specs["effects/colour"].name == "Effects colour"


def test_fn4_light_input() -> None:
    info = Info("rgb", 4, sample_in={"r": 1, "g": 2, "b": 3}, sample_out={"r": 1, "g": 2, "b": 3})
    specs = map_resource(info)
    assert [(s.key, s.platform) for s in specs] == [
        ("rgb/in", "light"),
        ("rgb/out.r", "sensor"), ("rgb/out.g", "sensor"), ("rgb/out.b", "sensor"),
    ]  # fmt: skip


# -------------------------------------------------------------------- odd shapes


@pytest.mark.parametrize("sample", [None, ABSENT])
def test_unknown_samples(sample: Any) -> None:
    sensor = one(Info("mystery", 3, sample_out=sample))
    assert (sensor.platform, sensor.value_type, sensor.state_class, sensor.unit) == (
        "sensor", "unknown", None, None,
    )  # fmt: skip
    control = one(Info("mystery", 2, sample_in=sample))
    assert (control.platform, control.value_type) == ("text", "unknown")


def test_lists_bytes_and_odd_values() -> None:
    assert (one(out("history", [1, 2])).platform, one(out("history", [1, 2])).value_type) == (
        "sensor", "list",
    )  # fmt: skip
    assert one(out("history", [1, 2])).state_class is None
    assert one(inp("targets", [1, 2])).platform == "text"
    assert one(out("blob", b"\x00")).value_type == "unknown"
    assert one(out("thing", object())).value_type == "unknown"
    assert one(out("temperature", float("nan"))).device_class == "temperature"


def test_null_fields_in_objects() -> None:
    specs = map_resource(out("env", {"temperature": None, "humidity": 40}))
    assert [(s.key, s.value_type, s.device_class) for s in specs] == [
        ("env/temperature", "unknown", None),
        ("env/humidity", "number", "humidity"),
    ]


def test_empty_objects() -> None:
    assert map_resource(out("env", {})) == []
    assert map_resource(inp("config", {})) == []
    assert map_resource_with_notes(inp("config", {})).notes


@pytest.mark.parametrize("fn", [0, 5, 6, -1, None, "3", 3.0, True, [3]])
def test_unknown_fn(fn: Any) -> None:
    result = map_resource_with_notes(Info("thing", fn, sample_in=1, sample_out=1))
    assert result.specs == []
    assert result.notes


def test_missing_attributes() -> None:
    class Bare:
        name = "temperature"
        fn = 3

    assert one(Bare()).value_type == "unknown"  # type: ignore[arg-type]

    class Nameless:
        fn = 3
        sample_out = 1

    assert map_resource(Nameless()) == []  # type: ignore[arg-type]
    specs = map_device({"temperature": Nameless()})  # type: ignore[dict-item]
    assert [(s.key, s.device_class) for s in specs] == [("temperature", "temperature")]


@pytest.mark.parametrize(
    ("name", "internal"),
    [
        ("$ota", True),
        ("$ota/options", True),
        ("fs/$dir", True),
        ("a/b", False),
        ("price$", False),
        ("", False),
    ],
)
def test_dollar_resources(name: str, internal: bool) -> None:
    assert is_internal(name) is internal
    specs = map_resource(out(name, 1))
    assert (specs == []) is internal


def test_dollar_resources_in_device() -> None:
    resources = {
        "$ota/options": out("$ota/options", {"x": 1}),
        "$cmd": Info("$cmd", 1),
        "temp": out("temp", 1),
    }
    assert [s.key for s in map_device(resources)] == ["temp"]


def test_legacy_slash_names() -> None:
    specs = map_device({
        "sensors/temperature": out("sensors/temperature", 20.5),
        "sensors/env": out("sensors/env", {"humidity": 40}),
        "gpio/GPIO_16": inp("gpio/GPIO_16", True),
    })  # fmt: skip
    assert [(s.key, s.resource, s.name, s.device_class) for s in specs] == [
        ("gpio/GPIO_16", "gpio/GPIO_16", "GPIO GPIO 16", "switch"),
        ("sensors/env/humidity", "sensors/env", "Sensors env humidity", "humidity"),
        ("sensors/temperature", "sensors/temperature", "Sensors temperature", "temperature"),
    ]


def test_unicode_names() -> None:
    spec = one(out("température_salon", 20.0))
    assert spec.key == "température_salon"
    assert spec.name == "Température salon"
    specs = map_resource(out("環境", {"温度": 20, "humidity": 40}))
    assert [(s.key, s.name) for s in specs] == [
        ("環境/温度", "環境 温度"),
        ("環境/humidity", "環境 humidity"),
    ]


@pytest.mark.parametrize(
    ("raw", "pretty"),
    [
        ("GPIO_16", "GPIO 16"),
        ("rgb_lamp", "RGB lamp"),
        ("temperature", "Temperature"),
        ("Temperature", "Temperature"),
        ("airQuality", "Air quality"),
        ("living-room/temp", "Living room temp"),
        ("pm2_5", "PM2.5"),
        ("wifi_rssi", "Wi-Fi RSSI"),
        ("ph", "pH"),
        ("CO2Level", "CO2 level"),
        ("HTTPServer", "HTTP server"),
        ("  spaced  out ", "Spaced out"),
        ("ünïcode", "Ünïcode"),
        ("___", ""),
        ("", ""),
    ],
)
def test_prettify(raw: str, pretty: str) -> None:
    assert prettify(raw) == pretty


def test_name_falls_back_to_raw() -> None:
    assert one(out("___", 1)).name == "___"
    assert one(out("", 1)).name == "Value"
    assert [s.name for s in map_resource(out("env", {"": 1, "--": 2}))] == ["Env", "Env --"]


# ----------------------------------------------------------------------- keys


def test_keys_stable_and_order_independent() -> None:
    infos = [
        out("temperature", 1.0),
        out("env", {"a": 1, "b": {"c": True}}),
        inp("led", True),
        Info("calc", 4, sample_in={"x": 1}, sample_out={"y": 2}),
        Info("reboot", 1),
    ]
    first = map_device({info.name: info for info in infos})
    shuffled = infos[:]
    random.Random(4).shuffle(shuffled)
    second = map_device({info.name: info for info in shuffled})
    assert first == second
    assert [s.key for s in first] == [
        "calc/in.x", "calc/out.y", "env/a", "env/b.c", "led", "reboot", "temperature",
    ]  # fmt: skip


def test_key_collisions_get_suffixes() -> None:
    resources = {
        "x/y": out("x/y", 1),
        "x": out("x", {"y": 2, "a.b": 3, "a": {"b": 4}}),
    }
    result = map_device_with_notes(resources)
    keys = [s.key for s in result.specs]
    assert keys == ["x/y", "x/a.b", "x/a.b~2", "x/y~2"]
    assert len(set(keys)) == len(keys)
    assert any("used twice" in note for note in result.notes)
    assert map_device(resources) == result.specs


def test_key_suffix_does_not_hit_existing_key() -> None:
    resources = {
        "a": out("a", {"b": 1, "b~2": 2}),
        "a/b": out("a/b", 3),
    }
    keys = [s.key for s in map_device(resources)]
    assert len(set(keys)) == len(keys) == 3


def test_truncation() -> None:
    value = {f"f{i}": i for i in range(MAX_SPECS_PER_RESOURCE + 10)}
    result = map_resource_with_notes(out("big", value))
    assert len(result.specs) == MAX_SPECS_PER_RESOURCE
    assert any("left out" in note for note in result.notes)


def test_real_resource_info_fits() -> None:
    models = pytest.importorskip("iotmp.client.models")
    info = models.ResourceInfo(name="temperature", fn=3, sample_out=21.5, raw={"fn": 3})
    assert one(info).device_class == "temperature"
    assert map_device({"temperature": info})[0].key == "temperature"


# -------------------------------------------------------------------- overrides


def test_override_device_class_and_unit() -> None:
    spec = one(out("reading", 3.3), ResourceOverride(device_class="voltage"))
    assert (spec.device_class, spec.unit, spec.state_class) == ("voltage", "V", "measurement")
    spec = one(out("reading", 3.3), ResourceOverride(device_class="voltage", unit="mV"))
    assert spec.unit == "mV"
    spec = one(out("temperature", 70), ResourceOverride(unit="°F"))
    assert (spec.device_class, spec.unit) == ("temperature", "°F")
    spec = one(out("meter", 5), ResourceOverride(device_class="energy"))
    assert (spec.unit, spec.state_class) == ("kWh", "total_increasing")
    spec = one(out("energy", 5), ResourceOverride(device_class="power"))
    assert (spec.unit, spec.state_class) == ("W", "measurement")


def test_override_clears_with_empty_string() -> None:
    spec = one(out("temperature", 20), ResourceOverride(device_class="", unit=""))
    assert (spec.device_class, spec.unit, spec.state_class) == (None, None, "measurement")
    result = map_resource_with_notes(out("temperature", 20), ResourceOverride(unit=""))
    assert result.specs[0].unit == "°C"  # temperature needs a unit
    assert result.notes


def test_override_micro_sign_is_normalised() -> None:
    spec = one(out("dust", 3), ResourceOverride(device_class="pm25", unit="\u03bcg/m\u00b3"))
    assert spec.unit == UG_M3 == "\u00b5g/m\u00b3"


@pytest.mark.parametrize(
    ("info", "override", "platform", "note"),
    [
        (out("firmware", "1.0"), ResourceOverride(platform="light"), "sensor", "does not fit"),
        (inp("led", True), ResourceOverride(platform="number"), "light", "does not fit"),
        (inp("rgb", {"r": 1, "g": 2, "b": 3}), ResourceOverride(platform="switch"), "light", ""),
        (Info("go", 1), ResourceOverride(platform="switch"), "button", "does not fit"),
        (out("temperature", 1), ResourceOverride(device_class="nonsense"), "sensor", "no sensor"),
        (out("temperature", 1), ResourceOverride(unit="%"), "sensor", "does not fit"),
        (out("firmware", "1.0"), ResourceOverride(device_class="temperature"), "sensor", "needs"),
        (out("firmware", "1.0"), ResourceOverride(unit="V"), "sensor", "needs a number"),
        (out("door", True), ResourceOverride(unit="V"), "binary_sensor", "has no unit"),
        (inp("relay", True), ResourceOverride(device_class="door"), "switch", "no switch"),
    ],
)
def test_invalid_overrides_are_ignored_with_a_note(
    info: Info, override: ResourceOverride, platform: str, note: str
) -> None:
    plain = map_resource(info)
    result = map_resource_with_notes(info, override)
    assert result.specs == plain
    assert result.specs[0].platform == platform
    assert result.notes
    assert note in result.notes[0]


@pytest.mark.parametrize(
    ("info", "platform", "expected"),
    [
        (out("door", True), "sensor", ("sensor", None, None)),
        (inp("relay", True), "light", ("light", None, None)),
        (inp("led", True), "switch", ("switch", "switch", None)),
        (Info("any", 2), "switch", ("switch", "switch", None)),
        (Info("any", 2), "number", ("number", None, None)),
        (out("temperature", 1.5), "sensor", ("sensor", "temperature", "measurement")),
    ],
)
def test_valid_platform_overrides(
    info: Info, platform: str, expected: tuple[str, str | None, str | None]
) -> None:
    result = map_resource_with_notes(info, ResourceOverride(platform=platform))
    spec = result.specs[0]
    assert (spec.platform, spec.device_class, spec.state_class) == expected
    assert result.notes == []
    if spec.platform == "light":
        assert spec.light == LightSpec(color_modes=frozenset({"onoff"}))
    if spec.platform == "number":
        assert spec.number is not None


def test_override_binary_sensor_device_class() -> None:
    spec = one(out("contact", True), ResourceOverride(device_class="window"))
    assert spec.device_class == "window"


def test_field_and_resource_overrides_in_map_device() -> None:
    resources = {"env": out("env", {"temperature": 20, "a": 1, "b": 2})}
    overrides = {
        "env": ResourceOverride(device_class="voltage"),
        "env/a": ResourceOverride(unit="mV"),
        "env/b": ResourceOverride(device_class=""),
    }
    specs = by_key(map_device(resources, overrides))
    assert (specs["env/temperature"].device_class, specs["env/temperature"].unit) == (
        "voltage", "V",
    )  # fmt: skip
    assert (specs["env/a"].device_class, specs["env/a"].unit) == ("voltage", "mV")
    assert specs["env/b"].device_class is None
    # map_resource with only the mapping finds the resource-level entry itself.
    again = by_key(map_resource(resources["env"], overrides=overrides))
    assert again == specs


def test_fn4_field_override_keys() -> None:
    info = Info("calc", 4, sample_in={"x": 1}, sample_out={"power": 2})
    specs = by_key(map_device({"calc": info}, {"calc/out.power": ResourceOverride(unit="kW")}))
    assert specs["calc/out.power"].unit == "kW"
    assert specs["calc/in.x"].unit is None


def test_valid_platforms() -> None:
    assert valid_platforms(out("temperature", 1)) == ["sensor"]
    assert valid_platforms(out("door", True)) == ["sensor", "binary_sensor"]
    assert valid_platforms(inp("led", True)) == ["switch", "light"]
    assert valid_platforms(inp("servo", 1)) == ["number"]
    assert valid_platforms(inp("msg", "x")) == ["text"]
    assert valid_platforms(Info("any", 2)) == ["switch", "number", "text"]
    assert valid_platforms(Info("go", 1)) == ["button"]
    assert valid_platforms(inp("rgb", {"r": 1, "g": 2, "b": 3})) == ["light"]
    mixed = out("env", {"t": 1, "ok": True})
    assert valid_platforms(mixed) == ["sensor", "binary_sensor"]
    assert valid_platforms(mixed, "env/t") == ["sensor"]
    assert valid_platforms(out("$ota", 1)) == []


def test_option_flow_helpers() -> None:
    assert "temperature" in device_classes_for("sensor")
    assert "outlet" in device_classes_for("switch")
    assert device_classes_for("text") == []
    assert units_for("sensor", "temperature") == ["K", "°C", "°F"]
    assert units_for("sensor", "aqi") == []
    assert units_for("sensor", None) is None
    assert units_for("sensor", "unknown_class") is None
    assert units_for("switch", None) == []


@pytest.mark.parametrize("name", ["led1", "lamp2", "Light_3"])
def test_light_words_with_trailing_digits(name: str) -> None:
    assert one(inp(name, True)).platform == "light"
    assert one(inp(name, {"on": True, "brightness": 10})).platform == "light"


# ------------------------------------------------ what a new user found (issue 13)


def test_function_outputs_are_results_not_measurements() -> None:
    specs = by_key(map_resource(Info("calc", 4, sample_in={"x": 1.0}, sample_out={"y": 2.0})))
    output = specs["calc/out.y"]
    assert output.platform == "sensor"
    assert output.state_class is None


def test_plain_outputs_stay_measurements() -> None:
    assert one(out("fan_speed", 40)).state_class == "measurement"


@pytest.mark.parametrize(
    ("name", "icon"),
    [
        ("count", "mdi:counter"),
        ("status", "mdi:list-status"),
        ("tank_level", "mdi:gauge"),
        ("fan_speed", "mdi:fan"),
    ],
)
def test_icons_from_names(name: str, icon: str) -> None:
    assert one(out(name, 3)).icon == icon


def test_no_icon_where_the_device_class_has_one() -> None:
    spec = one(out("temperature", 21.5))
    assert spec.device_class == "temperature"
    assert spec.icon is None


@pytest.mark.parametrize(
    ("name", "sample", "low", "high", "unit"),
    [
        ("fan_speed", 40, 0.0, 100.0, None),
        ("schedule_hour", 7, 0.0, 23.0, "h"),
        ("start_minute", 30, 0.0, 59.0, "min"),
    ],
)
def test_number_ranges_from_names(
    name: str, sample: Any, low: float, high: float, unit: str | None
) -> None:
    spec = one(inp(name, sample))
    assert spec.number is not None
    assert (spec.number.min, spec.number.max, spec.number.step) == (low, high, 1.0)
    assert spec.unit == unit


def test_number_range_from_the_description_wins() -> None:
    spec = one(Info("gain", 2, sample_in=3, raw={"fn": 2, "min": 1, "max": 10, "step": 0.5}))
    assert spec.number is not None
    assert (spec.number.min, spec.number.max, spec.number.step, spec.number.mode) == (
        1.0,
        10.0,
        0.5,
        "slider",
    )


def test_description_range_that_the_sample_contradicts_is_ignored() -> None:
    spec = one(Info("gain", 2, sample_in=50, raw={"fn": 2, "min": 1, "max": 10}))
    assert spec.number is not None
    assert spec.number.max > 10


def test_number_range_override() -> None:
    info = inp("fan_speed", 40)
    spec = one(info, ResourceOverride(number_min=10, number_max=90, number_step=5))
    assert spec.number is not None
    assert (spec.number.min, spec.number.max, spec.number.step) == (10, 90, 5)
    result = map_resource_with_notes(info, ResourceOverride(number_min=90, number_max=10))
    assert result.specs == map_resource(info)
    assert result.notes


def test_firmware_version_from_properties() -> None:
    """The device page's firmware version comes from a property, most specific name first."""
    from iotmp.ha_mapping import firmware_version

    def props(**values: object) -> list[dict[str, object]]:
        return [{"property": name, "value": value} for name, value in values.items()]

    assert firmware_version(props(version="1.0", firmware_version="2.3.1")) == "2.3.1"
    assert firmware_version(props(firmware={"version": "4.2", "build": 7})) == "4.2"
    assert firmware_version(props(fw_version=3)) == "3"
    assert firmware_version(props(version=True)) is None
    assert firmware_version(props(version="x" * 65, firmware="bad\nline")) is None
    assert firmware_version(props(config={"version": "9"})) is None
    assert firmware_version([]) is None
