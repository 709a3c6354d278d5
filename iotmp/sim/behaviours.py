"""Simulated physics of virtual devices.

Every behaviour is a pure function of its inputs: the resource's current value,
a read-only view of the whole device state, the profile's parameters, a
``random.Random`` (seed it and the run is reproducible) and the time step.
Nothing here touches the network, the clock or global random state, so tests
can drive the physics tick by tick.

There are three sorts of behaviour, each registered in :data:`BEHAVIOURS`:

* *tick* behaviours compute a resource's next value (outputs, or the output of
  an input_output resource) once per tick: ``random_walk``, ``plug_power``,
  ``energy``, ``counter``, ``uptime_ms``, ``flip``, ``choice``, ``constant``;
* *input* behaviours take a value written by a client and return the new input
  state and output, or raise :class:`ResourceError`: ``store`` (the default for
  inputs), ``calc``, ``echo``;
* *run* behaviours react to a run resource being called: ``count`` (the default).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

#: Resource kinds, as written in profiles, and their IOTMP ``fn`` codes.
KIND_FN: Final[Mapping[str, int]] = {"run": 1, "input": 2, "output": 3, "input_output": 4}

SECONDS_PER_DAY: Final = 86400.0


class ResourceError(Exception):
    """A handler refused an input; sent to the caller as ERROR with ``code``.

    ``message`` becomes the ERROR payload ``{"error": message}``, as the
    reference firmware does with ``set_error``.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TickContext:
    """Everything a tick behaviour may look at."""

    value: Any
    """The resource's current value (its output)."""
    state: Mapping[str, Any]
    """The whole device state (resource name -> value), read-only."""
    params: Mapping[str, Any]
    rng: random.Random
    dt: float
    """Seconds of simulated time since this resource's previous update."""
    elapsed: float = 0.0
    """Seconds since the device started."""
    time_of_day: float = 12 * 3600.0
    """Local seconds since midnight (for diurnal cycles)."""


@dataclass(frozen=True, slots=True)
class InputContext:
    """Everything an input behaviour may look at."""

    name: str
    current: Any
    """The current input state."""
    value: Any
    """The value the client wrote (never empty: empty reads are answered by the device)."""
    initial: Any
    """The initial input value from the profile (gives the expected shape and types)."""
    params: Mapping[str, Any]
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InputResult:
    """What an input behaviour produced."""

    input: Any
    """New input state (echoed on reads and streams)."""
    output: Any = None
    """Output value (input_output resources only)."""


TickFn = Callable[[TickContext], Any]
InputFn = Callable[[InputContext], InputResult]
ParamCheck = Callable[[Mapping[str, Any], Any], None]
"""Validates a behaviour's params against the resource's initial value; raises ValueError."""


@dataclass(frozen=True, slots=True)
class Behaviour:
    """A registered behaviour: what it does and which resource kinds it fits."""

    name: str
    kinds: frozenset[str]
    description: str
    tick: TickFn | None = None
    on_input: InputFn | None = None
    check: ParamCheck | None = None
    depends_on: tuple[str, ...] = ()
    """Names of params that refer to other resources of the same device."""


# --------------------------------------------------------------------------- helpers


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or float (bools excluded), finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not (isinstance(value, float) and not math.isfinite(value))


