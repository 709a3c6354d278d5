"""Devices of type ``MQTT``: their resources are topics (Adafruit IO layout by default).

Built-in broker: a client logs in with username = its user, password = the
device's credential; that login says which device it is. Feeds:
``{user}/feeds/{feed}``, ``{user}/f/{feed}`` and their ``/json`` variants (a
``/json`` payload ``{"value": v}`` counts as ``v``). A feed the device
publishes is an output resource, a feed it subscribes to an input resource
(writes through REST/WS are published to the topic it subscribed to). Payloads
are JSON, or else text ("ON", "512" parses as 512). The device is online while
its MQTT session is (its last will ends it too).

External broker: the server cannot see who published, so each MQTT device
needs a topic map (``mqtt.topic_maps.{device}: {resource: topic}``); a topic in
two maps is a configuration error at start. Mapped resources are inputs and
outputs at once (fn 2); the device is online from its first message on, and
the map's ``$online`` topic (``online``/``offline``, e.g. its last will) sets
it online or offline.

Limits: ``mqtt.max_payload`` bytes per message, ``mqtt.max_topics`` feeds per
device; anything past them is dropped with one warning per device.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Final

from iotmp.protocol.message import ABSENT

from ..registry import DeviceState
from ..value_link import FN_INPUT, FN_OUTPUT, ValueLink, ValueStore, go_offline, go_online
from .authority import ROLE_DEVICE, BrokerAuthority, Login
from .settings import MqttConfig, safe_segment, safe_topic

if TYPE_CHECKING:
    from collections.abc import Callable

    from amqtt.session import ApplicationMessage, Session

    from ..app import IotmpServer

_LOGGER = logging.getLogger(__name__)

MQTT_TYPE: Final = "MQTT"
FEED_LEVELS: Final = ("feeds", "f")
ONLINE_KEY: Final = "$online"
"""Topic-map key of a device's status topic (external broker): online/offline."""
ONLINE_WORDS: Final = frozenset({"online", "1", "true", "on", "connected"})
OFFLINE_WORDS: Final = frozenset({"offline", "0", "false", "off", "disconnected", ""})
SYNC_DELAY: Final = 0.2
"""Seconds new feeds wait before the bridge and discovery see them (coalescing)."""
# Adafruit's toggle block sends ON/OFF: they are booleans here (a switch in HA).
SWITCH_TEXT: Final = {"ON": True, "OFF": False}


