"""Behaviours are pure and deterministic with a seeded RNG; the physics holds."""

from __future__ import annotations

import random
from typing import Any

import pytest

from iotmp.sim.behaviours import (
    BEHAVIOURS,
    InputContext,
    ResourceError,
    TickContext,
    calc,
    counter,
    energy,
    plug_power,
    random_walk,
    store,
    uptime_ms,
)
from iotmp.sim.profile import builtin_profiles
from iotmp.sim.simulation import Command, DeviceSimulation


def _ctx(
    value: Any,
    params: dict[str, Any],
    *,
    state: dict[str, Any] | None = None,
    seed: int = 1,
    dt: float = 1.0,
    tod: float = 0.0,
    elapsed: float = 0.0,
) -> TickContext:
    return TickContext(
        value=value,
        state=state or {},
        params=params,
        rng=random.Random(seed),
        dt=dt,
        elapsed=elapsed,
        time_of_day=tod,
    )


def test_random_walk_is_deterministic_and_bounded() -> None:
    params = {"min": 15, "max": 30, "mean": 21.5, "diurnal": 3, "step": 2.0, "decimals": 2}

    def run(seed: int) -> list[float]:
        rng = random.Random(seed)
        value: float = 21.5
        out = []
        for i in range(2000):
            value = random_walk(TickContext(value, {}, params, rng, 60.0, 0.0, i * 60.0 % 86400))
            out.append(value)
        return out

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    assert all(15 <= v <= 30 for v in first)
    assert min(first) < 21 and max(first) > 22  # it actually moves


def test_random_walk_object_fields() -> None:
    params = {"fields": {"temperature": {"min": 0, "max": 1}, "humidity": {"min": 40, "max": 41}}}
    value = {"temperature": 0.5, "humidity": 40.5}
    rng = random.Random(3)
    for _ in range(500):
        value = random_walk(TickContext(value, {}, params, rng, 5.0))
        assert 0 <= value["temperature"] <= 1
        assert 40 <= value["humidity"] <= 41


def test_random_walk_follows_the_daily_cycle() -> None:
    params = {
        "min": 0,
        "max": 40,
        "mean": 20,
        "diurnal": 5,
        "peak_hour": 15,
        "step": 0,
        "reversion": 1,
    }
    assert random_walk(_ctx(20.0, params, tod=15 * 3600)) == 25
    assert random_walk(_ctx(20.0, params, tod=3 * 3600)) == 15


def test_plug_power_off_is_zero_and_on_is_in_range() -> None:
    params = {"relay": "relay", "min": 60, "max": 2000, "noise": 0.05}
    rng = random.Random(5)
    power = 0.0
    for _ in range(300):
        power = plug_power(TickContext(power, {"relay": True}, params, rng, 1.0))
        assert 60 <= power <= 2000
    assert plug_power(TickContext(power, {"relay": False}, params, rng, 1.0)) == 0.0
    # Object "relay" resources use their "on" field.
    assert plug_power(_ctx(0.0, params, state={"relay": {"on": False}})) == 0.0
    assert plug_power(_ctx(0.0, params, state={"relay": {"on": True}})) >= 60


def test_energy_never_decreases_and_integrates_power() -> None:
    params = {"power": "power", "decimals": 6}
    assert energy(_ctx(0.0, params, state={"power": 3600.0}, dt=1.0)) == pytest.approx(0.001)
    value = 1.25
    rng = random.Random(9)
    for _ in range(500):
        watts = rng.choice([0.0, -50.0, 0.4, 1500.0, None])
        new = energy(TickContext(value, {"power": watts}, params, rng, rng.uniform(0, 2)))
        assert new >= value
        value = new
    assert energy(_ctx(2.0, params, state={"power": 0.0})) == 2.0


def test_counter_uptime_calc() -> None:
    assert counter(_ctx(4, {})) == 5
    assert counter(_ctx(4, {"step": 3})) == 7
    assert uptime_ms(_ctx(0, {}, elapsed=1.5)) == 1500
    result = calc(InputContext("calc", {"a": 0, "b": 0}, {"a": 3, "b": 4}, None, {}))
    assert result.input == {"a": 3, "b": 4}
    assert result.output == {"sum": 7, "product": 12}
    for bad in ({"a": "x", "b": 1}, {"a": True, "b": 1}, "nope", {"a": None, "b": 2}):
        with pytest.raises(ResourceError) as info:
            calc(InputContext("calc", {}, bad, None, {}))
        assert info.value.code == 400


