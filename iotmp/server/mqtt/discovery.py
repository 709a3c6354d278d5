"""Home Assistant MQTT discovery for bridged devices.

The entities come from :func:`iotmp.ha_mapping.map_device`, the rules the
integration uses. One retained config per entity at
``{discovery_prefix}/{platform}/iotmp_{device}/{object_id}/config``; its state is
the bridge topic of the resource, commands go to the bridge's ``/set`` topic,
availability needs both the server (``{prefix}/status``) and the device
(``.../status``). Unique ids are ``iotmp_mqtt_{device}_{key}`` (the integration's
start with its config entry's server and account, so they never meet).
Configs of entities a device no longer has, and of deleted devices, are
cleared (empty retained message).

Left out: RGB lights and fields of input objects (a write there needs the whole
object), which the integration covers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from iotmp.ha_mapping import DIRECTION_IN, EntitySpec, map_device
from iotmp.protocol.message import ABSENT

from ..device_link import DeviceLink
from ..registry import DeviceState
from .bridge import Bridge
from .settings import MqttConfig

if TYPE_CHECKING:
    from ..app import IotmpServer

_LOGGER = logging.getLogger(__name__)

_OBJECT_ID_BAD = re.compile(r"[^A-Za-z0-9_-]+")
COMMAND_PLATFORMS = frozenset({"switch", "number", "text", "button", "light"})


@dataclass(frozen=True, slots=True)
class _Info:
    name: str
    fn: int
    sample_in: Any
    sample_out: Any


def object_id(key: str) -> str:
    """Return a discovery object id for an entity key (safe characters + a short hash)."""
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:6]
    return f"{_OBJECT_ID_BAD.sub('_', key).strip('_')[:40]}_{digest}"


def _template(spec: EntitySpec) -> str:
    access = "".join(f"[{json.dumps(part)}]" for part in spec.path)
    return "value_json" + access


class Discovery:
    """Builds and publishes the discovery configs (see the module docstring)."""

    def __init__(
        self,
        server: IotmpServer,
        config: MqttConfig,
        bridge: Bridge,
        publish: Callable[[str, bytes, bool], None],
    ) -> None:
        self.server = server
        self.config = config
        self.bridge = bridge
        self._publish = publish
        self.configs: dict[str, dict[str, bytes]] = {}  # device -> topic -> payload
        self.owners: dict[str, str] = {}
        self._running: set[str] = set()
        self._again: set[str] = set()

    def publish_all(self) -> list[tuple[str, bytes]]:
        """Every current config (after a connect)."""
        return [item for per in self.configs.values() for item in per.items()]

    def device_changed(self, state: DeviceState) -> None:
        """Rebuild a device's configs after the bridge (re)subscribed it."""
        if not self.config.discovery:
            return
        link = state.link
        if link is None:
            return
        if state.id in self._running:
            self._again.add(state.id)  # one more pass after the one in progress
            return
        self._running.add(state.id)
        self.server.spawn(self._refresh_loop(state))

    async def _refresh_loop(self, state: DeviceState) -> None:
        try:
            while True:
                self._again.discard(state.id)
                link = state.link
                if link is not None:
                    await self._refresh(state, link)
                if state.id not in self._again:
                    return
        finally:
            self._running.discard(state.id)

    async def _refresh(self, state: DeviceState, link: DeviceLink) -> None:
        infos: dict[str, _Info] = {}
        for name, fn in state.resources.items():
            if fn is None or not self.bridge.bridged_resource(name, fn):
                continue
            sample: Any = {}
            if fn in (2, 3, 4):
                try:
                    sample = await link.describe_resource(name)
                except Exception as exc:
                    _LOGGER.debug("discovery: %s/%s sample: %r", state.id, name, exc)
            sample = sample if isinstance(sample, dict) else {}
            infos[name] = _Info(name, fn, sample.get("in", ABSENT), sample.get("out", ABSENT))
        wanted: dict[str, bytes] = {}
        for spec in map_device(infos):
            entry = self.entity_config(state, spec)
            if entry is not None:
                topic, payload = entry
                wanted[topic] = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self._replace(state.id, state.user, wanted)

    def _replace(self, device_id: str, user: str, wanted: dict[str, bytes]) -> None:
        old = self.configs.get(device_id, {})
        for topic in old:
            if topic not in wanted:
                self._publish(topic, b"", True)
                self.owners.pop(topic, None)
        for topic, payload in wanted.items():
            self.owners[topic] = user
            if old.get(topic) != payload:
                self._publish(topic, payload, True)
        if wanted:
            self.configs[device_id] = wanted
        else:
            self.configs.pop(device_id, None)

    def reconcile(self) -> None:
        """Clear the configs of deleted devices."""
        for device_id in list(self.configs):
            if self.server.registry.get(device_id) is None:
                self._replace(device_id, "", {})

    def entity_config(
        self, state: DeviceState, spec: EntitySpec
    ) -> tuple[str, dict[str, Any]] | None:
        """(topic, config) of one entity, or None when discovery leaves it out."""
        platform = spec.platform
        is_input = spec.direction == DIRECTION_IN
        if platform == "light" and (spec.light is None or spec.light.rgb_fields or spec.path):
            return None
        if is_input and spec.path:
            return None
        resource_topic = self.bridge.resource_topic(state, spec.resource)
        node = f"iotmp_{state.id}"
        oid = object_id(spec.key)
        value = _template(spec)
        payload: dict[str, Any] = {
            "name": spec.name,
            "unique_id": f"iotmp_mqtt_{state.id}_{oid}",
            "object_id": f"{state.id}_{oid}",
            "availability": [
                {"topic": f"{self.config.prefix}/status"},
                {"topic": self.bridge.status_topic(state)},
            ],
            "availability_mode": "all",
            "device": {
                "identifiers": [f"iotmp_mqtt_{state.id}"],
                "name": state.config.name or state.id,
                "manufacturer": "iotmp",
                "model": state.config.type or "IOTMP device",
            },
            "origin": {"name": "iotmp"},
            "qos": self.config.qos,
        }
        if spec.entity_category:
            payload["entity_category"] = spec.entity_category
        if spec.device_class:
            payload["device_class"] = spec.device_class
        if platform in COMMAND_PLATFORMS:
            payload["command_topic"] = resource_topic + "/set"
        if platform != "button":
            payload["state_topic"] = resource_topic
        if platform == "sensor":
            payload["value_template"] = "{{ " + value + " }}"
            if spec.unit:
                payload["unit_of_measurement"] = spec.unit
            if spec.state_class:
                payload["state_class"] = spec.state_class
        elif platform == "binary_sensor":
            payload["value_template"] = "{{ 'ON' if " + value + " else 'OFF' }}"
        elif platform in ("switch", "light"):
            payload["payload_on"] = "true"
            payload["payload_off"] = "false"
            if platform == "switch":
                payload["value_template"] = "{{ 'ON' if " + value + " else 'OFF' }}"
                payload["state_on"] = "ON"
                payload["state_off"] = "OFF"
            else:
                payload["state_value_template"] = "{{ 'true' if " + value + " else 'false' }}"
        elif platform == "number":
            payload["value_template"] = "{{ " + value + " }}"
            number = spec.number
            if number is not None:
                payload.update(
                    {"min": number.min, "max": number.max, "step": number.step, "mode": number.mode}
                )
            if spec.unit:
                payload["unit_of_measurement"] = spec.unit
        elif platform == "text":
            payload["value_template"] = "{{ " + value + " }}"
            payload["command_template"] = "{{ value | tojson }}"
        elif platform == "button":
            payload["payload_press"] = ""
        else:
            return None
        return f"{self.config.discovery_prefix}/{platform}/{node}/{oid}/config", payload
