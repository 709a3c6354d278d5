"""Profiles: every shipped profile loads; bad profiles fail with a clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iotmp.sim.profile import (
    ProfileError,
    builtin_profile_names,
    builtin_profiles,
    load_profile,
    parse_profile,
    profile_for_device_id,
)

EXPECTED = {
    "environment_sensor": "env-sensor",
    "smart_plug": "smart-plug",
    "rgb_lamp": "rgb-lamp",
    "rgb_strip": "rgb-strip",
    "gpio_board": "gpio-board",
    "counter": "counter",
    "controller": "controller",
}


def test_builtin_profiles_load_and_have_expected_ids() -> None:
    profiles = builtin_profiles()
    assert set(EXPECTED) <= set(profiles)
    for name, device_id in EXPECTED.items():
        profile = profiles[name]
        assert profile.name == name
        assert profile.device_id == device_id
        assert profile.device_name
        assert profile_for_device_id(device_id) is profile
        assert load_profile(name) is profile


@pytest.mark.parametrize("name", builtin_profile_names())
def test_each_profile_file_validates(name: str) -> None:
    profile = load_profile(
        Path(__file__).parents[2] / "iotmp" / "sim" / "profiles" / f"{name}.json"
    )
    assert profile.resources
    for spec in profile.resources:
        assert spec.fn in (1, 2, 3, 4)


def test_required_resources() -> None:
    p = builtin_profiles()
    env = p["environment_sensor"]
    assert env.describe()["$ota/options"] == {"fn": 3}
    assert env["environment"].stream
    assert set(env["environment"].output) == {"temperature", "humidity", "pressure"}
    plug = p["smart_plug"]
    assert plug.describe() == {
        "relay": {"fn": 2},
        "power": {"fn": 3},
        "energy": {"fn": 3},
        "voltage": {"fn": 3},
    }
    assert plug["relay"].input is False
    assert set(p["rgb_lamp"]["light"].input) == {"on", "brightness", "r", "g", "b"}
    assert set(p["rgb_strip"]["rgb"].input) == {"r", "g", "b"}
    gpio = p["gpio_board"].describe()
    assert gpio["GPIO_16"] == gpio["GPIO_17"] == gpio["led"] == {"fn": 2}
    assert gpio["millis"] == {"fn": 3}
    assert p["counter"]["count"].stream
    ctl = p["controller"].describe()
    assert ctl["reboot"] == {"fn": 1}
    assert ctl["setpoint"] == {"fn": 2}
    assert ctl["calc"] == {"fn": 4}


def _kinds_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "rgb" if {"r", "g", "b"} <= set(value) else "object"
    return type(value).__name__


def test_profiles_cover_every_mapping_row() -> None:
    """DESIGN.md's resource -> entity table: every row appears in some profile."""
    rows: set[str] = set()
    for profile in builtin_profiles().values():
        for spec in profile.resources:
            if spec.name.startswith("$"):
                continue
            if spec.kind == "run":
                rows.add("run")
            elif spec.kind == "output":
                rows.add(f"output {_kinds_of(spec.output)}")
            elif spec.kind == "input":
                rows.add(f"input {_kinds_of(spec.input)}")
            else:
                rows.add("input_output")
    assert rows >= {
        "run",
        "output number",
        "output bool",
        "output string",
        "output object",
        "input bool",
        "input number",
        "input string",
        "input rgb",
        "input object",
        "input_output",
    }


def _profile(**resource: Any) -> dict[str, Any]:
    return {"name": "t", "resources": [resource]}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([], "must be an object"),
        ({"name": "t"}, "'resources' must be a non-empty list"),
        ({"name": "t", "resources": [], "colour": 1}, "unknown key(s) colour"),
        (_profile(kind="input", value=1), "'name' must be a non-empty string"),
        (_profile(name="x", kind="sensor", value=1), "resource 'x': 'kind' must be one of"),
        (_profile(name="x", kind="input"), "resource 'x': an input resource needs 'value'"),
        (_profile(name="x", kind="output"), "resource 'x': an output resource needs 'value'"),
        (_profile(name="x", kind="run", value=1), "resource 'x': a run resource takes no"),
        (_profile(name="x", kind="input_output", input=1), "needs 'input' and 'output'"),
        (_profile(name="x", kind="output", value=1, behaviour="warp"), "unknown behaviour 'warp'"),
        (
            _profile(name="x", kind="input", value=1, behaviour="counter"),
            "does not fit kind 'input'",
        ),
        (
            _profile(name="x", kind="output", value=1, behaviour="random_walk", params={"min": 5}),
            "resource 'x': behaviour 'random_walk': param 'max' is required",
        ),
        (
            _profile(
                name="x",
                kind="output",
                value=1,
                behaviour="random_walk",
                params={"min": 5, "max": 1},
            ),
            "'min' (5) must be below 'max' (1)",
        ),
        (
            _profile(
                name="x", kind="output", value=0, behaviour="plug_power", params={"relay": "nope"}
            ),
            "param 'relay' names unknown resource 'nope'",
        ),
        (
            _profile(name="x", kind="output", value=0, behaviour="counter", params={"stp": 1}),
            "unknown param(s) stp",
        ),
        (
            _profile(name="x", kind="output", value=0, stream="yes"),
            "'stream' must be true or false",
        ),
        (_profile(name="x", kind="output", value=0, every=0), "'every' must be a whole number"),
        (_profile(name="x", kind="output", value=0, colour=1), "unknown key(s) colour"),
        (
            _profile(name="x", kind="input", value={"r": 0}, params={"ranges": {"g": [0, 255]}}),
            "ranges: 'g' is not a field",
        ),
        (
            {
                "name": "t",
                "resources": [{"name": "x", "kind": "run"}, {"name": "x", "kind": "run"}],
            },
            "resource 'x': declared twice",
        ),
        (
            {"name": "t", "device_id": "has space", "resources": [{"name": "x", "kind": "run"}]},
            "'device_id' must be",
        ),
    ],
)
def test_bad_profiles_name_the_problem(data: Any, fragment: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(data, source="bad.json")
    message = str(info.value)
    assert message.startswith("bad.json: ")
    assert fragment in message


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="profile file not found"):
        load_profile(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"resources": [\n  {"name": "x",,}\n]}')
    with pytest.raises(ProfileError, match=r"broken.json: invalid JSON at line 2"):
        load_profile(broken)
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        load_profile("nope")
    with pytest.raises(ProfileError, match="no built-in profile for device id"):
        profile_for_device_id("nope")


def test_user_profile_file_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "my_thing.json"
    path.write_text(
        json.dumps(
            {
                "resources": [
                    {
                        "name": "temperature",
                        "kind": "output",
                        "value": 20.0,
                        "behaviour": "random_walk",
                        "params": {"min": 10, "max": 30},
                    },
                    {"name": "led", "kind": "input", "value": False},
                ]
            }
        )
    )
    profile = load_profile(str(path))
    assert profile.name == "my_thing"
    assert profile.device_id == "my-thing"
    assert profile.device_name == "My thing"
    assert profile["led"].behaviour == "store"
    assert profile["led"].stream is True
    assert profile["temperature"].stream is False
    assert profile.describe() == {"temperature": {"fn": 3}, "led": {"fn": 2}}


def test_yaml_profile(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "y.yaml"
    path.write_text(
        "name: y\nresources:\n  - name: count\n    kind: output\n    value: 0\n"
        "    behaviour: counter\n"
    )
    assert load_profile(path).describe() == {"count": {"fn": 3}}