def test_store_shapes_merges_and_ranges() -> None:
    initial = {"on": False, "brightness": 128, "r": 0, "g": 0, "b": 0}
    params = {"ranges": {"brightness": [0, 255]}}
    res = store(
        InputContext("light", dict(initial), {"on": 1, "brightness": 10.0}, initial, params)
    )
    assert res.input == {"on": True, "brightness": 10, "r": 0, "g": 0, "b": 0}
    assert isinstance(res.input["brightness"], int)
    for bad, why in (
        ({"brightness": 300}, "between 0 and 255"),
        ({"on": "yes"}, "boolean"),
        ({"x": 1}, "no field 'x'"),
        (5, "must be an object"),
    ):
        with pytest.raises(ResourceError, match=why) as info:
            store(InputContext("light", dict(initial), bad, initial, params))
        assert info.value.code == 400
    assert store(InputContext("mode", "a", "b", "auto", {})).input == "b"
    with pytest.raises(ResourceError, match="between 5 and 35"):
        store(InputContext("setpoint", 20, 40, 21.5, {"ranges": {"": [5, 35]}}))


def test_every_registered_behaviour_has_an_action() -> None:
    for name, behaviour in BEHAVIOURS.items():
        assert behaviour.name == name
        assert behaviour.kinds
        if "run" not in behaviour.kinds:
            assert (behaviour.tick is None) != (behaviour.on_input is None), name


def test_simulation_smart_plug_physics() -> None:
    sim = DeviceSimulation(builtin_profiles()["smart_plug"], seed=11)
    energies = []
    for i in range(200):
        if i == 50:
            sim.write("relay", True)
        if i == 150:
            sim.write("relay", False)
        sim.tick(1.0, time_of_day=0)
        energies.append(sim.state["energy"])
        if 60 <= i < 150:
            assert 60 <= sim.state["power"] <= 2000
        if i < 50 or i >= 155:
            assert sim.state["power"] == 0.0
        assert 220 <= sim.state["voltage"] <= 240
    assert energies == sorted(energies)
    assert energies[-1] > 0
    assert energies[-1] == energies[-30]  # off: no more energy
    assert sim.commands == [Command("relay", True), Command("relay", False)]


def test_simulation_is_reproducible() -> None:
    def run() -> list[Any]:
        sim = DeviceSimulation(builtin_profiles()["environment_sensor"], seed=42)
        return [
            sim.tick(1.0, time_of_day=1000.0) and dict(sim.state["environment"]) for _ in range(30)
        ]

    assert run() == run()


def test_simulation_streams_and_every() -> None:
    sim = DeviceSimulation(builtin_profiles()["counter"], seed=1)
    assert sim.tick(0.1) == ["count"]
    assert sim.tick(0.1) == ["count"]
    assert sim.state == {"count": 2}
    env = DeviceSimulation(builtin_profiles()["environment_sensor"], seed=1)
    assert env.profile["environment"].every == 3
    first = dict(env.state["environment"])
    assert env.tick(1.0) == [] and env.tick(1.0) == []
    assert env.state["environment"] == first
    assert env.tick(1.0) == ["environment"]


def test_simulation_controller() -> None:
    sim = DeviceSimulation(builtin_profiles()["controller"], seed=1)
    assert sim.state["reboot"] == 0
    sim.run("reboot")
    sim.run("reboot")
    assert sim.state["reboot"] == 2
    assert sim.write("calc", {"a": 2, "b": 5}) == {"sum": 7, "product": 10}
    assert sim.state["calc"] == {"in": {"a": 2, "b": 5}, "out": {"sum": 7, "product": 10}}
    assert sim.input_value("calc") == {"a": 2, "b": 5}
    with pytest.raises(ResourceError):
        sim.write("calc", {"a": "two", "b": 5})
    assert sim.state["calc"]["out"] == {"sum": 7, "product": 10}
    sim.write("setpoint", 23)
    assert sim.state["setpoint"] == 23
    with pytest.raises(ResourceError):
        sim.write("status", "x")
    assert sim.commands[0] == Command("reboot", None)
