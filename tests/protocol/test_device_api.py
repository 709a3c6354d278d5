"""The device API (device.py) against a minimal server made from session.py,
over TCP, TLS and WebSocket."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from session_helpers import CREDENTIAL, DEVICE, LOCALHOST, USER, WAIT, IotmpTestServer

from iotmp.device import (
    Device,
    ResourceError,
    ResourceKind,
    resource_path,
    stream_interval_ms,
)
from iotmp.protocol.errors import AuthenticationError, RemoteError
from iotmp.protocol.session import Session, SessionConfig

pytestmark = pytest.mark.usefixtures("socket_enabled")

API = {
    "temperature": {"fn": 3},
    "led": {"fn": 2},
    "brightness": {"fn": 2},
    "reboot": {"fn": 1},
    "uptime": {"fn": 3},
    "calc": {"fn": 4},
}


class DemoDevice:
    """The reference test device's resources (observations header), as state."""

    def __init__(self) -> None:
        self.led = False
        self.brightness = 10
        self.uptime = 0
        self.reboots = 0
        self.device = Device(USER, DEVICE, CREDENTIAL, reconnect_delay=0.05, jitter=0.1)
        d = self.device
        d.output_resource("temperature", lambda: {"celsius": 21.5, "humidity": 45})
        d.input_resource("led", lambda: self.led, self._set_led)
        d.input_resource("brightness", self._get_brightness, self._set_brightness)
        d.run_resource("reboot", self._reboot)
        d.output_resource("uptime", lambda: self.uptime)
        d.input_output_resource("calc", self._calc, {"a": 0, "b": 0})

    def _set_led(self, value: Any) -> None:
        self.led = bool(value)

    async def _get_brightness(self) -> int:
        await asyncio.sleep(0)
        return self.brightness

    async def _set_brightness(self, value: Any) -> None:
        if not isinstance(value, int):
            raise ResourceError("brightness must be an integer", 400)
        self.brightness = value

    def _reboot(self) -> None:
        self.reboots += 1

    @staticmethod
    def _calc(value: Any) -> dict[str, Any]:
        try:
            a, b = value["a"], value["b"]
            return {"sum": a + b, "product": a * b}
        except (KeyError, TypeError) as exc:
            raise ResourceError("calc needs numeric a and b", 400) from exc


class Running:
    """A DemoDevice connected to a test server; ``remote`` is the server's session."""

    def __init__(self, demo: DemoDevice, server: IotmpTestServer, remote: Session) -> None:
        self.demo = demo
        self.device = demo.device
        self.server = server
        self.remote = remote


async def start_device(server: IotmpTestServer, demo: DemoDevice, **run: Any) -> asyncio.Task[None]:
    if server.kind == "ws":
        run.setdefault("transport", "ws")
        run.setdefault("url", server.url)
    return asyncio.create_task(demo.device.run(LOCALHOST, server.port, **run))


async def stop_device(demo: DemoDevice, task: asyncio.Task[None]) -> None:
    await demo.device.stop()
    async with asyncio.timeout(WAIT):
        await task


@pytest.fixture
async def running(make_server: Any) -> AsyncIterator[Running]:
    server = await make_server()
    demo = DemoDevice()
    task = await start_device(server, demo)
    remote = await server.next_session()
    await demo.device.wait_connected(WAIT)
    yield Running(demo, server, remote)
    await stop_device(demo, task)


