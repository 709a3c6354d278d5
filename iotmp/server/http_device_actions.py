"""What an HTTP device's callback does besides keeping the readings (Thinger's callback config).

``GET/PUT /v3/users/{user}/devices/{device}/callback`` read and set
``{"actions": {...}, "properties": {"timeout": s}}``; each action names a
resource of the device's user (empty or null: off):

* ``write_bucket``: every posted body is also stored as a bucket record;
* ``set_property``: the body becomes the value of that device property;
* ``call_endpoint``: the body is the payload of a call to that endpoint;
* ``send_property``: the answer to the POST is that property's value (how a
  device that only speaks HTTP reads its configuration).

``properties.timeout`` replaces the server's ``http_device_timeout`` for this
device. The configuration is kept with the device (its ``callback`` attribute).
A failing action answers the POST with its error; the readings are kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .feature import FeatureError

if TYPE_CHECKING:
    from .app import IotmpServer
    from .registry import DeviceState

ACTIONS: Final = ("write_bucket", "set_property", "call_endpoint", "send_property")
ATTRIBUTE: Final = "callback"
_ID: Final = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
_PROPERTY_ID: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_TIMEOUT: Final = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class CallbackConfig:
    """A device's callback actions (``None``: off) and its online timeout."""

    write_bucket: str | None = None
    set_property: str | None = None
    call_endpoint: str | None = None
    send_property: str | None = None
    timeout: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Thinger's shape: ``{"actions": {...}, "properties": {"timeout"?}}``."""
        actions = {name: getattr(self, name) for name in ACTIONS if getattr(self, name)}
        properties = {} if self.timeout is None else {"timeout": self.timeout}
        return {"actions": actions, "properties": properties}


def parse_callback_config(body: Any) -> CallbackConfig:
    """Check a PUT body; raises :class:`FeatureError` (400) naming what is wrong."""
    if not isinstance(body, Mapping):
        raise FeatureError(400, 'expected {"actions": {...}, "properties": {...}}')
    unknown = sorted(set(body) - {"actions", "properties"})
    if unknown:
        raise FeatureError(400, f"unknown fields {', '.join(map(str, unknown))}")
    actions = body.get("actions") or {}
    properties = body.get("properties") or {}
    if not isinstance(actions, Mapping) or not isinstance(properties, Mapping):
        raise FeatureError(400, "actions and properties must be objects")
    unknown = sorted(set(actions) - set(ACTIONS))
    if unknown:
        raise FeatureError(400, f"unknown actions {', '.join(map(str, unknown))}")
    chosen: dict[str, str | None] = {}
    for name in ACTIONS:
        value = actions.get(name)
        if value in (None, ""):
            chosen[name] = None
            continue
        pattern = _PROPERTY_ID if name.endswith("_property") else _ID
        if not isinstance(value, str) or not pattern.match(value):
            raise FeatureError(400, f"actions.{name}: not a valid id")
        chosen[name] = value
    if set(properties) - {"timeout"}:
        raise FeatureError(400, "properties: only timeout is known")
    timeout = properties.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise FeatureError(400, f"properties.timeout: seconds between 0 and {MAX_TIMEOUT}")
    return CallbackConfig(**chosen, timeout=None if timeout is None else float(timeout))


def callback_config(state: DeviceState) -> CallbackConfig:
    """Return the device's stored configuration (defaults when it has none or it is bad)."""
    try:
        return parse_callback_config(state.attributes.get(ATTRIBUTE) or {})
    except FeatureError:
        return CallbackConfig()


async def run_actions(server: IotmpServer, state: DeviceState, body: Any) -> Any:
    """Run the device's actions on a posted ``body``; returns what the POST answers (or None)."""
    config = callback_config(state)
    if config.write_bucket:
        await server.buckets.write(state.user, config.write_bucket, body)
    if config.set_property:
        await server.properties.set_value(state.id, config.set_property, body)
    if config.call_endpoint:
        result = await server.endpoints.call(state.user, config.call_endpoint, body)
        if result.error is not None:
            raise FeatureError(504 if result.timed_out else 502, result.error)
        if not result.ok:
            raise FeatureError(502, f"endpoint {config.call_endpoint} answered {result.status}")
    if config.send_property:
        try:
            return await server.properties.value(state.id, config.send_property)
        except KeyError:
            raise FeatureError(404, f"property {config.send_property} not found") from None
    return None


__all__ = [
    "ACTIONS",
    "ATTRIBUTE",
    "CallbackConfig",
    "callback_config",
    "parse_callback_config",
    "run_actions",
]
