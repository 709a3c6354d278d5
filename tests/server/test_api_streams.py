"""Resource streams over real sockets: each value once, at the subscriber's rate; closes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from server_helpers import WAIT, Lab, RawPeer, ReferenceDevice, running_device

from iotmp.device import Device
from iotmp.protocol.session import SessionConfig
from iotmp.server.testing import TestDevice, TestServer, run_test_server


async def _frames(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[tuple[float, Any]]:
    """Every JSON frame received within ``seconds`` (with its arrival time)."""
    got: list[tuple[float, Any]] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        got.append((time.monotonic(), msg.json()))
    return got


def _socket_url(server: TestServer, device: str, tail: str = "") -> str:
    return f"{server.ws_url}/v3/users/alice/devices/{device}/resources{tail}"


def _auth(server: TestServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


class Ticker:
    """A device whose ``count`` goes up every ``tick`` s and is pushed on each change."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.count = 0
        self.device = Device(
            "alice",
            "ticker",
            "pw",
            config=SessionConfig(request_timeout=5.0, concurrent_requests=True),
            reconnect_delay=0.1,
            jitter=0.0,
        )
        self.device.output_resource("count", lambda: self.count)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.tick
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.count += 1
            with contextlib.suppress(Exception):
                await self.device.stream("count")


@pytest.fixture
async def ticker_server(http: aiohttp.ClientSession) -> AsyncIterator[tuple[TestServer, Ticker]]:
    async with run_test_server(devices=[TestDevice("ticker", credential="pw")]) as server:
        ticker = Ticker(0.5)
        async with running_device(ticker.device, server.tcp_port):
            await server.wait_device_connected("ticker", WAIT)
            task = asyncio.create_task(ticker.run())
            try:
                yield server, ticker
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_interval_on_a_counter_gives_each_value_once(
    ticker_server: tuple[TestServer, Ticker], http: aiohttp.ClientSession
) -> None:
    """The device samples every 0.5 s and pushes every change: one frame per value."""
    server, _ticker = ticker_server
    async with http.ws_connect(_socket_url(server, "ticker"), headers=_auth(server)) as ws:
        await ws.send_json({"resource": "count", "interval": 0.5, "enabled": True})
        frames = await _frames(ws, 2.7)
    values = [f["payload"] for _, f in frames]
    assert len(values) >= 4, values
    assert len(values) == len(set(values)), f"a value came twice: {values}"
    assert values == sorted(values)
    times = [t for t, _ in frames]
    assert all(b - a >= 0.5 - 0.1 for a, b in itertools.pairwise(times[1:])), times


async def test_interval_limits_a_fast_pushing_sensor(
    ticker_server: tuple[TestServer, Ticker], http: aiohttp.ClientSession
) -> None:
    """Interval 1.5 s on a device pushing every 0.5 s: at most one frame per 1.5 s."""
    server, _ticker = ticker_server
    async with http.ws_connect(_socket_url(server, "ticker"), headers=_auth(server)) as ws:
        await ws.send_json({"resource": "count", "interval": 1.5})
        frames = await _frames(ws, 3.4)
    values = [f["payload"] for _, f in frames]
    # the echo at once, then one per 1.5 s: at 1.5 and 3.0 (pushes at every 0.5 s dropped)
    assert 2 <= len(values) <= 3, values
    assert len(values) == len(set(values))
    times = [t for t, _ in frames]
    assert all(b - a >= 1.5 - 0.15 - 0.05 for a, b in itertools.pairwise(times)), times


async def test_interval_zero_gets_every_change_once(
    ticker_server: tuple[TestServer, Ticker], http: aiohttp.ClientSession
) -> None:
    server, _ticker = ticker_server
    async with http.ws_connect(_socket_url(server, "ticker"), headers=_auth(server)) as ws:
        await ws.send_json({"resource": "count", "interval": 0})
        frames = await _frames(ws, 2.2)
    values = [f["payload"] for _, f in frames]
    assert len(values) >= 4, values
    assert values == list(range(values[0], values[0] + len(values)))  # every change, once


async def test_write_reaches_a_subscriber_once(lab: Lab) -> None:
    """The device re-streams the input after the RUN and the server reads it back: one frame."""
    url = lab.dev("/resources")
    async with lab.http.ws_connect(url, headers=lab.headers) as ws:
        await ws.send_json({"resource": "led", "interval": 0})
        echo = await ws.receive_json(timeout=WAIT)
        assert echo == {"resource": "led", "signal": "data", "payload": False}
        async with lab.http.post(lab.dev("/resources/led"), json=True, headers=lab.headers) as r:
            assert r.status == 200
        frames = await _frames(ws, 1.5)
    assert [f["payload"] for _, f in frames] == [True]


async def test_write_reaches_an_interval_subscriber_once(lab: Lab) -> None:
    url = lab.dev("/resources")
    async with lab.http.ws_connect(url, headers=lab.headers) as ws:
        await ws.send_json({"resource": "brightness", "interval": 5})
        assert (await ws.receive_json(timeout=WAIT))["payload"] == 10
        async with lab.http.post(
            lab.dev("/resources/brightness"), json=42, headers=lab.headers
        ) as r:
            assert r.status == 200
        frames = await _frames(ws, 1.5)
    assert [f["payload"] for _, f in frames] == [42]


