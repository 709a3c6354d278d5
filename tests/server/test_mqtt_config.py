"""The ``mqtt:`` configuration section (pure: needs no MQTT library)."""

from __future__ import annotations

import pytest

from iotmp.server.config import ConfigError, parse_config
from iotmp.server.mqtt.settings import MqttConfig, safe_topic

BASE = {"users": ["alice"], "devices": [{"id": "d", "credential": "c"}]}


def test_mqtt_is_off_by_default_and_true_means_builtin() -> None:
    assert parse_config(BASE).mqtt is None
    config = parse_config({**BASE, "mqtt": True})
    assert config.mqtt == MqttConfig()
    assert config.mqtt.builtin


def test_mqtt_section_values() -> None:
    config = parse_config(
        {
            **BASE,
            "mqtt": {
                "broker": "external",
                "host": "broker.lan",
                "username": "iotmp",
                "password": "pw",
                "prefix": "home/iotmp",
                "qos": 1,
                "retain": False,
                "bridge_devices": ["d"],
                "topic_maps": {"d": {"temp": "sensors/d/temp"}},
            },
        }
    )
    mqtt = config.mqtt
    assert mqtt is not None
    assert (mqtt.host, mqtt.qos, mqtt.retain, mqtt.prefix) == ("broker.lan", 1, False, "home/iotmp")
    assert mqtt.bridged("d") and not mqtt.bridged("other")
    assert mqtt.topic_maps == {"d": {"temp": "sensors/d/temp"}}
    assert config.to_dict()["mqtt"]["broker"] == "external"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"brokr": "builtin"}, "unknown keys"),
        ({"broker": "cloud"}, "broker must be"),
        ({"broker": "external"}, "host is required"),
        ({"qos": 3}, "qos"),
        ({"qos": True}, "wrong type"),
        ({"prefix": "a/+/b"}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"port": 70000}, "valid port"),
        ({"max_payload": 0}, "positive"),
        ({"topic_maps": {"d": {"t": "a/#"}}}, "bad name or topic"),
        ({"topic_maps": {"d": {"t": "a/../b"}}}, "bad name or topic"),
        ("yes", "expected a mapping"),
    ],
)
def test_bad_mqtt_sections_are_config_errors(section: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "mqtt": section})


@pytest.mark.parametrize(
    ("topic", "ok"),
    [
        ("a/b", True),
        ("a/+/b", False),
        ("a/#", False),
        ("a/../b", False),
        ("a\x00b", False),
        ("", False),
        ("x" * 2000, False),
    ],
)
def test_safe_topic(topic: str, ok: bool) -> None:
    assert safe_topic(topic) is ok
