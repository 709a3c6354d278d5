"""Load and validate device profile files.

A profile is a JSON (or YAML, when PyYAML is installed) file describing one kind
of device; see ``docs/devices.md`` for the format. :func:`load_profile` turns a
built-in profile name or a path into a :class:`Profile`, raising
:class:`ProfileError` with a message that names the file, the resource and the
problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

from .behaviours import BEHAVIOURS, DEFAULT_BEHAVIOUR, KIND_FN

PROFILES_DIR: Final = Path(__file__).parent / "profiles"
PROFILE_SUFFIXES: Final = (".json", ".yaml", ".yml")

_TOP_KEYS: Final = {
    "name",
    "device_id",
    "device_name",
    "description",
    "resources",
    "bucket_writes",
    "config_property",
}
_BUCKET_WRITE_KEYS: Final = {"bucket", "resources", "every"}
_CONFIG_KEYS: Final = {"property", "resources"}
_RESOURCE_KEYS: Final = {
    "name",
    "kind",
    "value",
    "input",
    "output",
    "behaviour",
    "params",
    "stream",
    "every",
    "description",
}
_ID_RE: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ProfileError(ValueError):
    """A profile file is missing, unreadable or invalid; the message says where and why."""


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """One resource declared by a profile."""

    name: str
    kind: str
    """``run``, ``input``, ``output`` or ``input_output``."""
    input: Any = None
    """Initial input state (input and input_output resources)."""
    output: Any = None
    """Initial output value (output and input_output resources)."""
    behaviour: str = "constant"
    params: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = False
    """Push the value to open streams when it changes (inputs: after every write)."""
    every: int = 1
    """Update the value every ``every`` ticks."""
    description: str = ""

    @property
    def fn(self) -> int:
        """IOTMP function type: 1 run, 2 input, 3 output, 4 input+output."""
        return KIND_FN[self.kind]

    @property
    def has_input(self) -> bool:
        """Whether the resource takes an input."""
        return self.kind in ("input", "input_output")

    @property
    def has_output(self) -> bool:
        """Whether the resource produces an output."""
        return self.kind in ("output", "input_output")

    @property
    def ticks(self) -> bool:
        """Whether the behaviour updates the value on each tick."""
        return BEHAVIOURS[self.behaviour].tick is not None

    @property
    def initial(self) -> Any:
        """The initial value kept in a device's ``state`` for this resource.

        Inputs: the input; outputs: the output; input_output: ``{"in", "out"}``;
        run: 0 (the run count).
        """
        if self.kind == "input":
            return self.input
        if self.kind == "output":
            return self.output
        if self.kind == "input_output":
            return {"in": self.input, "out": self.output}
        return 0


@dataclass(frozen=True, slots=True)
class BucketWrite:
    """Write the values of ``resources`` to data bucket ``bucket`` every ``every`` seconds.

    The record maps each resource name to its value; a single resource whose
    value is an object is written as that object.
    """

    bucket: str
    resources: tuple[str, ...]
    every: float


@dataclass(frozen=True, slots=True)
class ConfigProperty:
    """Read property ``property`` at every login and on each update; apply its fields.

    Each field of the (object) value that names one of ``resources`` is written
    to that input resource, with the same checks as a write from the server.
    """

    property: str
    resources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Profile:
    """A validated device profile."""

    name: str
    device_id: str
    device_name: str
    resources: tuple[ResourceSpec, ...]
    description: str = ""
    source: str = "<memory>"
    bucket_writes: tuple[BucketWrite, ...] = ()
    config_property: ConfigProperty | None = None

    def __getitem__(self, name: str) -> ResourceSpec:
        """Return the resource called ``name`` (KeyError if there is none)."""
        for spec in self.resources:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def resource_names(self) -> list[str]:
        """Resource names in declaration order."""
        return [spec.name for spec in self.resources]

    def describe(self) -> dict[str, dict[str, int]]:
        """Return the whole-API DESCRIBE this profile's device answers: ``{name: {"fn": n}}``."""
        return {spec.name: {"fn": spec.fn} for spec in self.resources}


# --------------------------------------------------------------------------- parsing


def _fail(source: str, where: str, problem: str) -> ProfileError:
    return ProfileError(f"{source}: {where}{': ' if where else ''}{problem}")


