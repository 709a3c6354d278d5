"""The bridge: every (bridged) device's resources on MQTT.

Topics (``{p}`` = ``mqtt.prefix``):

* ``{p}/{user}/{device}/{resource}`` -- the value as JSON, retained, published
  when the device streams it (inputs: on change and after writes; outputs:
  every ``mqtt.output_interval`` seconds and on the device's pushes);
* ``{p}/{user}/{device}/status`` -- ``online`` / ``offline``, retained;
* ``{p}/{user}/{device}/{resource}/set`` -- a client publishes the input here
  (JSON; text that is not JSON is taken as a string; empty = run without input);
* ``{p}/{user}/{device}/{resource}/result`` -- the output of that run as JSON
  (``null`` for none) or ``{"error": {"message": ...}}``.

The bridge is a stream-hub subscriber like an app WebSocket: one
:class:`~iotmp.server.streams.Subscription` per bridged resource. It keeps the
retained messages it published and sends them all again after a reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from iotmp.ha_mapping import is_internal
from iotmp.protocol.message import ABSENT

from ..http_api import ApiError, DeviceOps, dumps
from ..registry import DeviceState
from ..streams import Subscription
from .settings import MqttConfig, safe_segment

if TYPE_CHECKING:
    from ..app import IotmpServer

_LOGGER = logging.getLogger(__name__)

MAX_RESOURCE_DEPTH: Final = 4
"""Resource names with up to this many ``/`` levels accept ``/set`` commands."""
MAX_PENDING_COMMANDS: Final = 64
RESERVED: Final = frozenset({"status"})
BRIDGED_FNS: Final = (2, 3, 4)


def parse_command(data: bytes, limit: int) -> Any:
    """Return the input of a ``/set`` message; raises ValueError with a message for the result."""
    if len(data) > limit:
        raise ValueError(f"payload larger than {limit} bytes")
    if not data.strip():
        return ABSENT
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("payload is not UTF-8 text") from None
    if "\x00" in text:
        raise ValueError("payload contains NUL")
    try:
        return json.loads(text)
    except ValueError:
        return text


class Bridge:
    """Publishes device state, runs ``/set`` commands (see the module docstring)."""

    def __init__(
        self,
        server: IotmpServer,
        config: MqttConfig,
        publish: Callable[[str, bytes, bool], None],
    ) -> None:
        self.server = server
        self.config = config
        self._publish = publish
        self.ops = DeviceOps(server)
        self.retained: dict[str, bytes] = {}
        self._subs: dict[str, dict[str, Subscription]] = {}
        self._pending = 0
        self.on_resources: Callable[[DeviceState], None] | None = None
        self.published = 0
        self._remove_listener: Callable[[], None] | None = None

    # -- topics ------------------------------------------------------------

    def device_topic(self, state: DeviceState) -> str:
        """``{prefix}/{user}/{device}``."""
        return f"{self.config.prefix}/{state.user}/{state.id}"

    def resource_topic(self, state: DeviceState, resource: str) -> str:
        """``{prefix}/{user}/{device}/{resource}``."""
        return f"{self.device_topic(state)}/{resource}"

    def status_topic(self, state: DeviceState) -> str:
        """``{prefix}/{user}/{device}/status``."""
        return f"{self.device_topic(state)}/status"

    def command_filters(self) -> list[str]:
        """Subscriptions for ``/set`` on resources of 1..MAX_RESOURCE_DEPTH levels."""
        return [
            f"{self.config.prefix}/+/+/{'/'.join(['+'] * depth)}/set"
            for depth in range(1, MAX_RESOURCE_DEPTH + 1)
        ]

    def bridged(self, state: DeviceState) -> bool:
        """Whether this device is published (config ``bridge_devices``, safe names)."""
        return self.config.bridged(state.id) and safe_segment(state.user) and safe_segment(state.id)

    @staticmethod
    def bridged_resource(name: str, fn: int | None) -> bool:
        """Resources with state (fn 2, 3, 4), not internal, with safe topic levels."""
        return (
            fn in BRIDGED_FNS
            and not is_internal(name)
            and name not in RESERVED
            and len(name.split("/")) <= MAX_RESOURCE_DEPTH
            and all(safe_segment(part) for part in name.split("/"))
        )

    # -- publishing ----------------------------------------------------------

    def _retain(self, topic: str, payload: bytes) -> None:
        if self.config.retain:
            self.retained[topic] = payload
        self.published += 1
        self._publish(topic, payload, self.config.retain)

    def publish_all(self) -> list[tuple[str, bytes]]:
        """Everything retained, to send again after a connect."""
        return list(self.retained.items())

    # -- device state --------------------------------------------------------

    def start(self) -> None:
        """Publish the status of every known device and follow connects."""
        if self._remove_listener is None:
            self._remove_listener = self.server.registry.add_listener(self.device_state_changed)
        for state in self.server.registry:
            if self.bridged(state):
                self._retain(self.status_topic(state), b"online" if state.connected else b"offline")
                if state.connected:
                    self.sync(state)

    def device_state_changed(self, state: DeviceState, connected: bool) -> None:
        """Registry listener: status topic and subscriptions."""
        if not self.bridged(state):
            return
        self._retain(self.status_topic(state), b"online" if connected else b"offline")
        if connected:
            self.sync(state)

    def sync(self, state: DeviceState) -> None:
        """Subscribe to the device's current resources (drop the ones it lost)."""
        wanted = {
            name: fn for name, fn in state.resources.items() if self.bridged_resource(name, fn)
        }
        subs = self._subs.setdefault(state.id, {})
        for name in list(subs):
            if name not in wanted:
                self.server.hub.unsubscribe(subs.pop(name))
                self._clear(self.resource_topic(state, name))
        for name, fn in wanted.items():
            if name in subs:
                continue
            interval = self.config.output_interval if fn in (3, 4) else 0.0
            sub = Subscription(state.id, name, interval, self._deliverer(state))
            subs[name] = sub
            self.server.hub.subscribe(sub)
        if self.on_resources is not None:
            self.on_resources(state)

    def _deliverer(self, state: DeviceState) -> Callable[[str, Any], None]:
        def deliver(resource: str, value: Any) -> None:
            self._retain(self.resource_topic(state, resource), dumps(value).encode("utf-8"))

        return deliver

    def _clear(self, topic: str) -> None:
        if self.retained.pop(topic, None) is not None:
            self._publish(topic, b"", True)

    def forget(self, device_id: str, user: str) -> None:
        """Forget a deleted device: unsubscribe and clear its retained topics."""
        for sub in self._subs.pop(device_id, {}).values():
            self.server.hub.unsubscribe(sub)
        base = f"{self.config.prefix}/{user}/{device_id}/"
        for topic in [t for t in self.retained if t.startswith(base)]:
            self._clear(topic)

    def reconcile(self) -> None:
        """Forget the devices that are gone from the registry."""
        known = {state.id for state in self.server.registry}
        for topic in list(self.retained):
            parts = topic.split("/")
            plen = len(self.config.prefix.split("/"))
            if len(parts) > plen + 1 and parts[plen + 1] not in known:
                self.forget(parts[plen + 1], parts[plen])

    def close(self) -> None:
        """Unsubscribe everything."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        for subs in self._subs.values():
            for sub in subs.values():
                self.server.hub.unsubscribe(sub)
        self._subs.clear()

    # -- commands ------------------------------------------------------------

    def handle(self, topic: str, data: bytes) -> bool:
        """Run a ``.../{resource}/set`` message; False when the topic is not a command."""
        prefix = self.config.prefix + "/"
        if not topic.startswith(prefix) or not topic.endswith("/set"):
            return False
        parts = topic[len(prefix) : -len("/set")].split("/")
        if len(parts) < 3:
            return False
        user, device_id, resource = parts[0], parts[1], "/".join(parts[2:])
        result_topic = topic[: -len("/set")] + "/result"
        state = self.server.registry.get(device_id)
        if state is None or state.user != user or not self.bridged(state):
            return True  # not ours: nothing to answer (and no hint that it exists)
        try:
            value = parse_command(data, self.config.max_payload)
        except ValueError as exc:
            self._answer(result_topic, {"error": {"message": str(exc)}})
            return True
        if self._pending >= MAX_PENDING_COMMANDS:
            self._answer(result_topic, {"error": {"message": "too many commands in progress"}})
            return True
        self._pending += 1
        self.server.spawn(self._run(state, resource, value, result_topic))
        return True

    async def _run(self, state: DeviceState, resource: str, value: Any, result_topic: str) -> None:
        try:
            output = await self.ops.write(state, resource, value)
        except ApiError as exc:
            self._answer(result_topic, {"error": {"message": exc.message}})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _LOGGER.warning("mqtt: command %s failed: %r", result_topic, exc)
            self._answer(result_topic, {"error": {"message": "command failed"}})
        else:
            self._answer(result_topic, None if output is ABSENT else output)
        finally:
            self._pending -= 1

    def _answer(self, topic: str, value: Any) -> None:
        self._publish(topic, dumps(value).encode("utf-8"), False)
