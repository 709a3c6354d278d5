"""Fixtures for the local server tests: a running server, a connected test device, HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from server_helpers import LampState, make_lamp, running_device

from custom_components.iotmp.protocol.device import Device
from iotmp_server.testing import TestDevice, TestServer, run_test_server


@dataclass
class Lab:
    """A server with one connected device ``lamp`` (user ``alice``) and an HTTP session."""

    server: TestServer
    device: Device
    state: LampState
    http: aiohttp.ClientSession

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header with the server's token."""
        return {"Authorization": f"Bearer {self.server.token}"}

    def url(self, path: str) -> str:
        """Absolute URL of an API path."""
        return self.server.http_url + path

    def dev(self, path: str = "", version: int = 3, device: str = "lamp") -> str:
        """URL under /v{version}/users/alice/devices/{device}."""
        return self.url(f"/v{version}/users/{self.server.user}/devices/{device}{path}")


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Real loopback sockets (Home Assistant's plugin blocks sockets by default)."""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session closed at teardown."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def lab(http: aiohttp.ClientSession) -> AsyncIterator[Lab]:
    """Server + connected lamp device."""
    devices = [
        TestDevice("lamp", credential="pw", name="Desk lamp", description="on the desk"),
        TestDevice("spare", credential="pw2", name="Spare"),
    ]
    async with run_test_server(devices=devices, user="alice", request_timeout=1.0) as server:
        device, state = make_lamp("alice", "lamp", "pw")
        async with running_device(device, server.tcp_port):
            await server.wait_device_connected("lamp", 5)
            yield Lab(server, device, state, http)
