"""Device side of the server: transports, reference bytes, misbehaving devices, throttling."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from pathlib import Path
from typing import Any

import aiohttp
from server_helpers import (
    LOCALHOST,
    REF_CONNECT,
    WAIT,
    Lab,
    RawPeer,
    ReferenceDevice,
    frame_hex,
    make_lamp,
    reference_websocket_login,
    running_device,
    varint_hex,
)

from iotmp.device import Device
from iotmp.protocol.message import Message, MessageType
from iotmp.protocol.session import SessionConfig
from iotmp.protocol.transport import client_ssl_context
from iotmp.server.certs import make_self_signed
from iotmp.server.testing import TestDevice, TestServer, run_test_server


async def _get(http: aiohttp.ClientSession, server: TestServer, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with http.get(server.http_url + path, headers=headers) as resp:
        text = await resp.text()
        return resp.status, (await resp.json()) if text else None


async def _connect_raw(
    port: int, user: str, device: str, credential: str, *, source: str | None = None
) -> RawPeer:
    """A raw peer logged in and described (answers the DESCRIBE with no resources)."""
    peer = await RawPeer.open(port, source=source)
    await peer.send(
        Message.build(MessageType.CONNECT, stream_id=1, payload=[user, device, credential])
    )
    reply = await peer.receive()
    assert reply.type == MessageType.OK
    describe = await peer.receive()
    assert describe.type == MessageType.DESCRIBE
    await peer.send(Message.build(MessageType.OK, stream_id=describe.stream_id, payload={}))
    return peer


# ------------------------------------------------------------------ reference bytes


async def test_reference_device_is_served(http: aiohttp.ClientSession) -> None:
    async with run_test_server(devices=[TestDevice("refdev1", credential="s3cret")]) as server:
        peer = await RawPeer.open(server.tcp_port)
        ref = ReferenceDevice(peer)
        try:
            ok = await ref.login()
            assert ok.type == MessageType.OK
            assert ok.stream_id == 17767  # the CONNECT's id, as the device expects
            ref.start()
            await server.wait_device_connected("refdev1")
            status, api = await _get(http, server, "/v3/users/alice/devices/refdev1/resources")
            assert status == 200
            assert api == {
                "brightness": {"fn": 2},
                "calc": {"fn": 4},
                "led": {"fn": 2},
                "reboot": {"fn": 1},
                "rgb": {"fn": 2},
                "temperature": {"fn": 3},
                "uptime": {"fn": 3},
            }
            base = "/v3/users/alice/devices/refdev1/resources"
            assert await _get(http, server, base + "/temperature") == (
                200,
                {"celsius": 21.5, "humidity": 45},
            )
            assert await _get(http, server, base + "/led/api") == (200, {"in": True})
            assert await _get(http, server, base + "/led") == (200, True)
            headers = {"Authorization": f"Bearer {server.token}"}
            async with http.post(server.http_url + base + "/led", json=False, headers=headers) as r:
                assert r.status == 200
            run = ref.requests[-1]
            assert (run.type, run.resource, run.payload) == (MessageType.RUN, "led", False)
            # device keep-alive is echoed; the device never answers ours
            await peer.send_hex("05 00")
            async with asyncio.timeout(WAIT):
                while ref.keep_alive_echoes < 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            # STREAM_DATA for a stream id the server does not know is tolerated
            await peer.send_hex("0a 06 18 00 08 e7 8a 01")
            # stream: the echo (a varint 0) reaches the app socket
            url = server.ws_url + "/v3/users/alice/devices/refdev1/resources"
            async with http.ws_connect(url, headers=headers) as ws:
                await ws.send_json({"resource": "uptime", "interval": 2})
                frame = await ws.receive_json(timeout=WAIT)
                assert frame == {"resource": "uptime", "signal": "data", "payload": 0}
            start = next(m for m in ref.requests if m.type == MessageType.START_STREAM)
            assert start.parameters == {"interval": 2000}
            assert server.devices_online() == ["refdev1"]
        finally:
            await ref.close()


async def test_rejected_login_is_closed_by_server() -> None:
    async with run_test_server(
        devices=[TestDevice("refdev1", credential="other")], login_delay=0.0
    ) as server:
        peer = await RawPeer.open(server.tcp_port)
        try:
            await peer.send_hex(REF_CONNECT)
            reply = await peer.receive()
            assert reply.type == MessageType.ERROR
            assert reply.stream_id == 17767
            # the reference device would leave the socket open: the server closes it
            assert await peer.wait_eof(limit=2)
        finally:
            await peer.close()


async def test_first_message_must_be_connect() -> None:
    async with run_test_server(devices=[TestDevice("refdev1", credential="s3cret")]) as server:
        peer = await RawPeer.open(server.tcp_port)
        try:
            await peer.send_hex(frame_hex(0x06, "22 83 6c6564 08 01"))  # RUN led
            assert await peer.wait_eof(limit=2)
        finally:
            await peer.close()


# ------------------------------------------------------------- misbehaving devices


async def test_garbage_and_oversized_devices_are_dropped(lab: Lab) -> None:
    lab.server.add_device(TestDevice("junk", credential="j"))
    lab.server.add_device(TestDevice("huge", credential="h"))
    events_url = lab.url("/v2/users/alice/events").replace("http://", "ws://", 1)
    async with lab.http.ws_connect(events_url, headers=lab.headers) as events:
        await events.send_json({"event": "device_state_change", "filters": {"device": "lamp"}})
        assert "registered" in await events.receive_json(timeout=WAIT)

        junk = await _connect_raw(lab.server.tcp_port, "alice", "junk", "j")
        huge = await _connect_raw(lab.server.tcp_port, "alice", "huge", "h")
        pre = await RawPeer.open(lab.server.tcp_port)
        try:
            await lab.server.wait_device_connected("junk")
            await lab.server.wait_device_connected("huge")
            await junk.send_hex("ff ff ff ff ff ff ff ff")  # not a message
            await huge.send_hex("0a ff ff ff 7f")  # a 256 MiB STREAM_DATA header
            await pre.send_hex("00 00 00 ff ff ff ff ff ff")  # garbage before CONNECT
            assert await junk.wait_eof()
            assert await huge.wait_eof()
            assert await pre.wait_eof()
            await lab.server.wait_device_disconnected("junk")
            await lab.server.wait_device_disconnected("huge")
        finally:
            for peer in (junk, huge, pre):
                await peer.close()
        # the other device and clients did not notice
        assert "lamp" in lab.server.devices_online()
        async with lab.http.get(lab.dev("/resources/temperature"), headers=lab.headers) as resp:
            assert resp.status == 200
        with contextlib.suppress(TimeoutError):
            msg = await events.receive(timeout=0.2)
            raise AssertionError(f"unexpected event {msg}")


async def test_second_connection_replaces_first() -> None:
    async with run_test_server(devices=[TestDevice("dup", credential="d")]) as server:
        first = await _connect_raw(server.tcp_port, "alice", "dup", "d")
        await server.wait_device_connected("dup")
        second = await _connect_raw(server.tcp_port, "alice", "dup", "d")
        try:
            assert await first.wait_eof()
            await server.wait_device_connected("dup")
            state = server.device("dup")
            assert state.link is not None
            assert state.link.session.transport.peer.endswith(
                str(second.writer.get_extra_info("sockname")[1])
            )
        finally:
            await first.close()
            await second.close()


async def test_login_throttling() -> None:
    async with run_test_server(
        devices=[TestDevice("good", credential="g")], login_delay=0.1, login_delay_max=0.4
    ) as server:

        async def failed_login() -> float:
            peer = await RawPeer.open(server.tcp_port)
            try:
                started = time.monotonic()
                await peer.send(
                    Message.build(MessageType.CONNECT, stream_id=3, payload=["alice", "good", "x"])
                )
                reply = await peer.receive()
                elapsed = time.monotonic() - started
                assert reply.type == MessageType.ERROR
                assert await peer.wait_eof()
                return elapsed
            finally:
                await peer.close()

        # each attempt after a failure waits its turn: 0, 0.1, 0.2, 0.4, 0.4 s
        delays = [await failed_login() for _ in range(5)]
        # The throttle spaces attempts from the previous one, so part of each
        # wait has passed by the time the next attempt starts.
        assert delays[0] < 0.09
        assert delays[1] >= 0.07
        assert delays[2] >= 0.15
        assert delays[3] >= 0.3
        assert 0.38 <= delays[4] < 2.0  # capped at 0.4 s
        # a delayed login does not block a good device from another address
        slow = asyncio.create_task(failed_login())
        await asyncio.sleep(0.02)
        started = time.monotonic()
        good = await _connect_raw(server.tcp_port, "alice", "good", "g", source="127.0.0.2")
        assert time.monotonic() - started < 0.3
        assert not slow.done()
        await slow
        await good.close()
        # that success does not lift the delay of the failing address
        assert server.server.throttle.failures("127.0.0.1") == 6
        assert await failed_login() >= 0.38


async def test_hundred_devices_connect_at_once(http: aiohttp.ClientSession) -> None:
    count = 100
    loop = asyncio.get_running_loop()
    debug = loop.get_debug()
    loop.set_debug(False)  # asyncio debug mode (on under the HA plugin) is slow at this scale
    try:
        await _hundred_devices(http, count)
    finally:
        loop.set_debug(debug)


async def _hundred_devices(http: aiohttp.ClientSession, count: int) -> None:
    devices = [TestDevice(f"d{i:03d}", credential=f"c{i}") for i in range(count)]
    async with run_test_server(devices=devices) as server:
        fleet = []
        for i in range(count):
            device = Device(
                "alice",
                f"d{i:03d}",
                f"c{i}",
                reconnect_delay=0.2,
                jitter=0.0,
                config=SessionConfig(request_timeout=5.0),
            )
            device.output_resource("value", functools.partial(int, i))
            fleet.append(device)
        async with contextlib.AsyncExitStack() as stack:
            await asyncio.gather(
                *(
                    stack.enter_async_context(running_device(d, server.tcp_port, wait=False))
                    for d in fleet
                )
            )
            async with asyncio.timeout(20):
                while len(server.devices_online()) < count:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            status, body = await _get(http, server, "/v1/users/alice/devices?count=0")
            assert status == 200
            assert len(body) == count
            assert all(d["connection"]["active"] for d in body)
            assert await _get(http, server, "/v3/users/alice/devices/d042/resources/value") == (
                200,
                42,
            )


# ---------------------------------------------------------------------- transports


async def test_websocket_device(http: aiohttp.ClientSession) -> None:
    async with run_test_server(devices=[TestDevice("lamp", credential="pw")]) as server:
        device, _ = make_lamp("alice", "lamp", "pw")
        async with running_device(device, 0, transport="ws", url=server.device_ws_url):
            await server.wait_device_connected("lamp")
            assert server.device("lamp").transport == "ws"
            status, body = await _get(http, server, "/v3/users/alice/devices/lamp/resources/calc")
            assert status == 200  # RUN calc without input -> sample output
            assert body == {"sum": 0, "product": 0}


async def test_websocket_device_with_text_frames(http: aiohttp.ClientSession) -> None:
    """Reference devices send IOTMP bytes (not UTF-8) in masked TEXT frames."""
    async with run_test_server(devices=[TestDevice("refdev1", credential="s3cret")]) as server:
        reader, writer = await asyncio.open_connection(LOCALHOST, server.http_url.split(":")[-1])
        try:
            data = await reference_websocket_login(reader, writer)
            assert data == bytes.fromhex("01 04 08 e7 8a 01")  # OK with the CONNECT's id
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def test_tls_device(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key)
    async with run_test_server(
        devices=[TestDevice("lamp", credential="pw")], tls_cert=str(cert), tls_key=str(key)
    ) as server:
        assert server.tls_port is not None
        device, _ = make_lamp("alice", "lamp", "pw")
        task = asyncio.create_task(
            device.run(
                LOCALHOST,
                server.tls_port,
                transport="tls",
                ssl_context=client_ssl_context(verify=False),
            )
        )
        try:
            await server.wait_device_connected("lamp")
            assert server.device("lamp").transport == "tls"
            status, body = await _get(http, server, "/v1/users/alice/devices/lamp")
            assert status == 200
            assert body["connection"]["security"] == "TLS"
        finally:
            await device.stop()
            await asyncio.wait_for(task, WAIT)


async def test_restart_on_same_ports(lab: Lab) -> None:
    http_url, tcp_port = lab.server.http_url, lab.server.tcp_port
    await lab.server.stop()
    assert lab.server.devices_online() == []
    await lab.server.start()
    assert (lab.server.http_url, lab.server.tcp_port) == (http_url, tcp_port)
    await lab.server.wait_device_connected("lamp")  # the device reconnected by itself
    async with lab.http.get(lab.dev("/resources/led/api"), headers=lab.headers) as resp:
        assert resp.status == 200  # the old token still works
        assert await resp.json() == {"in": False}


async def test_device_added_at_runtime(lab: Lab) -> None:
    lab.server.add_device(TestDevice("late", credential="l", name="Late"))
    peer = await _connect_raw(lab.server.tcp_port, "alice", "late", "l")
    try:
        await lab.server.wait_device_connected("late")
        async with lab.http.get(
            lab.url("/v1/users/alice/devices?name=late"), headers=lab.headers
        ) as resp:
            body = await resp.json()
        assert [(d["device"], d["connection"]["active"]) for d in body] == [("late", True)]
    finally:
        await peer.close()


async def test_wrong_user_or_credential_refused() -> None:
    async with run_test_server(
        devices=[TestDevice("lamp", credential="pw")], login_delay=0.0
    ) as server:
        for payload in (["bob", "lamp", "pw"], ["alice", "lamp", "nope"], ["alice", "x", "pw"]):
            peer = await RawPeer.open(server.tcp_port)
            try:
                await peer.send(Message.build(MessageType.CONNECT, stream_id=5, payload=payload))
                assert (await peer.receive()).type == MessageType.ERROR
            finally:
                await peer.close()
        assert server.devices_online() == []


def test_varint_helper() -> None:
    assert varint_hex(300) == "ac02"
    assert frame_hex(5, "") == "0500"