@pytest.mark.parametrize("kind", ["tcp", "tls", "ws", "wss"])
async def test_round_trip_over_every_transport(
    make_server: Any, kind: str, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    secure = kind in ("tls", "wss")
    server = await make_server(
        kind="ws" if kind.startswith("ws") else "tcp",
        ssl_context=server_ssl if secure else None,
    )
    demo = DemoDevice()
    task = await start_device(
        server,
        demo,
        transport="ws" if kind.startswith("ws") else kind,
        ssl_context=client_ssl if secure else None,
    )
    try:
        remote = await server.next_session()
        assert await remote.describe(timeout=WAIT) == API
        assert await remote.run("temperature", timeout=WAIT) == {"celsius": 21.5, "humidity": 45}
        handle = await remote.start_stream("uptime", timeout=WAIT)
        assert await handle.receive(timeout=WAIT) == 0
        await handle.stop(timeout=WAIT)
        session = demo.device.session
        assert session is not None
        assert session.transport.kind == kind
    finally:
        await stop_device(demo, task)
    assert "disconnected by peer" in await remote.wait_closed()


async def test_describe_each_resource(running: Running) -> None:
    remote = running.remote
    assert await remote.describe("led", timeout=WAIT) == {"in": False}
    assert await remote.describe("brightness", timeout=WAIT) == {"in": 10}
    assert await remote.describe("temperature", timeout=WAIT) == {
        "out": {"celsius": 21.5, "humidity": 45}
    }
    assert await remote.describe("calc", timeout=WAIT) == {
        "in": {"a": 0, "b": 0},
        "out": {"sum": 0, "product": 0},
    }
    assert await remote.describe("reboot", timeout=WAIT) is None
    with pytest.raises(RemoteError) as info:
        await remote.describe("nope", timeout=WAIT)
    assert (info.value.code, info.value.payload) == (None, None)


async def test_run_resources(running: Running) -> None:
    remote, demo = running.remote, running.demo
    # Input: the state changes but RUN does not return it (observation 5).
    assert await remote.run("led", True, timeout=WAIT) is None
    assert demo.led is True
    assert await remote.run("led", timeout=WAIT) is None  # no payload: state unchanged
    assert demo.led is True
    assert await remote.describe("led", timeout=WAIT) == {"in": True}
    assert await remote.run(["led"], False, timeout=WAIT) is None  # array path
    assert demo.led is False
    # Output, run, input+output.
    assert await remote.run("uptime", timeout=WAIT) == 0
    assert await remote.run("reboot", timeout=WAIT) is None
    assert demo.reboots == 1
    assert await remote.run("calc", {"a": 2, "b": 3}, timeout=WAIT) == {"sum": 5, "product": 6}


async def test_resource_errors(running: Running) -> None:
    remote = running.remote
    with pytest.raises(RemoteError) as info:
        await remote.run("calc", {"a": 1}, timeout=WAIT)
    assert info.value.code == 400
    assert info.value.payload == {"error": "calc needs numeric a and b"}
    with pytest.raises(RemoteError) as info:
        await remote.run("brightness", "max", timeout=WAIT)
    assert (info.value.code, info.value.payload) == (
        400,
        {"error": "brightness must be an integer"},
    )
    for resource in ("nope", 5, ["a", 1]):
        with pytest.raises(RemoteError) as info:
            await remote.run(resource, timeout=WAIT)
        assert (info.value.code, info.value.payload) == (None, None)


async def test_stream_echo_stream_on_change_and_stop(running: Running) -> None:
    remote, demo, device = running.remote, running.demo, running.device
    handle = await remote.start_stream("uptime", timeout=WAIT)
    assert await handle.receive(timeout=WAIT) == 0  # the stream echo
    demo.uptime = 7
    assert await device.stream("uptime") == 1
    assert await handle.receive(timeout=WAIT) == 7
    assert await device.stream("uptime", {"event": "custom"}) == 1
    assert await handle.receive(timeout=WAIT) == {"event": "custom"}
    assert await device.stream("led") == 0  # no stream open on it
    await handle.stop(timeout=WAIT)
    assert device.open_streams("uptime") == []
    assert await device.stream("uptime") == 0
    with pytest.raises(RemoteError):
        await remote.stop_stream(handle.stream_id, timeout=WAIT)  # not open any more


async def test_periodic_stream(running: Running) -> None:
    remote, demo = running.remote, running.demo
    samples: asyncio.Queue[Any] = asyncio.Queue()
    handle = await remote.start_stream(
        "uptime", interval_ms=20, on_data=samples.put_nowait, timeout=WAIT
    )
    async with asyncio.timeout(WAIT):
        assert await samples.get() == 0  # echo
        demo.uptime = 99
        while await samples.get() != 99:  # periodic samples follow
            pass
    await handle.stop(timeout=WAIT)


async def test_bare_integer_interval_and_two_streams_on_one_resource(running: Running) -> None:
    remote, device = running.remote, running.device
    first = await remote.start_stream("temperature", parameters=30, timeout=WAIT)
    second = await remote.start_stream("temperature", timeout=WAIT)
    sample = {"celsius": 21.5, "humidity": 45}
    assert await first.receive(timeout=WAIT) == sample
    assert await first.receive(timeout=WAIT) == sample  # periodic
    assert await second.receive(timeout=WAIT) == sample  # echo only
    assert len(device.open_streams("temperature")) == 2
    await first.stop(timeout=WAIT)
    await second.stop(timeout=WAIT)


async def test_run_on_input_streams_new_state(running: Running) -> None:
    remote = running.remote
    handle = await remote.start_stream("led", timeout=WAIT)
    assert await handle.receive(timeout=WAIT) is False
    await remote.run("led", True, timeout=WAIT)
    assert await handle.receive(timeout=WAIT) is True


async def test_server_stream_data_is_new_input(running: Running) -> None:
    remote, demo = running.remote, running.demo
    handle = await remote.start_stream("brightness", timeout=WAIT)
    assert await handle.receive(timeout=WAIT) == 10
    await remote.send_stream_data(handle.stream_id, 42)
    assert await handle.receive(timeout=WAIT) == 42  # echo of the new state
    assert demo.brightness == 42
    calc = await remote.start_stream("calc", timeout=WAIT)
    assert await calc.receive(timeout=WAIT) == {"sum": 0, "product": 0}
    await remote.send_stream_data(calc.stream_id, {"a": 4, "b": 5})
    assert await calc.receive(timeout=WAIT) == {"sum": 9, "product": 20}


async def test_start_stream_unknown_resource(running: Running) -> None:
    with pytest.raises(RemoteError):
        await running.remote.start_stream("nope", timeout=WAIT)


async def test_reconnects_after_server_drops(running: Running) -> None:
    device = running.device
    assert device.connections == 1
    await running.remote.close()
    second = await running.server.next_session()
    assert await second.run("uptime", timeout=WAIT) == 0
    async with asyncio.timeout(WAIT):
        while device.connections < 2:  # noqa: ASYNC110 - polling a counter in a test
            await asyncio.sleep(0.01)


async def test_wrong_credentials_without_reconnect_raises(make_server: Any) -> None:
    server = await make_server()
    device = Device(USER, DEVICE, "wrong")
    with pytest.raises(AuthenticationError) as info:
        await device.run(LOCALHOST, server.port, reconnect=False)
    assert info.value.code == 2
    assert not device.connected.is_set()


async def test_refused_device_keeps_retrying_until_stopped(make_server: Any) -> None:
    server = await make_server()
    device = Device(USER, DEVICE, "wrong", reconnect_delay=0.01)
    task = asyncio.create_task(device.run(LOCALHOST, server.port))
    await server.next_refusal()
    await server.next_refusal()  # it came back
    await device.stop()
    async with asyncio.timeout(WAIT):
        await task
    assert isinstance(device.last_error, AuthenticationError)


async def test_keep_alive_is_announced_and_sent(make_server: Any) -> None:
    server = await make_server(config=SessionConfig(timeout_factor=20))
    demo = DemoDevice()
    task = await start_device(server, demo, keep_alive=0.05)
    try:
        remote = await server.next_session()
        assert remote.info is not None
        assert remote.info.parameters == {"ka": 0.05}
        assert remote.keep_alive == pytest.approx(0.05)
        await asyncio.sleep(0.3)  # several keep-alive periods (margin x20)
        assert remote.is_connected
    finally:
        await stop_device(demo, task)


async def test_run_without_reconnect_returns_when_session_ends(make_server: Any) -> None:
    server = await make_server()
    demo = DemoDevice()
    task = await start_device(server, demo, reconnect=False)
    remote = await server.next_session()
    await remote.close()
    async with asyncio.timeout(WAIT):
        await task
    assert demo.device.session is None


def test_helpers() -> None:
    assert resource_path("a/b") == "a/b"
    assert resource_path(["a", "b"]) == "a/b"
    assert resource_path(5) is None
    assert resource_path([]) is None
    assert stream_interval_ms({"interval": 2000}) == 2000
    assert stream_interval_ms(500) == 500
    assert stream_interval_ms({"interval": 0}) == 0
    assert stream_interval_ms(None) == 0
    assert stream_interval_ms(True) == 0
    device = Device("u", "d", "c")
    device.run_resource("r", lambda: None)
    assert device.resources["r"].kind is ResourceKind.RUN
    assert device.api() == {"r": {"fn": 1}}


async def test_legacy_device(make_server: Any) -> None:
    server = await make_server()
    demo = DemoDevice()
    task = await start_device(server, demo, legacy=True)
    try:
        remote = await server.next_session()
        assert remote.legacy is True
        assert remote.info is not None and remote.info.parameters == 1
        assert await remote.describe(timeout=WAIT) == API
        assert await remote.run("calc", {"a": 2, "b": 0.5}, timeout=WAIT) == {
            "sum": 2.5,
            "product": 1,
        }
    finally:
        await stop_device(demo, task)