def decode_value(data: bytes, json_variant: bool) -> Any:
    """Decode a feed payload; raises ValueError for binary data."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if "\x00" in text:
        raise ValueError("NUL in payload")
    if text in SWITCH_TEXT:
        return SWITCH_TEXT[text]
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if json_variant and isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


def encode_value(value: Any) -> bytes:
    """Encode a written value: booleans ON/OFF, strings as they are (Adafruit style), else JSON."""
    if isinstance(value, bool):
        return b"ON" if value else b"OFF"
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def feed_of(user: str, topic: str) -> tuple[str, bool] | None:
    """``{user}/feeds/{feed}[/json]`` -> (feed, json variant), else None."""
    parts = topic.split("/")
    if len(parts) not in (3, 4) or parts[0] != user or parts[1] not in FEED_LEVELS:
        return None
    if len(parts) == 4 and parts[3] != "json":
        return None
    feed = parts[2]
    if not safe_segment(feed):
        return None
    return feed, len(parts) == 4


class MqttDevice:
    """One MQTT device: its values, where writes go, its live link."""

    def __init__(self, state: DeviceState) -> None:
        self.state = state
        self.store = ValueStore()
        self.write_topics: dict[str, str] = {}
        self.link: ValueLink | None = None
        self.sessions: set[str] = set()
        self.warned = False
        self.sync_timer: asyncio.TimerHandle | None = None
        """The coalesced re-sync of its description, while one is due."""


class MqttDevices:
    """All MQTT devices of the server (see the module docstring)."""

    def __init__(
        self,
        server: IotmpServer,
        config: MqttConfig,
        publish: Callable[[str, bytes, bool], None],
    ) -> None:
        self.server = server
        self.config = config
        self._publish = publish
        self.devices: dict[str, MqttDevice] = {}
        self._by_topic: dict[str, tuple[str, str]] = {}  # external: topic -> (device, resource)
        self._stopped = False

    # -- set-up ----------------------------------------------------------------

    def _device(self, device_id: str) -> MqttDevice | None:
        state = self.server.registry.get(device_id)
        if state is None or state.config.type != MQTT_TYPE:
            return None
        device = self.devices.get(device_id)
        if device is None or device.state is not state:
            device = MqttDevice(state)
            self.devices[device_id] = device
        return device

    def claim_conflicts(self) -> str | None:
        """External broker: a message naming topics claimed by two devices, else None."""
        owners: dict[str, str] = {}
        for device_id, mapping in self.config.topic_maps.items():
            for topic in mapping.values():
                other = owners.get(topic)
                if other is not None and other != device_id:
                    return (
                        f"mqtt.topic_maps: topic {topic!r} is claimed by"
                        f" {other!r} and {device_id!r}"
                    )
                owners[topic] = device_id
        return None

    def external_filters(self) -> list[str]:
        """Topics the server subscribes to for MQTT devices (external broker)."""
        if self.config.builtin:
            return []
        return sorted(self._mapped().keys())

    def _mapped(self) -> dict[str, tuple[str, str]]:
        mapped: dict[str, tuple[str, str]] = {}
        for device_id, mapping in self.config.topic_maps.items():
            state = self.server.registry.get(device_id)
            if state is None or state.config.type != MQTT_TYPE:
                continue
            for resource, topic in mapping.items():
                mapped[topic] = (device_id, resource)
        return mapped

    def start(self) -> None:
        """Prepare the topic maps (resources known before any message)."""
        self._by_topic = self._mapped()
        for topic, (device_id, resource) in self._by_topic.items():
            device = self._device(device_id)
            if device is not None and resource != ONLINE_KEY:
                device.write_topics[resource] = topic
                device.store.resources.setdefault(resource, _new_resource(FN_INPUT))

    def stop(self) -> None:
        """Every MQTT device goes offline; no re-sync is left scheduled."""
        self._stopped = True  # messages the broker still hands over while it stops
        for device in self.devices.values():
            if device.link is not None:
                go_offline(self.server, device.state, device.link)
                device.link = None
            device.sessions.clear()
            if device.sync_timer is not None:  # nothing to describe any more
                device.sync_timer.cancel()
                device.sync_timer = None

    def attach_broker(self, authority: BrokerAuthority) -> None:
        """Built-in broker: follow device sessions, subscriptions and messages."""
        authority.on_connected = self._session_connected
        authority.on_disconnected = self._session_disconnected
        authority.on_subscribed = self._session_subscribed
        authority.on_message = self._session_message

    # -- online state ------------------------------------------------------------

    def _online(self, device: MqttDevice, peer: str) -> None:
        if device.link is None or device.link.closed:
            device.link = ValueLink(
                device.state.id,
                device.store,
                transport_kind="mqtt",
                peer=peer,
                writer=self._writer(device),
            )
        go_online(self.server, device.state, device.link)

    def _offline(self, device: MqttDevice) -> None:
        if device.link is not None:
            go_offline(self.server, device.state, device.link)
            device.link = None

    def _session_connected(self, client_id: str, login: Login, session: Session) -> None:
        if login.role != ROLE_DEVICE or login.device is None:
            return
        device = self._device(login.device)
        if device is None:
            return
        device.sessions.add(client_id)
        peer = str(session.remote_address or "")
        self._online(device, peer)

    def _session_disconnected(self, client_id: str, login: Login, session: Session) -> None:
        if login.role != ROLE_DEVICE or login.device is None:
            return
        device = self.devices.get(login.device)
        if device is None:
            return
        device.sessions.discard(client_id)
        if not device.sessions:
            self._offline(device)

    # -- values --------------------------------------------------------------------

    def _add(self, device: MqttDevice, resource: str, value: Any, fn: int) -> None:
        known = device.store.resources.get(resource)
        if known is None and len(device.store.resources) >= self.config.max_topics:
            if not device.warned:
                device.warned = True
                _LOGGER.warning(
                    "mqtt: device %s has %d feeds, ignoring new ones",
                    device.state.id,
                    self.config.max_topics,
                )
            return
        first = known is None or known.value is ABSENT
        if known is not None:
            fn = known.fn
        device.store.set(resource, value, fn=fn)
        if first:
            self._resources_changed(device)  # discovery maps by the first value

    def _resources_changed(self, device: MqttDevice) -> None:
        # Coalesced: a client creating many feeds at once costs one re-sync, not one each.
        if device.sync_timer is not None or self._stopped:
            return
        device.sync_timer = asyncio.get_running_loop().call_later(SYNC_DELAY, self._sync, device)

    def _sync(self, device: MqttDevice) -> None:
        device.sync_timer = None
        state = device.state
        if device.link is not None and state.link is device.link:
            state.set_description(device.store.describe())
            mqtt = getattr(self.server, "mqtt", None)
            if mqtt is not None:
                mqtt.bridge.sync(state)

    def _session_subscribed(self, client_id: str, login: Login, topic: str) -> None:
        if login.role != ROLE_DEVICE or login.device is None:
            return
        device = self._device(login.device)
        found = feed_of(login.user, topic) if device is not None else None
        if device is None or found is None:
            return
        feed, _ = found
        device.write_topics.setdefault(feed, topic)
        known = device.store.resources.get(feed)
        if known is None:
            if len(device.store.resources) >= self.config.max_topics:
                return
            device.store.resources[feed] = _new_resource(FN_INPUT)
            self._resources_changed(device)
        elif known.fn != FN_INPUT:
            known.fn = FN_INPUT
            self._resources_changed(device)

    def _session_message(self, client_id: str, login: Login, message: ApplicationMessage) -> None:
        if login.role != ROLE_DEVICE or login.device is None:
            return
        device = self._device(login.device)
        if device is None:
            return
        topic = message.topic
        resource: str | None = None
        json_variant = False
        for name, mapped in self.config.topic_maps.get(device.state.id, {}).items():
            if mapped == topic:
                resource = name
        if resource is None:
            found = feed_of(login.user, topic)
            if found is None:
                return
            resource, json_variant = found
        self._take(device, resource, bytes(message.data or b""), json_variant, FN_OUTPUT)

    def _take(
        self, device: MqttDevice, resource: str, data: bytes, json_variant: bool, fn: int
    ) -> None:
        if len(data) > self.config.max_payload:
            _LOGGER.info(
                "mqtt: %s/%s: payload over %d bytes dropped",
                device.state.id,
                resource,
                self.config.max_payload,
            )
            return
        try:
            value = decode_value(data, json_variant)
        except ValueError:
            _LOGGER.info("mqtt: %s/%s: binary payload dropped", device.state.id, resource)
            return
        self._add(device, resource, value, fn)

    def handle_external(self, topic: str, data: bytes) -> None:
        """External broker: a message on a mapped topic."""
        if not safe_topic(topic):
            return
        owner = self._by_topic.get(topic)
        if owner is None:
            return
        device = self._device(owner[0])
        if device is None:
            return
        if owner[1] == ONLINE_KEY:
            # The device's own status topic (its last will says "offline").
            text = data.decode("utf-8", "replace").strip().strip('"').lower()
            if text in ONLINE_WORDS:
                self._online(device, "")
            elif text in OFFLINE_WORDS:
                self._offline(device)
            return
        if device.link is None:
            self._online(device, "")
        self._take(device, owner[1], data, topic.endswith("/json"), FN_INPUT)

    def _writer(self, device: MqttDevice) -> Callable[[str, Any], Any]:
        async def write(resource: str, value: Any) -> None:
            topic = device.write_topics.get(resource) or f"{device.state.user}/feeds/{resource}"
            self._publish(topic, encode_value(value), False)

        return write


def _new_resource(fn: int) -> Any:
    from ..value_link import ValueResource  # noqa: PLC0415

    return ValueResource(fn)
