"""The network-free part of a virtual device: its state and how it evolves.

:class:`DeviceSimulation` owns the state dict of one device made from a
:class:`~iotmp.sim.profile.Profile`. It advances behaviours on :meth:`tick`,
applies client writes with :meth:`write`, counts runs with :meth:`run`, and
reports which resources changed so the networked device can stream them.
Deterministic given ``seed`` and the tick times, so tests drive it directly.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .behaviours import (
    BEHAVIOURS,
    InputContext,
    ResourceError,
    TickContext,
    count_runs,
    store,
)
from .profile import Profile, ResourceSpec


class Command(NamedTuple):
    """One input a device received: the resource and the value (None for a bare run)."""

    resource: str
    value: Any


def local_time_of_day(now: float | None = None) -> float:
    """Local seconds since midnight for ``now`` (epoch seconds, default the clock)."""
    moment = time.localtime(time.time() if now is None else now)
    return moment.tm_hour * 3600.0 + moment.tm_min * 60.0 + moment.tm_sec


@dataclass(slots=True)
class _Clock:
    ticks: int = 0
    elapsed: float = 0.0


class DeviceSimulation:
    """State and behaviours of one device; no I/O."""

    def __init__(self, profile: Profile, *, seed: int | None = None) -> None:
        self.profile = profile
        self.rng = random.Random(seed)
        self.state: dict[str, Any] = {
            spec.name: copy.deepcopy(spec.initial) for spec in profile.resources
        }
        self.commands: list[Command] = []
        self._clock = _Clock()

    @property
    def elapsed(self) -> float:
        """Simulated seconds since start (sum of tick steps)."""
        return self._clock.elapsed

    def spec(self, name: str) -> ResourceSpec:
        """Return the resource's declaration; KeyError for unknown names."""
        return self.profile[name]

    # ------------------------------------------------------------------ values

    def input_value(self, name: str) -> Any:
        """Return the current input state of an input / input_output resource."""
        spec = self.spec(name)
        value = self.state[name]
        return value.get("in") if spec.kind == "input_output" else value

    def output_value(self, name: str) -> Any:
        """Return the current output (the input state for input resources)."""
        spec = self.spec(name)
        value = self.state[name]
        return value.get("out") if spec.kind == "input_output" else value

    def stream_value(self, name: str) -> Any:
        """Return what a stream of the resource carries: the output, or the input for inputs."""
        spec = self.spec(name)
        if spec.kind == "input":
            return self.state[name]
        if spec.kind == "run":
            return None
        return self.output_value(name)

    def _set_output(self, spec: ResourceSpec, value: Any) -> None:
        if spec.kind == "input_output":
            self.state[spec.name] = {**self.state[spec.name], "out": value}
        else:
            self.state[spec.name] = value

    # ------------------------------------------------------------------ ticks

    def tick(self, dt: float, *, time_of_day: float | None = None) -> list[str]:
        """Advance every ticking behaviour by one tick of ``dt`` seconds.

        A resource with ``every: n`` updates on every n-th tick with a step of
        ``n * dt``. Returns the names whose value changed, in declaration order
        (the caller streams those whose ``spec.stream`` is true).
        """
        self._clock.ticks += 1
        self._clock.elapsed += dt
        tod = local_time_of_day() if time_of_day is None else time_of_day
        changed: list[str] = []
        for spec in self.profile.resources:
            behaviour = BEHAVIOURS[spec.behaviour]
            if behaviour.tick is None or self._clock.ticks % spec.every:
                continue
            old = self.output_value(spec.name)
            ctx = TickContext(
                value=copy.deepcopy(old),
                state=self.state,
                params=spec.params,
                rng=self.rng,
                dt=dt * spec.every,
                elapsed=self._clock.elapsed,
                time_of_day=tod,
            )
            new = behaviour.tick(ctx)
            if new != old or type(new) is not type(old):
                self._set_output(spec, new)
                changed.append(spec.name)
        return changed

    # ------------------------------------------------------------------ clients

    def write(self, name: str, value: Any) -> Any:
        """Apply a client's input; returns the output (input_output) or None.

        Raises :class:`ResourceError` (e.g. 400) when the behaviour refuses the
        value, KeyError for unknown resources. The command is logged either way.
        """
        spec = self.spec(name)
        self.commands.append(Command(name, copy.deepcopy(value)))
        if spec.kind == "run":
            return self.run(name, log=False)
        if not spec.has_input:
            raise ResourceError(405, f"{name} takes no input")
        behaviour = BEHAVIOURS[spec.behaviour]
        handler = behaviour.on_input or store
        params: Mapping[str, Any] = spec.params if behaviour.on_input is not None else {}
        result = handler(
            InputContext(
                name=name,
                current=copy.deepcopy(self.input_value(name)),
                value=value,
                initial=spec.input,
                params=params,
                state=self.state,
            )
        )
        if spec.kind == "input_output":
            out = result.output if behaviour.on_input is not None else self.output_value(name)
            self.state[name] = {"in": result.input, "out": out}
            return out
        self.state[name] = result.input
        return None

    def run(self, name: str, *, log: bool = True) -> None:
        """Count one run of a run resource."""
        spec = self.spec(name)
        if spec.kind != "run":
            raise ResourceError(405, f"{name} is not a run resource")
        if log:
            self.commands.append(Command(name, None))
        self.state[name] = count_runs(self.state.get(name))