async def test_frames_query_parameter_chooses_legacy_frames(lab: Lab) -> None:
    async with lab.http.ws_connect(lab.dev("/resources?frames=legacy"), headers=lab.headers) as ws:
        await ws.send_json({"resource": "led", "interval": 0})
        assert await ws.receive_json(timeout=WAIT) == {"resource": "led", "in": False}
        await ws.send_json({"resource": "temperature", "interval": 0})
        frame = await ws.receive_json(timeout=WAIT)
        assert frame == {"resource": "temperature", "out": {"celsius": 21.5, "humidity": 45}}
    single = lab.dev("/resources/led?frames=legacy")
    async with lab.http.ws_connect(single, headers=lab.headers) as ws:
        assert await ws.receive_json(timeout=WAIT) == {"resource": "led", "in": False}
    # the default stays "signal"
    async with lab.http.ws_connect(lab.dev("/resources/led"), headers=lab.headers) as ws:
        assert (await ws.receive_json(timeout=WAIT))["signal"] == "data"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with lab.http.ws_connect(lab.dev("/resources?frames=xml"), headers=lab.headers):
            pass
    assert refused.value.status == 400


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[Any], int | None, str]:
    """Frames until the server closes; then the close code and reason."""
    frames: list[Any] = []
    async with asyncio.timeout(WAIT):
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                frames.append(msg.json())
                continue
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
            return frames, ws.close_code, str(msg.extra or "")


async def test_single_resource_socket_on_unknown_resource_closes(lab: Lab) -> None:
    async with lab.http.ws_connect(lab.dev("/resources/nope"), headers=lab.headers) as ws:
        frames, code, reason = await _closed(ws)
    assert code == 4404
    assert "'nope' not found" in reason
    assert frames[0]["signal"] == "error"
    assert "not found" in frames[0]["payload"]["error"]["message"]


async def test_multiplexed_socket_reports_unknown_resource_and_stays_open(lab: Lab) -> None:
    async with lab.http.ws_connect(lab.dev("/resources"), headers=lab.headers) as ws:
        await ws.send_json({"resource": "nope", "interval": 0})
        frame = await ws.receive_json(timeout=WAIT)
        assert frame["resource"] == "nope" and frame["signal"] == "error"
        assert "not found" in frame["payload"]["error"]["message"]
        await ws.send_json({"resource": "led", "interval": 0})
        assert (await ws.receive_json(timeout=WAIT))["payload"] is False


async def test_single_resource_socket_on_offline_device_closes(lab: Lab) -> None:
    async with lab.http.ws_connect(
        lab.dev("/resources/led", device="spare"), headers=lab.headers
    ) as ws:
        _frames_seen, code, reason = await _closed(ws)
    assert code == 4503
    assert reason == "device not connected"


async def test_single_resource_socket_closes_when_the_device_leaves(lab: Lab) -> None:
    async with lab.http.ws_connect(lab.dev("/resources/led"), headers=lab.headers) as ws:
        assert (await ws.receive_json(timeout=WAIT))["payload"] is False
        session = lab.device.session
        assert session is not None
        await session.close("unplugged")
        _frames_seen, code, reason = await _closed(ws)
    assert code == 4503
    assert reason == "device not connected"


async def test_single_resource_socket_on_device_error_closes(
    http: aiohttp.ClientSession,
) -> None:
    """A reference device that refuses START_STREAM on a resource it lists."""
    async with run_test_server(devices=[TestDevice("refdev1", credential="s3cret")]) as server:
        peer = await RawPeer.open(server.tcp_port)
        ref = ReferenceDevice(peer)
        try:
            await ref.login()
            ref.start()
            await server.wait_device_connected("refdev1", WAIT)
            url = _socket_url(server, "refdev1", "/temperature")
            async with http.ws_connect(url, headers=_auth(server)) as ws:
                frames, code, reason = await _closed(ws)
            assert code == 4500
            assert reason.startswith("device error")
            assert frames[0]["signal"] == "error"
            # a resource it does stream still works on the same server
            async with http.ws_connect(
                _socket_url(server, "refdev1", "/uptime"), headers=_auth(server)
            ) as ws:
                assert (await ws.receive_json(timeout=WAIT))["payload"] == 0
        finally:
            await ref.close()


async def test_interval_keeps_sampling_an_unchanged_value(lab: Lab) -> None:
    """Repeats are held back only briefly: a constant value still comes every interval."""
    async with lab.http.ws_connect(lab.dev("/resources"), headers=lab.headers) as ws:
        await ws.send_json({"resource": "brightness", "interval": 0.5})
        frames = await _frames(ws, 2.1)
    values = [f["payload"] for _, f in frames]
    assert values[:3] == [10, 10, 10], values
    assert 3 <= len(values) <= 5, values
