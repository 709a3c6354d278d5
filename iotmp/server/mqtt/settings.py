"""The ``mqtt:`` section of the server configuration (pure: no MQTT library needed).

```yaml
mqtt:
  broker: builtin          # or "external"
  host: 127.0.0.1          # builtin: bind address; external: the broker's host
  port: 1883               # 0 = a free port (builtin)
  tls_port: 8883           # builtin only, with the server's tls_cert/tls_key
  username: ...            # external only
  password: ...
  tls: false               # external: connect with TLS
  ca_file: null            # external: CA bundle for TLS
  prefix: iotmp            # bridge topics {prefix}/{user}/{device}/{resource}
  qos: 0
  retain: true
  bridge_devices: null     # list of device ids; null = every device
  output_interval: 10      # seconds between samples of output resources
  discovery: true          # Home Assistant MQTT discovery
  discovery_prefix: homeassistant
  max_payload: 65536       # bytes of one message accepted from a client
  max_topics: 1000         # distinct feeds one MQTT device may create
  topic_maps: {}           # device id -> {resource: topic} (other layouts)
```
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

BROKERS: Final = ("builtin", "external")
DEFAULT_MQTT_PORT: Final = 1883
DEFAULT_MQTT_TLS_PORT: Final = 8883
DEFAULT_PREFIX: Final = "iotmp"
DEFAULT_MAX_PAYLOAD: Final = 64 * 1024
DEFAULT_MAX_TOPICS: Final = 1000
MAX_TOPIC_BYTES: Final = 1024
# A topic segment we build from a name: no wildcards, no separators, no NUL, not "..".
_SEGMENT_BAD: Final = re.compile(r"[+#/\x00]")


class MqttConfigError(ValueError):
    """The ``mqtt`` section is invalid; the message names the key."""


def mqtt_available() -> bool:
    """Whether the ``iotmp[mqtt]`` extra (amqtt, aiomqtt) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("amqtt", "aiomqtt"))


def safe_segment(text: str) -> bool:
    """Whether ``text`` may be one level of a topic we publish or accept."""
    return bool(text) and text not in (".", "..") and not _SEGMENT_BAD.search(text)


def safe_topic(topic: str) -> bool:
    """Whether a topic name (not a filter) is acceptable from a client."""
    if not topic or len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return False
    if "\x00" in topic or "+" in topic or "#" in topic:
        return False
    return all(part not in (".", "..") for part in topic.split("/"))


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Validated MQTT settings (see the module docstring)."""

    broker: str = "builtin"
    host: str | None = None
    port: int = DEFAULT_MQTT_PORT
    tls_port: int | None = DEFAULT_MQTT_TLS_PORT
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    prefix: str = DEFAULT_PREFIX
    qos: int = 0
    retain: bool = True
    bridge_devices: tuple[str, ...] | None = None
    output_interval: float = 10.0
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    max_payload: int = DEFAULT_MAX_PAYLOAD
    max_topics: int = DEFAULT_MAX_TOPICS
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    topic_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        """Whether the server runs the broker itself."""
        return self.broker == "builtin"

    def bridged(self, device_id: str) -> bool:
        """Whether the bridge publishes this device."""
        return self.bridge_devices is None or device_id in self.bridge_devices


_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "broker": (str,),
    "host": (str, type(None)),
    "port": (int,),
    "tls_port": (int, type(None)),
    "username": (str, type(None)),
    "password": (str, type(None)),
    "tls": (bool,),
    "ca_file": (str, type(None)),
    "prefix": (str,),
    "qos": (int,),
    "retain": (bool,),
    "bridge_devices": (list, type(None)),
    "output_interval": (int, float),
    "discovery": (bool,),
    "discovery_prefix": (str,),
    "max_payload": (int,),
    "max_topics": (int,),
    "reconnect_min": (int, float),
    "reconnect_max": (int, float),
    "topic_maps": (dict,),
}


def parse_mqtt(raw: Any) -> MqttConfig | None:
    """Build :class:`MqttConfig` from the parsed ``mqtt`` value (None/false = off)."""
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        raise MqttConfigError("mqtt: expected a mapping")
    unknown = set(raw) - set(_TYPES)
    if unknown:
        raise MqttConfigError(f"mqtt: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {}
    for key, types in _TYPES.items():
        if key not in raw:
            continue
        value = raw[key]
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            raise MqttConfigError(f"mqtt.{key}: wrong type {type(value).__name__}")
        values[key] = value
    if "bridge_devices" in values and values["bridge_devices"] is not None:
        devices = values["bridge_devices"]
        if not all(isinstance(d, str) for d in devices):
            raise MqttConfigError("mqtt.bridge_devices: expected a list of device ids")
        values["bridge_devices"] = tuple(devices)
    if "topic_maps" in values:
        values["topic_maps"] = _parse_topic_maps(values["topic_maps"])
    return validate_mqtt(MqttConfig(**values))


def _parse_topic_maps(raw: Mapping[Any, Any]) -> dict[str, dict[str, str]]:
    maps: dict[str, dict[str, str]] = {}
    for device, mapping in raw.items():
        if not isinstance(device, str) or not isinstance(mapping, Mapping):
            raise MqttConfigError("mqtt.topic_maps: expected {device: {resource: topic}}")
        entries: dict[str, str] = {}
        for resource, topic in mapping.items():
            if not isinstance(resource, str) or not isinstance(topic, str):
                raise MqttConfigError(f"mqtt.topic_maps.{device}: expected resource: topic")
            if not safe_segment(resource) or not safe_topic(topic):
                raise MqttConfigError(f"mqtt.topic_maps.{device}.{resource}: bad name or topic")
            entries[resource] = topic
        maps[device] = entries
    return maps


def validate_mqtt(config: MqttConfig) -> MqttConfig:
    """Cross-field checks; returns ``config``."""
    if config.broker not in BROKERS:
        raise MqttConfigError(f"mqtt.broker must be one of {BROKERS}")
    for key in ("port", "tls_port"):
        port = getattr(config, key)
        if port is not None and not 0 <= port <= 65535:
            raise MqttConfigError(f"mqtt.{key}: {port} is not a valid port")
    if config.qos not in (0, 1, 2):
        raise MqttConfigError("mqtt.qos must be 0, 1 or 2")
    for key in ("prefix", "discovery_prefix"):
        value = getattr(config, key)
        if not value or not all(safe_segment(p) for p in value.split("/")):
            raise MqttConfigError(f"mqtt.{key}: {value!r} is not a topic prefix")
    if config.output_interval < 0:
        raise MqttConfigError("mqtt.output_interval must be >= 0")
    if config.max_payload <= 0 or config.max_topics <= 0:
        raise MqttConfigError("mqtt.max_payload and mqtt.max_topics must be positive")
    if not 0 < config.reconnect_min <= config.reconnect_max:
        raise MqttConfigError("mqtt.reconnect_min must be > 0 and <= reconnect_max")
    if config.broker == "external" and not config.host:
        raise MqttConfigError("mqtt.host is required with an external broker")
    return config
