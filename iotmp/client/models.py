"""Records returned by the server client, and the pure parsing rules behind them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol.message import ABSENT
from .errors import IotmpApiError


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device of the account, as the server lists it.

    ``name`` falls back to ``device_id`` when the server has no name for it;
    ``connection_ts`` is the last connect/disconnect time in ms (None if unknown).
    """

    device_id: str
    name: str
    description: str
    type: str
    enabled: bool
    connected: bool
    connection_ts: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: Any) -> DeviceRecord:
        """Build a record from a device object of ``/v1/users/{u}/devices``."""
        if not isinstance(raw, dict):
            raise IotmpApiError(f"unexpected device record from server: {_kind(raw)}")
        device_id = raw.get("device")
        if not isinstance(device_id, str) or not device_id:
            raise IotmpApiError("unexpected device record from server: no device id")
        name = raw.get("name")
        description = raw.get("description")
        type_ = raw.get("type")
        enabled = raw.get("enabled", True)
        connection = raw.get("connection")
        connected = False
        connection_ts: int | None = None
        if isinstance(connection, dict):
            connected = connection.get("active") is True
            ts = connection.get("ts")
            if isinstance(ts, int | float) and not isinstance(ts, bool):
                connection_ts = int(ts)
        return cls(
            device_id=device_id,
            name=name if isinstance(name, str) and name else device_id,
            description=description if isinstance(description, str) else "",
            type=type_ if isinstance(type_, str) else "",
            enabled=enabled if isinstance(enabled, bool) else True,
            connected=connected,
            connection_ts=connection_ts,
            raw=raw,
        )


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """One resource of a device.

    ``fn``: 1 run, 2 input, 3 output, 4 input and output (5 legacy stream).
    ``sample_in`` / ``sample_out`` are the ``in`` / ``out`` values of the
    resource's ``/api`` sample, or ``ABSENT`` when the sample lacks them (or
    could not be fetched). ``raw`` is the resource's entry in the description
    (``fn``, and whatever else the server reported: ``al``, ``st``, ``pr``...).
    """

    name: str
    fn: int
    sample_in: Any = field(default=ABSENT)
    sample_out: Any = field(default=ABSENT)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class TokenSet:
    """Result of a login: access token, refresh token and access-token expiry (epoch s)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float | None


def flatten_resources(description: Any) -> dict[str, dict[str, Any]]:
    """Flatten a device's resource description to ``{"a/b": entry}``.

    Accepts the v3 flat map (``{"led": {"fn": 2}, "$ota/options": {...}}``)
    and the legacy nested form (``{"x": {"al": 0, "fn": 0, "/": {"y": {...}}}}``,
    children under ``"/"`` joined with ``/``). Names with a segment starting
    with ``$`` are internal and dropped with their children, as are container
    nodes (``fn`` 0) and entries without an integer ``fn``. Returned entries
    are copies without the ``"/"`` key.
    """
    if not isinstance(description, dict):
        raise IotmpApiError(f"unexpected resource description from server: {_kind(description)}")
    result: dict[str, dict[str, Any]] = {}
    _walk(description, "", result, 0)
    return result


_MAX_NESTING = 32


def _walk(node: dict[Any, Any], prefix: str, result: dict[str, dict[str, Any]], depth: int) -> None:
    if depth > _MAX_NESTING:
        return
    for name, entry in node.items():
        if not isinstance(name, str) or not name or name == "/":
            continue
        if any(part.startswith("$") for part in name.split("/")):
            continue
        if not isinstance(entry, dict):
            continue
        full = f"{prefix}{name}"
        fn = entry.get("fn")
        if isinstance(fn, int) and not isinstance(fn, bool) and fn != 0:
            result[full] = {key: value for key, value in entry.items() if key != "/"}
        children = entry.get("/")
        if isinstance(children, dict):
            _walk(children, f"{full}/", result, depth + 1)


def _kind(value: Any) -> str:
    """Short description of a JSON value for error messages (never its content)."""
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )
