"""Property tests: the mapping never raises and keeps keys unique and stable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotmp.ha_mapping import (
    PLATFORMS,
    ResourceOverride,
    map_device,
    map_device_with_notes,
    map_resource,
    valid_platforms,
)
from iotmp.protocol.message import ABSENT


@dataclass(frozen=True)
class Info:
    name: Any
    fn: Any
    sample_in: Any = ABSENT
    sample_out: Any = ABSENT


WORDS = [
    "temperature", "temp", "humidity", "energy", "power", "rgb", "r", "g", "b", "on",
    "state", "brightness", "led", "lamp", "in", "out", "a", "a.b", "a/b", "$x", "",
    "count", "total", "pm2_5", "GPIO_16", "température", "環境", "~2", "value",
]  # fmt: skip
names = st.one_of(st.sampled_from(WORDS), st.text(max_size=12))
scalars = st.one_of(
    st.none(),
    st.just(ABSENT),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=4),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(names, children, max_size=5),
    ),
    max_leaves=25,
)
fns = st.one_of(
    st.integers(min_value=-1, max_value=6), st.none(), st.booleans(), st.text(max_size=2)
)
infos = st.builds(Info, name=names, fn=fns, sample_in=values, sample_out=values)
devices = st.dictionaries(names, infos, max_size=8).map(
    lambda d: {key: Info(key, info.fn, info.sample_in, info.sample_out) for key, info in d.items()}
)
overrides = st.dictionaries(
    names,
    st.builds(
        ResourceOverride,
        platform=st.one_of(st.none(), st.sampled_from([*PLATFORMS, "", "bogus"])),
        device_class=st.one_of(st.none(), st.sampled_from(["", "temperature", "energy", "door"])),
        unit=st.one_of(st.none(), st.sampled_from(["", "°C", "kWh", "%", "µg/m³", "x"])),
    ),
    max_size=4,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(devices, overrides)
def test_map_device_never_raises_and_keys_unique(
    resources: dict[str, Info], chosen: dict[str, ResourceOverride]
) -> None:
    result = map_device_with_notes(resources, chosen)
    keys = [spec.key for spec in result.specs]
    assert len(keys) == len(set(keys))
    for spec in result.specs:
        assert spec.platform in PLATFORMS
        assert spec.direction in {"in", "out"}
        assert isinstance(spec.name, str)
        assert spec.name
        assert spec.resource in resources
        assert not spec.resource.startswith("$")
        assert (spec.number is not None) == (spec.platform == "number")
        assert (spec.light is not None) == (spec.platform == "light")
        if spec.number is not None:
            assert spec.number.min < spec.number.max
            assert spec.number.step > 0
        if spec.direction == "out":
            assert spec.platform in {"sensor", "binary_sensor"}
    # Same input, same output (keys are stable).
    assert map_device(resources, chosen) == result.specs


@SETTINGS
@given(infos)
def test_map_resource_never_raises(info: Info) -> None:
    specs = map_resource(info)
    keys = [spec.key for spec in specs]
    if isinstance(info.name, str):
        assert all(key == info.name or key.startswith(f"{info.name}/") for key in keys)
    for spec in specs:
        assert spec.platform in valid_platforms(info, spec.key)
