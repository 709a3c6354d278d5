"""Fixtures for the server-client tests: a real local server with a real device.

Every socket is on the literal 127.0.0.1 with ephemeral ports (the Home
Assistant test plugin allows nothing else).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from iotmp.device import Device, ResourceError
from iotmp.server.testing import TestDevice, TestServer, run_test_server

DEVICE_ID = "lamp"
DEVICE_CREDENTIAL = "lamp-secret"


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking JWT for fake servers (the client never verifies)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}.{b64(b'sig')}"


@pytest.fixture
async def session(socket_enabled: None) -> AsyncIterator[aiohttp.ClientSession]:
    """The caller's aiohttp session (Home Assistant would inject its own)."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@dataclass
class LampState:
    """What the test device holds; tests change it and watch it."""

    light: bool = False
    brightness: int = 10
    temperature: float = 21.5
    room_light: bool = True
    reboots: int = 0
    calls: list[str] = field(default_factory=list)


def build_lamp(server: TestServer, state: LampState) -> Device:
    """A device with one resource of every kind plus awkward names and failures."""
    device = Device(server.user, DEVICE_ID, DEVICE_CREDENTIAL, reconnect_delay=0.05, jitter=0)

    def set_light(value: Any) -> None:
        state.light = bool(value)

    def set_brightness(value: Any) -> None:
        state.brightness = int(value)

    def set_room(value: Any) -> None:
        state.room_light = bool(value)

    def reboot() -> None:
        state.reboots += 1

    async def slow() -> float:
        await asyncio.sleep(1.0)  # longer than the server's request_timeout (0.5 s)
        return 0.0

    def broken() -> Any:
        raise ResourceError("sensor exploded", 500)

    def refuses() -> Any:
        raise ResourceError("value out of range", 400)

    device.input_resource("light", lambda: state.light, set_light)
    device.input_resource("brightness", lambda: state.brightness, set_brightness)
    device.output_resource("temperature", lambda: state.temperature)
    device.output_resource("dht", lambda: {"celsius": state.temperature, "humidity": 40})
    device.run_resource("reboot", reboot)
    device.input_output_resource("double", lambda x: {"result": 2 * (x or 0)}, 1)
    device.input_resource("living room/lamp", lambda: state.room_light, set_room)
    device.output_resource("température", lambda: state.temperature)
    device.output_resource("$ota/options", lambda: {"enabled": True})
    device.output_resource("slow", slow)
    device.output_resource("broken", broken)
    device.output_resource("refuses", refuses)
    return device


@contextlib.asynccontextmanager
async def running_device(server: TestServer, device: Device) -> AsyncIterator[Device]:
    """Run ``device`` against ``server`` (TCP) until the block ends."""
    task = asyncio.create_task(device.run("127.0.0.1", server.tcp_port))
    try:
        await server.wait_device_connected(device.device_id, timeout=10)
        yield device
    finally:
        await device.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Lab:
    """A running server with the lamp device connected."""

    server: TestServer
    device: Device
    state: LampState


@pytest.fixture
async def server(socket_enabled: None) -> AsyncIterator[TestServer]:
    """A local server with the lamp registered (not connected)."""
    async with run_test_server(
        devices=[TestDevice(DEVICE_ID, credential=DEVICE_CREDENTIAL, name="Desk lamp")],
        user="alice",
        request_timeout=0.5,
    ) as test_server:
        yield test_server


@pytest.fixture
async def lab(server: TestServer) -> AsyncIterator[Lab]:
    """The local server with the lamp connected."""
    state = LampState()
    device = build_lamp(server, state)
    async with running_device(server, device):
        yield Lab(server, device, state)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def fake_server(routes: list[web.RouteDef], *, ssl_context: Any = None) -> AsyncIterator[str]:
    """A tiny aiohttp server on 127.0.0.1 for shapes the local server cannot produce.

    Yields its base URL.
    """
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=3.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll ``predicate`` until true (fails the test after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling test helper
            await asyncio.sleep(0.01)
