"""Application WebSockets: resource streams (shared, GCD), write echoes, account events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from server_helpers import WAIT, Lab, make_lamp, running_device

from iotmp.protocol.message import Message, MessageType
from iotmp.server.testing import TestDevice, run_test_server


async def _frame(ws: aiohttp.ClientWebSocketResponse, limit: float = WAIT) -> dict[str, Any]:
    msg = await ws.receive(timeout=limit)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    frame = json.loads(msg.data)
    assert isinstance(frame, dict)
    return frame


async def _frames_until(
    ws: aiohttp.ClientWebSocketResponse, predicate: Any, limit: float = WAIT
) -> dict[str, Any]:
    async with asyncio.timeout(limit):
        while True:
            frame = await _frame(ws)
            if predicate(frame):
                return frame


async def _no_frame(ws: aiohttp.ClientWebSocketResponse, wait: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=wait)


def _ws_url(lab: Lab, path: str) -> str:
    return lab.dev(path).replace("http://", "ws://", 1)


async def test_stream_echo_and_write_echo(lab: Lab) -> None:
    async with lab.http.ws_connect(_ws_url(lab, "/resources"), headers=lab.headers) as ws:
        await ws.send_json({"resource": "temperature", "interval": 0, "enabled": True})
        frame = await _frame(ws)
        assert frame == {
            "resource": "temperature",
            "signal": "data",
            "payload": {"celsius": 21.5, "humidity": 45},
        }
        await ws.send_json({"resource": "led", "interval": 0})
        assert await _frame(ws) == {"resource": "led", "signal": "data", "payload": False}
        async with lab.http.post(lab.dev("/resources/led"), headers=lab.headers, json=True) as r:
            assert r.status == 200
        frame = await _frames_until(ws, lambda f: f["resource"] == "led")
        assert frame["payload"] is True
        # unsubscribe: the device stream is stopped
        await ws.send_json({"resource": "temperature", "enabled": False})
        await ws.send_json({"resource": "led", "enabled": False})
        await _wait_for(lambda: not lab.device.open_streams("led"))
        await _wait_for(lambda: not lab.device.open_streams("temperature"))


async def _wait_for(predicate: Any, limit: float = WAIT) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_write_echo_when_device_does_not_stream(lab: Lab) -> None:
    """Reference devices do not stream after a RUN: the server reads back and pushes."""

    async def no_stream(resource: str, payload: Any = None) -> int:
        return 0

    lab.device.stream = no_stream  # type: ignore[method-assign]
    async with lab.http.ws_connect(_ws_url(lab, "/resources"), headers=lab.headers) as ws:
        await ws.send_json({"resource": "brightness", "interval": 0})
        assert (await _frame(ws))["payload"] == 10
        async with lab.http.post(
            lab.dev("/resources/brightness"), headers=lab.headers, json=99
        ) as r:
            assert r.status == 200
        frame = await _frame(ws)
        assert frame == {"resource": "brightness", "signal": "data", "payload": 99}


async def test_write_through_websocket(lab: Lab) -> None:
    async with lab.http.ws_connect(_ws_url(lab, "/resources/led"), headers=lab.headers) as ws:
        assert (await _frame(ws))["payload"] is False
        await ws.send_json({"payload": True})
        frame = await _frames_until(ws, lambda f: f.get("payload") is True)
        assert frame["resource"] == "led"
    assert lab.state.led is True


async def test_single_resource_socket_with_interval(lab: Lab) -> None:
    url = _ws_url(lab, "/resources/counter") + "?interval=0.1"
    async with lab.http.ws_connect(url, headers=lab.headers) as ws:
        values = [(await _frame(ws))["payload"] for _ in range(4)]
    assert values == sorted(values)
    assert len(set(values)) == 4


async def test_token_in_query_and_auth_errors(lab: Lab) -> None:
    url = _ws_url(lab, "/resources") + f"?authorization={lab.server.token}"
    async with lab.http.ws_connect(url) as ws:
        await ws.send_json({"resource": "led", "interval": 0})
        assert (await _frame(ws))["resource"] == "led"
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await lab.http.ws_connect(_ws_url(lab, "/resources"))
    assert err.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await lab.http.ws_connect(
            _ws_url(lab, "/resources").replace("/lamp/", "/ghost/"), headers=lab.headers
        )
    assert err.value.status == 404


async def test_bad_control_frames(lab: Lab) -> None:
    async with lab.http.ws_connect(_ws_url(lab, "/resources"), headers=lab.headers) as ws:
        await ws.send_str("{nope")
        assert "error" in await _frame(ws)
        await ws.send_json({"interval": 3})
        assert "error" in await _frame(ws)
        await ws.send_json({"resource": "led", "interval": "soon"})
        assert "error" in await _frame(ws)
        # an unknown resource: the device refuses the stream
        await ws.send_json({"resource": "nope", "interval": 0})
        frame = await _frame(ws)
        assert frame["resource"] == "nope"
        assert frame["signal"] == "error"


async def test_gcd_sharing(lab: Lab) -> None:
    """Two subscribers (0.2 s, 0.3 s) share ONE device stream at gcd = 100 ms."""
    url = _ws_url(lab, "/resources")
    async with (
        lab.http.ws_connect(url, headers=lab.headers) as ws_a,
        lab.http.ws_connect(url, headers=lab.headers) as ws_b,
    ):
        await ws_a.send_json({"resource": "counter", "interval": 0.2})
        await _frame(ws_a)  # echo
        await ws_b.send_json({"resource": "counter", "interval": 0.3})
        await _frame(ws_b)  # echo of the re-configured stream
        await _wait_for(
            lambda: (
                [s.parameters for s in lab.device.open_streams("counter")] == [{"interval": 100}]
            )
        )
        counts = {"a": 0, "b": 0}

        async def count(name: str, ws: aiohttp.ClientWebSocketResponse) -> None:
            while True:
                await _frame(ws)
                counts[name] += 1

        tasks = [
            asyncio.create_task(count("a", ws_a)),
            asyncio.create_task(count("b", ws_b)),
        ]
        await asyncio.sleep(1.25)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # ~6 vs ~4 deliveries; loose bounds, no tight timing
        assert 3 <= counts["a"] <= 9, counts
        assert 2 <= counts["b"] <= 6, counts
        assert counts["a"] > counts["b"], counts
        assert len(lab.device.open_streams("counter")) == 1

        # b leaves: the device stream follows a's interval; a leaves: stopped
        await ws_b.send_json({"resource": "counter", "enabled": False})
        await _wait_for(
            lambda: (
                [s.parameters for s in lab.device.open_streams("counter")] == [{"interval": 200}]
            )
        )
        await ws_a.send_json({"resource": "counter", "enabled": False})
        await _wait_for(lambda: not lab.device.open_streams("counter"))
    await _wait_for(lambda: lab.server.server.hub.stream("lamp", "counter") is None)


async def test_socket_close_stops_device_stream(lab: Lab) -> None:
    async with lab.http.ws_connect(_ws_url(lab, "/resources"), headers=lab.headers) as ws:
        await ws.send_json({"resource": "counter", "interval": 1})
        await _frame(ws)
        assert len(lab.device.open_streams("counter")) == 1
    await _wait_for(lambda: not lab.device.open_streams("counter"))


async def test_legacy_frames(http: aiohttp.ClientSession) -> None:
    async with run_test_server(
        devices=[TestDevice("lamp", credential="pw")], websocket_frames="legacy"
    ) as server:
        device, _ = make_lamp(server.user, "lamp", "pw")
        async with running_device(device, server.tcp_port):
            await server.wait_device_connected("lamp")
            url = f"{server.ws_url}/v3/users/{server.user}/devices/lamp/resources"
            headers = {"Authorization": f"Bearer {server.token}"}
            async with http.ws_connect(url, headers=headers) as ws:
                await ws.send_json({"resource": "led", "interval": 0})
                assert await _frame(ws) == {"resource": "led", "in": False}
                await ws.send_json({"resource": "temperature", "interval": 0})
                assert await _frame(ws) == {
                    "resource": "temperature",
                    "out": {"celsius": 21.5, "humidity": 45},
                }


async def test_streams_survive_device_reconnect(lab: Lab) -> None:
    async with lab.http.ws_connect(_ws_url(lab, "/resources"), headers=lab.headers) as ws:
        await ws.send_json({"resource": "led", "interval": 0})
        assert (await _frame(ws))["payload"] is False
        session = lab.device.session
        assert session is not None
        await session.close("simulated drop")  # the device reconnects after 0.1 s
        await lab.server.wait_device_disconnected("lamp")
        lab.state.led = True
        await lab.server.wait_device_connected("lamp")
        # the server restarts the device stream: a fresh echo arrives on the same socket
        frame = await _frames_until(ws, lambda f: f.get("payload") is True)
        assert frame["resource"] == "led"
        assert not ws.closed


# ----------------------------------------------------------------------- events


async def test_events_v2(lab: Lab) -> None:
    url = lab.url("/v2/users/alice/events").replace("http://", "ws://", 1)
    async with lab.http.ws_connect(url, headers=lab.headers) as ws:
        await ws.send_json({"event": "device_state_change"})
        ack = await _frame(ws)
        assert ack["success"] is True
        assert "registered" in ack
        assert "event" not in ack
        await lab.device.stop()
        frame = await _frame(ws)
        assert frame["event"] == "device_state_change"
        assert frame["user"] == "alice"
        assert frame["device"] == "lamp"
        assert frame["state"] == "disconnected"
        assert isinstance(frame["ts"], int) and frame["ts"] > 1_600_000_000_000


async def test_events_filters_and_silence(lab: Lab) -> None:
    base = lab.url("/v1/users/alice/events").replace("http://", "ws://", 1)
    v2 = base.replace("/v1/", "/v2/")
    async with (
        lab.http.ws_connect(base + f"?authorization={lab.server.token}") as silent,
        lab.http.ws_connect(base, headers=lab.headers) as v1,
        lab.http.ws_connect(v2, headers=lab.headers) as filtered,
    ):
        await v1.send_json({"event": "device_.*", "device": "la.*", "state": "connected"})
        await filtered.send_json({"event": "device_state_change", "filters": {"device": "other"}})
        assert "registered" in await _frame(filtered)
        session = lab.device.session
        assert session is not None
        await session.close("simulated drop")
        frame = await _frame(v1)  # the "disconnected" event is filtered out
        assert (frame["device"], frame["state"]) == ("lamp", "connected")
        await _no_frame(silent)
        await _no_frame(filtered)


async def test_keep_alive_timeout_gives_disconnect_event(http: aiohttp.ClientSession) -> None:
    from server_helpers import RawPeer

    async with run_test_server(
        devices=[TestDevice("refdev1", credential="s3cret")], user="alice", keep_alive=0.4
    ) as server:
        url = f"{server.ws_url}/v2/users/alice/events"
        async with http.ws_connect(url, headers={"Authorization": f"Bearer {server.token}"}) as ws:
            await ws.send_json({"event": "device_state_change"})
            await _frame(ws)
            peer = await RawPeer.open(server.tcp_port)
            try:
                # A declared ka is honoured (undeclared means at least 75 s: reference devices).
                await peer.send(
                    Message.build(
                        MessageType.CONNECT,
                        stream_id=1,
                        parameters={"ka": 0.4},
                        payload=["alice", "refdev1", "s3cret"],
                    )
                )
                assert (await peer.receive()).type == 1  # OK
                describe = await peer.receive()
                assert describe.type == 7
                await peer.send(Message.build(MessageType.OK, stream_id=describe.stream_id))
                frame = await _frame(ws)
                assert frame["state"] == "connected"
                # the device now stays silent: dropped after ka * 1.15 s
                frame = await _frame(ws, limit=3)
                assert frame["state"] == "disconnected"
                assert await peer.wait_eof()
            finally:
                await peer.close()
