"""Fixtures for the local server tests: a running server, a connected test device, HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from server_helpers import Lab, make_lamp, running_device

from iotmp.server.testing import TestDevice, run_test_server


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Real loopback sockets (Home Assistant's plugin blocks sockets by default)."""


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
