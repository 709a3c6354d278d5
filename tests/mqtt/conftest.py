"""Fixtures: a real mosquitto on a loopback port, servers with either broker."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mqtt_helpers import Mosquitto, MqttLab, have_mosquitto, start_lab

from iotmp.server.testing import TestDevice

# Without the iotmp[mqtt] extra (the Home Assistant legs) there is nothing to test here.
if not all(importlib.util.find_spec(name) for name in ("amqtt", "aiomqtt", "paho")):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Real loopback sockets (Home Assistant's plugin blocks sockets by default)."""


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto (anonymous logins) for one test."""
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed (scripts/setup installs it)")
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(params=["builtin", "external"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Each test that uses a lab runs against both brokers."""
    return str(request.param)


@pytest.fixture
async def lab_factory(broker_kind: str, tmp_path: Path) -> AsyncIterator[Any]:
    """``async with lab_factory(devices, **mqtt) as lab`` on either broker."""
    brokers: list[Mosquitto] = []

    def factory(devices: list[TestDevice], **mqtt: Any) -> Any:
        @asynccontextmanager
        async def run() -> AsyncIterator[MqttLab]:
            broker: Mosquitto | None = None
            if broker_kind == "external":
                if not have_mosquitto():
                    pytest.skip("mosquitto is not installed (scripts/setup installs it)")
                broker = Mosquitto(tmp_path)
                broker.start()
                brokers.append(broker)
            async with start_lab(broker_kind, devices, broker, **mqtt) as server:
                service = server.server.mqtt
                assert service is not None
                await service.wait_connected(10)
                port = service.port if broker is None else broker.port
                assert port is not None
                yield MqttLab(server, "127.0.0.1", port, broker_kind)

        return run()

    try:
        yield factory
    finally:
        for broker in brokers:
            broker.stop()