def _number(params: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = params.get(key, default)
    if not is_number(value):
        raise ValueError(f"param '{key}' must be a number, got {value!r}")
    return float(value)


def _check_numbers(params: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if key in params and not is_number(params[key]):
            raise ValueError(f"param '{key}' must be a number, got {params[key]!r}")


def _check_known(params: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"unknown param(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )


def _round(value: float, params: Mapping[str, Any], default: int) -> float:
    decimals = params.get("decimals", default)
    return round(value, int(decimals))


def truthy_state(state: Mapping[str, Any], resource: str, field_name: str | None = None) -> bool:
    """Whether another resource (optionally one field of an object) is "on"."""
    value = state.get(resource)
    if isinstance(value, Mapping):
        if field_name is not None:
            value = value.get(field_name)
        else:
            value = value.get("on", value.get("state"))
    return bool(value)


# --------------------------------------------------------------------------- tick behaviours


_WALK_KEYS = {"min", "max", "mean", "step", "reversion", "diurnal", "peak_hour", "decimals"}


def _check_walk_one(params: Mapping[str, Any], where: str = "") -> None:
    prefix = f"{where}: " if where else ""
    try:
        _check_known(params, _WALK_KEYS)
        for key in ("min", "max"):
            if key not in params:
                raise ValueError(f"param '{key}' is required")
        _check_numbers(params, *_WALK_KEYS)
        if params["min"] >= params["max"]:
            raise ValueError(f"'min' ({params['min']}) must be below 'max' ({params['max']})")
        mean = params.get("mean")
        if mean is not None and not params["min"] <= mean <= params["max"]:
            raise ValueError(f"'mean' ({mean}) must lie within min..max")
        if params.get("step", 1) < 0 or params.get("reversion", 0) < 0:
            raise ValueError("'step' and 'reversion' must not be negative")
    except ValueError as err:
        raise ValueError(f"{prefix}{err}") from None


def _check_random_walk(params: Mapping[str, Any], initial: Any) -> None:
    if "fields" in params:
        _check_known(params, {"fields"})
        fields = params["fields"]
        if not isinstance(fields, Mapping) or not fields:
            raise ValueError("param 'fields' must be a non-empty object of field -> walk params")
        if not isinstance(initial, Mapping):
            raise ValueError("with 'fields' the initial value must be an object")
        for name, sub in fields.items():
            if not isinstance(sub, Mapping):
                raise ValueError(f"field '{name}': params must be an object")
            if name not in initial:
                raise ValueError(f"field '{name}' is missing from the initial value")
            _check_walk_one(sub, f"field '{name}'")
            if not is_number(initial[name]):
                raise ValueError(f"field '{name}': initial value must be a number")
    else:
        _check_walk_one(params)
        if not is_number(initial):
            raise ValueError("initial value must be a number (or use 'fields' for an object)")


def walk_step(
    value: float, params: Mapping[str, Any], rng: random.Random, dt: float, time_of_day: float
) -> float:
    """One step of a bounded, mean-reverting random walk with an optional daily cycle.

    The value is pulled towards ``mean + diurnal * cos(2 pi (t - peak_hour) / 1 day)``
    at ``reversion`` per second and jitters by ``step`` per sqrt(second); the
    result is clamped to ``min..max`` and rounded to ``decimals`` (default 2).
    """
    low = _number(params, "min")
    high = _number(params, "max")
    mean = _number(params, "mean", (low + high) / 2)
    step = _number(params, "step", (high - low) / 100)
    reversion = _number(params, "reversion", 0.02)
    diurnal = _number(params, "diurnal", 0.0)
    peak = _number(params, "peak_hour", 15.0) * 3600.0
    dt = max(dt, 0.0)
    target = mean + diurnal * math.cos(2 * math.pi * (time_of_day - peak) / SECONDS_PER_DAY)
    target = min(max(target, low), high)
    current = float(value) if is_number(value) else target
    pull = min(reversion * dt, 1.0)
    moved = current + pull * (target - current) + rng.gauss(0.0, step * math.sqrt(dt))
    return _round(min(max(moved, low), high), params, 2)


def random_walk(ctx: TickContext) -> Any:
    """Drifting sensor: a number, or an object whose ``fields`` each drift."""
    fields = ctx.params.get("fields")
    if isinstance(fields, Mapping):
        current = ctx.value if isinstance(ctx.value, Mapping) else {}
        new = dict(current)
        for name, sub in fields.items():
            new[name] = walk_step(current.get(name, 0.0), sub, ctx.rng, ctx.dt, ctx.time_of_day)
        return new
    return walk_step(ctx.value, ctx.params, ctx.rng, ctx.dt, ctx.time_of_day)


def _check_plug_power(params: Mapping[str, Any], initial: Any) -> None:
    _check_known(params, {"relay", "field", "min", "max", "standby", "noise", "decimals"})
    if not isinstance(params.get("relay"), str):
        raise ValueError("param 'relay' (name of the on/off resource) is required")
    _check_numbers(params, "min", "max", "standby", "noise", "decimals")
    if _number(params, "min", 60) >= _number(params, "max", 2000):
        raise ValueError("'min' must be below 'max'")
    if not is_number(initial):
        raise ValueError("initial value must be a number")


def plug_power(ctx: TickContext) -> float:
    """Power draw in W: ``standby`` (default 0) when the relay is off, noisy load when on.

    When the relay turns on the load picks a level in ``min..max``; while on it
    wanders by ``noise`` (fraction, default 0.03) around that level.
    """
    params = ctx.params
    low = _number(params, "min", 60.0)
    high = _number(params, "max", 2000.0)
    standby = _number(params, "standby", 0.0)
    if not truthy_state(ctx.state, str(params["relay"]), params.get("field")):
        return _round(standby, params, 1)
    current = float(ctx.value) if is_number(ctx.value) else 0.0
    if not low <= current <= high:
        current = ctx.rng.uniform(low, high)
    noise = _number(params, "noise", 0.03)
    moved = current + ctx.rng.gauss(0.0, noise * current)
    return _round(min(max(moved, low), high), params, 1)


def _check_energy(params: Mapping[str, Any], initial: Any) -> None:
    _check_known(params, {"power", "time_scale", "decimals"})
    if not isinstance(params.get("power"), str):
        raise ValueError("param 'power' (name of the power resource, in W) is required")
    _check_numbers(params, "time_scale", "decimals")
    if _number(params, "time_scale", 1.0) < 0:
        raise ValueError("'time_scale' must not be negative")
    if not is_number(initial) or initial < 0:
        raise ValueError("initial value must be a non-negative number (kWh)")


def energy(ctx: TickContext) -> float:
    """Energy meter in kWh: integrates the ``power`` resource (W) over time; never decreases.

    ``time_scale`` (default 1) speeds the meter up for demos.
    """
    power: Any = ctx.state.get(str(ctx.params["power"]))
    watts = max(float(power), 0.0) if is_number(power) else 0.0
    scale = _number(ctx.params, "time_scale", 1.0)
    current = float(ctx.value) if is_number(ctx.value) else 0.0
    added = watts * max(ctx.dt, 0.0) * scale / 3.6e6
    # Rounding must not make the meter go backwards.
    return max(current, _round(current + added, ctx.params, 6))


def _check_counter(params: Mapping[str, Any], initial: Any) -> None:
    _check_known(params, {"step"})
    _check_numbers(params, "step")
    if not is_number(initial):
        raise ValueError("initial value must be a number")


def counter(ctx: TickContext) -> int | float:
    """Add ``step`` (default 1) every update."""
    step = ctx.params.get("step", 1)
    current = ctx.value if is_number(ctx.value) else 0
    result: int | float = current + step
    return result


def _check_probability(params: Mapping[str, Any]) -> None:
    _check_numbers(params, "probability")
    if not 0 <= params.get("probability", 0.1) <= 1:
        raise ValueError("'probability' must be between 0 and 1")


def _check_flip(params: Mapping[str, Any], initial: Any) -> None:
    _check_known(params, {"probability"})
    _check_probability(params)
    if not isinstance(initial, bool):
        raise ValueError("initial value must be true or false")


def flip(ctx: TickContext) -> bool:
    """Toggle a digital reading with ``probability`` (default 0.1) per update."""
    current = bool(ctx.value)
    if ctx.rng.random() < float(ctx.params.get("probability", 0.1)):
        return not current
    return current


def _check_choice(params: Mapping[str, Any], initial: Any) -> None:
    _check_known(params, {"values", "probability"})
    values = params.get("values")
    if not isinstance(values, list) or not values:
        raise ValueError("param 'values' must be a non-empty list")
    _check_probability(params)
    if initial not in values:
        raise ValueError(f"initial value {initial!r} is not one of 'values'")


def choice(ctx: TickContext) -> Any:
    """Move to a random other entry of ``values`` with ``probability`` per update."""
    values = list(ctx.params["values"])
    if ctx.rng.random() < float(ctx.params.get("probability", 0.1)):
        others = [v for v in values if v != ctx.value] or values
        return ctx.rng.choice(others)
    return ctx.value


def _check_no_params(params: Mapping[str, Any], initial: Any) -> None:
    _check_known(params, set())


def uptime_ms(ctx: TickContext) -> int:
    """Milliseconds since the device started (Arduino ``millis()``)."""
    return int(ctx.elapsed * 1000)


def constant(ctx: TickContext) -> Any:
    """Keep the value as it is."""
    return ctx.value


# --------------------------------------------------------------------------- input behaviours


def coerce(value: Any, like: Any, path: str) -> Any:
    """Convert a written value to the shape of ``like`` (the initial value) or raise 400.

    Numbers accept any number (a whole float becomes an int when ``like`` is an
    int), booleans accept booleans and 0/1, strings accept strings, objects
    accept objects whose keys all exist in ``like`` (validated recursively);
    a ``None`` initial value accepts anything.
    """
    if like is None:
        return value
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        if is_number(value) and value in (0, 1):
            return bool(value)
        raise ResourceError(400, f"{path} must be a boolean, got {value!r}")
    if is_number(like):
        if not is_number(value):
            raise ResourceError(400, f"{path} must be a number, got {value!r}")
        if isinstance(like, int) and isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if isinstance(like, str):
        if not isinstance(value, str):
            raise ResourceError(400, f"{path} must be a string, got {value!r}")
        return value
    if isinstance(like, Mapping):
        if not isinstance(value, Mapping):
            raise ResourceError(400, f"{path} must be an object, got {value!r}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in like:
                known = ", ".join(like)
                raise ResourceError(400, f"{path} has no field '{key}' (fields: {known})")
            out[key] = coerce(item, like[key], f"{path}.{key}")
        return out
    if isinstance(like, list):
        if not isinstance(value, list):
            raise ResourceError(400, f"{path} must be an array, got {value!r}")
        return value
    return value


def _check_ranges(ranges: Any, initial: Any) -> None:
    if not isinstance(ranges, Mapping):
        raise ValueError("param 'ranges' must be an object of field -> [min, max]")
    for key, bounds in ranges.items():
        if not (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(is_number(b) for b in bounds)
            and bounds[0] <= bounds[1]
        ):
            raise ValueError(f"ranges: '{key}' must be [min, max] with min <= max")
        if key != "" and not (isinstance(initial, Mapping) and key in initial):
            raise ValueError(f"ranges: '{key}' is not a field of the initial value")


def _check_store(params: Mapping[str, Any], initial: Any) -> None:
    _check_known(params, {"ranges", "replace"})
    if "ranges" in params:
        _check_ranges(params["ranges"], initial)
    if "replace" in params and not isinstance(params["replace"], bool):
        raise ValueError("param 'replace' must be true or false")


def _apply_ranges(name: str, value: Any, ranges: Mapping[str, Any]) -> None:
    for key, (low, high) in ranges.items():
        item = value if key == "" else (value.get(key) if isinstance(value, Mapping) else None)
        if is_number(item) and not low <= item <= high:
            label = name if key == "" else f"{name}.{key}"
            raise ResourceError(400, f"{label} must be between {low} and {high}, got {item}")


def store(ctx: InputContext) -> InputResult:
    """Default input handler: validate against the initial value's shape and keep it.

    An object write is merged into the current state (fields not written keep
    their value) unless ``replace`` is true. ``ranges`` bounds numbers:
    ``{"brightness": [0, 255]}`` for object fields, ``{"": [5, 30]}`` for a
    plain number; out-of-range writes are refused with 400.
    """
    value = coerce(ctx.value, ctx.initial, ctx.name)
    merge = not ctx.params.get("replace", False)
    if merge and isinstance(value, dict) and isinstance(ctx.current, Mapping):
        value = {**ctx.current, **value}
    _apply_ranges(ctx.name, value, ctx.params.get("ranges", {}))
    return InputResult(input=value, output=value)


def echo(ctx: InputContext) -> InputResult:
    """Input_output default: keep the input (no shape check) and return it as the output."""
    return InputResult(input=ctx.value, output=ctx.value)


def _check_calc(params: Mapping[str, Any], initial: Any) -> None:
    _check_known(params, set())


def calc(ctx: InputContext) -> InputResult:
    """Compute ``{"sum", "product"}`` of ``{"a", "b"}``; 400 when either is not a number."""
    value = ctx.value
    if not isinstance(value, Mapping):
        raise ResourceError(400, f"{ctx.name} needs numeric a and b")
    merged = {**ctx.current, **value} if isinstance(ctx.current, Mapping) else dict(value)
    a: Any = merged.get("a")
    b: Any = merged.get("b")
    if not (is_number(a) and is_number(b)):
        raise ResourceError(400, f"{ctx.name} needs numeric a and b")
    return InputResult(input={"a": a, "b": b}, output={"sum": a + b, "product": a * b})


def count_runs(count: Any) -> int:
    """Run behaviour ``count``: the number of times the resource was run."""
    return (count if isinstance(count, int) and not isinstance(count, bool) else 0) + 1


# --------------------------------------------------------------------------- registry

_OUT = frozenset({"output", "input_output"})
_IN = frozenset({"input", "input_output"})

BEHAVIOURS: Final[Mapping[str, Behaviour]] = {
    b.name: b
    for b in (
        Behaviour(
            "random_walk",
            _OUT,
            "bounded mean-reverting drift with optional daily cycle; number or object ('fields')",
            tick=random_walk,
            check=_check_random_walk,
        ),
        Behaviour(
            "plug_power",
            _OUT,
            "W drawn by a plug: standby when the 'relay' resource is off, noisy min..max when on",
            tick=plug_power,
            check=_check_plug_power,
            depends_on=("relay",),
        ),
        Behaviour(
            "energy",
            _OUT,
            "kWh meter integrating the 'power' resource; never decreases",
            tick=energy,
            check=_check_energy,
            depends_on=("power",),
        ),
        Behaviour(
            "counter",
            _OUT,
            "adds 'step' (default 1) every update",
            tick=counter,
            check=_check_counter,
        ),
        Behaviour(
            "uptime_ms",
            _OUT,
            "milliseconds since start (millis())",
            tick=uptime_ms,
            check=_check_no_params,
        ),
        Behaviour(
            "flip",
            _OUT,
            "boolean reading toggling with 'probability' per update",
            tick=flip,
            check=_check_flip,
        ),
        Behaviour(
            "choice",
            _OUT,
            "switches to a random other entry of 'values' with 'probability'",
            tick=choice,
            check=_check_choice,
        ),
        Behaviour("constant", _OUT, "value never changes", tick=constant, check=_check_no_params),
        Behaviour(
            "store",
            _IN,
            "keeps the written value (checked against the initial value's shape; 'ranges')",
            on_input=store,
            check=_check_store,
        ),
        Behaviour(
            "echo",
            _IN,
            "keeps any written value; output = input",
            on_input=echo,
            check=_check_no_params,
        ),
        Behaviour(
            "calc",
            frozenset({"input_output"}),
            "{a, b} -> {sum, product}; error 400 on non-numeric input",
            on_input=calc,
            check=_check_calc,
        ),
        Behaviour(
            "count", frozenset({"run"}), "counts runs in the device state", check=_check_no_params
        ),
    )
}

#: Behaviour used when a resource names none.
DEFAULT_BEHAVIOUR: Final[Mapping[str, str]] = {
    "run": "count",
    "input": "store",
    "output": "constant",
    "input_output": "echo",
}