def _plain_json(value: Any, path: str) -> None:
    """Check a value is JSON-like (what PSON can carry)."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _plain_json(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path} has a non-string key {key!r}")
            _plain_json(item, f"{path}.{key}")
        return
    raise ValueError(f"{path} has a value of unsupported type {type(value).__name__}")


def _parse_resource(raw: Any, index: int, source: str) -> ResourceSpec:
    where = f"resource #{index + 1}"
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"must be an object, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise _fail(source, where, "'name' must be a non-empty string without surrounding spaces")
    if any(ord(ch) < 32 for ch in name):
        raise _fail(source, where, "'name' must not contain control characters")
    where = f"resource '{name}'"
    unknown = sorted(set(raw) - _RESOURCE_KEYS)
    if unknown:
        raise _fail(
            source,
            where,
            f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_RESOURCE_KEYS))})",
        )
    kind = raw.get("kind")
    if kind not in KIND_FN:
        raise _fail(source, where, f"'kind' must be one of {', '.join(KIND_FN)}, got {kind!r}")

    # Initial values, by kind.
    has = {key for key in ("value", "input", "output") if key in raw}
    input_value: Any = None
    output_value: Any = None
    if kind == "run":
        if has:
            raise _fail(source, where, "a run resource takes no value/input/output")
    elif kind == "input":
        if has - {"value", "input"} or has == {"value", "input"}:
            raise _fail(source, where, "an input resource takes 'value' (its initial state) only")
        if not has:
            raise _fail(source, where, "an input resource needs 'value' (its initial state)")
        input_value = raw.get("value", raw.get("input"))
    elif kind == "output":
        if has - {"value", "output"} or has == {"value", "output"}:
            raise _fail(source, where, "an output resource takes 'value' (its initial value) only")
        if not has:
            raise _fail(source, where, "an output resource needs 'value' (its initial value)")
        output_value = raw.get("value", raw.get("output"))
    else:
        if "value" in has or has != {"input", "output"}:
            raise _fail(source, where, "an input_output resource needs 'input' and 'output'")
        input_value, output_value = raw["input"], raw["output"]
    try:
        _plain_json(input_value, "input")
        _plain_json(output_value, "output")
    except ValueError as err:
        raise _fail(source, where, str(err)) from None

    behaviour = raw.get("behaviour", DEFAULT_BEHAVIOUR[str(kind)])
    if behaviour not in BEHAVIOURS:
        raise _fail(
            source,
            where,
            f"unknown behaviour {behaviour!r} (known: {', '.join(sorted(BEHAVIOURS))})",
        )
    spec_behaviour = BEHAVIOURS[behaviour]
    if kind not in spec_behaviour.kinds:
        fits = ", ".join(sorted(spec_behaviour.kinds))
        raise _fail(source, where, f"behaviour '{behaviour}' does not fit kind '{kind}' ({fits})")
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        raise _fail(source, where, "'params' must be an object")
    try:
        _plain_json(dict(params), "params")
        if spec_behaviour.check is not None:
            initial = output_value if spec_behaviour.tick is not None else input_value
            spec_behaviour.check(params, initial)
    except ValueError as err:
        raise _fail(source, where, f"behaviour '{behaviour}': {err}") from None

    stream = raw.get("stream", kind in ("input", "input_output"))
    if not isinstance(stream, bool):
        raise _fail(source, where, "'stream' must be true or false")
    every = raw.get("every", 1)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise _fail(source, where, "'every' must be a whole number of ticks >= 1")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, where, "'description' must be a string")
    return ResourceSpec(
        name=name,
        kind=kind,
        input=input_value,
        output=output_value,
        behaviour=behaviour,
        params=dict(params),
        stream=stream,
        every=every,
        description=description,
    )


def _names(raw: Any, where: str, source: str, allowed: dict[str, ResourceSpec]) -> tuple[str, ...]:
    """Check a list of resource names, each one of ``allowed``; return them."""
    if not isinstance(raw, list) or not raw or not all(isinstance(n, str) for n in raw):
        raise _fail(source, where, "'resources' must be a non-empty list of resource names")
    for name in raw:
        if name not in allowed:
            raise _fail(
                source,
                where,
                f"'resources' names {name!r}, which is not one of {', '.join(allowed) or 'none'}",
            )
    if len(set(raw)) != len(raw):
        raise _fail(source, where, "'resources' lists a resource twice")
    return tuple(raw)


def _parse_bucket_writes(
    raw: Any, source: str, specs: tuple[ResourceSpec, ...]
) -> tuple[BucketWrite, ...]:
    if not isinstance(raw, list):
        raise _fail(source, "bucket_writes", "must be a list of {bucket, resources, every}")
    valued = {s.name: s for s in specs if s.kind != "run"}
    result: list[BucketWrite] = []
    for index, item in enumerate(raw):
        where = f"bucket_writes #{index + 1}"
        if not isinstance(item, Mapping):
            raise _fail(source, where, "must be an object {bucket, resources, every}")
        unknown = sorted(set(item) - _BUCKET_WRITE_KEYS)
        if unknown:
            raise _fail(
                source,
                where,
                f"unknown key(s) {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(_BUCKET_WRITE_KEYS))})",
            )
        bucket = item.get("bucket")
        if not isinstance(bucket, str) or not _ID_RE.match(bucket):
            raise _fail(
                source, where, f"'bucket' must be 1-64 letters, digits or _.:-, got {bucket!r}"
            )
        every = item.get("every")
        if isinstance(every, bool) or not isinstance(every, int | float) or not every > 0:
            raise _fail(source, where, "'every' must be a positive number of seconds")
        names = _names(item.get("resources"), where, source, valued)
        result.append(BucketWrite(bucket, names, float(every)))
    return tuple(result)


def _parse_config_property(
    raw: Any, source: str, specs: tuple[ResourceSpec, ...]
) -> ConfigProperty:
    where = "config_property"
    if not isinstance(raw, Mapping):
        raise _fail(source, where, "must be an object {property, resources?}")
    unknown = sorted(set(raw) - _CONFIG_KEYS)
    if unknown:
        raise _fail(
            source,
            where,
            f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_CONFIG_KEYS))})",
        )
    prop = raw.get("property")
    if not isinstance(prop, str) or not _ID_RE.match(prop):
        raise _fail(source, where, f"'property' must be 1-64 letters, digits or _.:-, got {prop!r}")
    inputs = {s.name: s for s in specs if s.has_input}
    if not inputs:
        raise _fail(source, where, "the profile has no input resource to configure")
    names = (
        tuple(inputs) if "resources" not in raw else _names(raw["resources"], where, source, inputs)
    )
    return ConfigProperty(prop, names)


def parse_profile(data: Any, *, source: str = "<memory>", default_name: str = "") -> Profile:
    """Validate already-decoded profile data (a dict) and build a :class:`Profile`."""
    if not isinstance(data, Mapping):
        raise _fail(source, "", "a profile must be an object with a 'resources' list")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _fail(
            source,
            "",
            f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_TOP_KEYS))})",
        )
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise _fail(source, "", "'name' must be a non-empty string")
    device_id = data.get("device_id", name.replace("_", "-"))
    if not isinstance(device_id, str) or not _ID_RE.match(device_id):
        raise _fail(
            source,
            "",
            f"'device_id' must be 1-64 letters, digits or _.:- characters, got {device_id!r}",
        )
    device_name = data.get("device_name", name.replace("_", " ").capitalize())
    if not isinstance(device_name, str) or not device_name:
        raise _fail(source, "", "'device_name' must be a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, "", "'description' must be a string")
    raw_resources = data.get("resources")
    if not isinstance(raw_resources, list) or not raw_resources:
        raise _fail(source, "", "'resources' must be a non-empty list of resource objects")
    resources = [_parse_resource(raw, i, source) for i, raw in enumerate(raw_resources)]
    seen: set[str] = set()
    for spec in resources:
        if spec.name in seen:
            raise _fail(source, f"resource '{spec.name}'", "declared twice")
        seen.add(spec.name)
    for spec in resources:
        for param in BEHAVIOURS[spec.behaviour].depends_on:
            target = spec.params.get(param)
            if target not in seen:
                raise _fail(
                    source,
                    f"resource '{spec.name}'",
                    f"behaviour '{spec.behaviour}': param '{param}' names unknown "
                    f"resource {target!r}",
                )
    specs = tuple(resources)
    bucket_writes = _parse_bucket_writes(data.get("bucket_writes", []), source, specs)
    raw_config = data.get("config_property")
    config = None if raw_config is None else _parse_config_property(raw_config, source, specs)
    return Profile(
        name=name,
        device_id=device_id,
        device_name=device_name,
        resources=specs,
        description=description,
        source=source,
        bucket_writes=bucket_writes,
        config_property=config,
    )


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"{path}: cannot read profile: {err}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # noqa: PLC0415  (optional dependency)
        except ImportError:
            raise ProfileError(f"{path}: YAML profiles need PyYAML (pip install pyyaml)") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ProfileError(f"{path}: invalid YAML: {err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ProfileError(
            f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None


def load_profile_file(path: str | Path) -> Profile:
    """Load and validate one profile file (JSON, or YAML with PyYAML)."""
    path = Path(path)
    return parse_profile(_read_file(path), source=str(path), default_name=path.stem)


def builtin_profile_names() -> list[str]:
    """Names of the profiles shipped in ``iotmp/sim/profiles``."""
    return sorted(p.stem for p in PROFILES_DIR.iterdir() if p.suffix in PROFILE_SUFFIXES)


@cache
def _builtin(name: str) -> Profile:
    for suffix in PROFILE_SUFFIXES:
        path = PROFILES_DIR / f"{name}{suffix}"
        if path.exists():
            return load_profile_file(path)
    raise ProfileError(
        f"unknown profile {name!r} (built-in: {', '.join(builtin_profile_names())}; "
        "or give a path to a .json/.yaml file)"
    )


def builtin_profiles() -> dict[str, Profile]:
    """Every shipped profile, by name."""
    return {name: _builtin(name) for name in builtin_profile_names()}


def load_profile(ref: str | Path, *, base_dir: Path | None = None) -> Profile:
    """Load a built-in profile by name (``"smart_plug"``) or a profile file by path.

    A reference that contains a path separator or ends in ``.json``/``.yaml``/
    ``.yml`` is a path (relative paths resolve against ``base_dir`` when given).
    """
    text = str(ref)
    if isinstance(ref, Path) or "/" in text or "\\" in text or text.endswith(PROFILE_SUFFIXES):
        path = Path(text).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return load_profile_file(path)
    return _builtin(text)


def profile_for_device_id(device_id: str) -> Profile:
    """Return the built-in profile whose default device id is ``device_id`` (``"rgb-lamp"``)."""
    for profile in builtin_profiles().values():
        if profile.device_id == device_id:
            return profile
    known = ", ".join(p.device_id for p in builtin_profiles().values())
    raise ProfileError(f"no built-in profile for device id {device_id!r} (known: {known})")
