"""Issue 10 items 1, 2, 4, 5, 6, 7 and 10: attacks on one server subprocess.

While the loop-stalling attacks run, a bystander (another client of the same
server) must see REST p99 < 250 ms and no stream gap over 1 s. The module's
server log must hold no ERROR line or traceback at the end (see conftest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
import pytest

from iotmp.device import Device
from iotmp.protocol.codec import encode_message
from iotmp.protocol.message import Message, MessageType

from .harness import USER, Bystander, ServerProcess, credential, measure_during, wait_for
from .raw import RawDevice

pytestmark = pytest.mark.timeout(120)


def _nested(depth: int, leaf: Any = 0) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _log_growth(server: ServerProcess, before: int) -> list[str]:
    return server.log_lines()[before:]


# ---------------------------------------------------------------- 1: event filters


async def test_backtracking_event_filters_do_not_stall_others(
    server: ServerProcess, bystander: Bystander
) -> None:
    http = bystander.http
    url = server.ws_url(f"/v2/users/{USER}/events")
    evil = ["((.|.)*)*z", "(a|aa)*b" * 4, "(.*)*" * 20 + "!", ".*.*.*.*.*.*.*.*.*.*x"]
    sockets = [await http.ws_connect(url, headers=server.headers) for _ in range(5)]
    try:
        for ws in sockets:
            for pattern in evil:
                await ws.send_json(
                    {"event": "device_state_change", "filters": {"ts": pattern, "device": pattern}}
                )
                ack = await ws.receive_json(timeout=5)
                assert ack["success"] is True
        # a filter longer than the cap is refused with a message
        await sockets[0].send_json({"event": "x" * 300})
        refused = await sockets[0].receive_json(timeout=5)
        assert refused["success"] is False
        assert "256" in refused["error"]["message"]

        async def attack() -> None:
            for _ in range(10):  # every login and logout is an event for every filter
                churn = await RawDevice.open(server.tcp_port)
                await churn.login(USER, "churn", credential("churn"))
                await churn.close()
                await asyncio.sleep(0.1)

        await measure_during(bystander, attack)
        bystander.assert_unharmed()
        # and a glob still matches what it should
        await sockets[1].send_json({"event": "device_*", "filters": {"device": "ch?rn"}})
        assert (await sockets[1].receive_json(timeout=5))["success"] is True
        churn = await RawDevice.open(server.tcp_port)
        await churn.login(USER, "churn", credential("churn"))
        async with asyncio.timeout(5):
            while True:
                frame = await sockets[1].receive_json()
                if frame.get("device") == "churn":
                    break
        await churn.close()
    finally:
        for ws in sockets:
            await ws.close()


# ------------------------------------------------------- 2: unauthenticated CONNECTs


def _big_connect() -> bytes:
    chunk = _nested(30)
    payload = [[chunk] * 7_000]  # depth 32 in all, ~250 KiB of PSON
    data = encode_message(
        Message.build(MessageType.CONNECT, stream_id=1, payload=["u", "d", "c", payload])
    )
    assert 200_000 < len(data) < 256 * 1024
    return data


async def test_unauthenticated_256_kib_connects_are_cut_off(
    server: ServerProcess, bystander: Bystander
) -> None:
    data = _big_connect()
    before = len(server.log_lines())

    async def one() -> bool:
        peer = await RawDevice.open(server.tcp_port)
        try:
            with contextlib.suppress(ConnectionError):
                await peer.write(data)
            return await peer.closed_by_server(3.0)
        finally:
            await peer.close()

    async def attack() -> list[bool]:
        return await asyncio.gather(*(one() for _ in range(50)))

    started = time.monotonic()
    closed = await measure_during(bystander, attack)
    assert all(closed), "every oversized first message closes its connection"
    assert time.monotonic() - started < 6
    bystander.assert_unharmed()
    lines = _log_growth(server, before)
    assert len(lines) < 20, lines  # one rate-limited cause, not one line per connection


async def test_unauthenticated_connections_are_capped_and_time_out(
    server: ServerProcess, bystander: Bystander
) -> None:
    async def attack() -> list[float]:
        peers = [await RawDevice.open(server.tcp_port) for _ in range(40)]
        started = time.monotonic()

        async def closed_after(peer: RawDevice) -> float:
            assert await peer.closed_by_server(5.0)
            return time.monotonic() - started

        try:
            return await asyncio.gather(*(closed_after(p) for p in peers))
        finally:
            for peer in peers:
                await peer.close()

    times = sorted(await measure_during(bystander, attack, settle=0.2))
    # 32 per address may wait for their CONNECT: the rest are closed at once ...
    assert sum(t < 1.0 for t in times) >= 8, times
    # ... and the waiting ones at the handshake deadline (2 s in this server's limits)
    assert 1.5 < times[-1] < 4.5, times
    bystander.assert_unharmed()


# ---------------------------------------------------------------- 4: message flood


async def test_keep_alive_flood_closes_the_flooder_only(
    server: ServerProcess, bystander: Bystander
) -> None:
    flood = encode_message(Message(MessageType.KEEP_ALIVE)) * 150_000  # 300 kB
    before = len(server.log_lines())

    async def attack() -> bool:
        flooder = await RawDevice.open(server.tcp_port)
        try:
            await flooder.login(USER, "flooder", credential("flooder"))
            with contextlib.suppress(ConnectionError):
                await flooder.write(flood)
            return await flooder.closed_by_server(10.0)
        finally:
            await flooder.close()

    assert await measure_during(bystander, attack)
    bystander.assert_unharmed()
    lines = _log_growth(server, before)
    reasons = [line for line in lines if "messages/s" in line]
    assert len(reasons) == 1, lines  # closed with one logged reason
    assert len(lines) < 10, lines


# -------------------------------------------- 10: subscriptions, bursts, intervals


async def test_ten_thousand_subscriptions_on_one_socket(
    server: ServerProcess, bystander: Bystander
) -> None:
    victim = Device(USER, "victim", credential("victim"), reconnect_delay=0.2)
    victim.output_resource("level", lambda: 1)
    task = asyncio.create_task(victim.run("127.0.0.1", server.tcp_port))
    try:
        await victim.wait_connected(10)
        url = server.ws_url(f"/v3/users/{USER}/devices/victim/resources")

        async def attack() -> int:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(url, headers=server.headers) as ws,
            ):
                for i in range(10_000):
                    await ws.send_str(json.dumps({"resource": f"r{i}", "interval": 1}))
                    if i % 100 == 0:
                        await asyncio.sleep(0)  # fair to the other tasks of this loop
                # Every one is refused: the resource is unknown (known from the
                # device's DESCRIBE; a subscription that arrives before the server has
                # the description goes to the device, which refuses it) or, past 256,
                # the socket's cap is reached.
                reasons = ("at most 256 subscriptions", "not found", "refused to stream")
                refused = 0
                async with asyncio.timeout(30):
                    while refused < 10_000:
                        frame = await ws.receive_json()
                        payload = frame.get("payload") if frame.get("signal") == "error" else frame
                        message = (payload or {}).get("error", {}).get("message", "")
                        refused += any(reason in message for reason in reasons)
                return refused

        assert await measure_during(bystander, attack) == 10_000
        bystander.assert_unharmed()
    finally:
        await victim.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _burst_device(server: ServerProcess) -> RawDevice:
    peer = await RawDevice.open(server.tcp_port)
    await peer.send(
        Message.build(
            MessageType.CONNECT, stream_id=1, payload=[USER, "burst", credential("burst")]
        )
    )
    assert (await peer.receive()).type == MessageType.OK
    describe = await peer.receive()
    await peer.send(
        Message.build(MessageType.OK, stream_id=describe.stream_id, payload={"x": {"fn": 3}})
    )
    return peer


async def _start_stream(peer: RawDevice) -> Message:
    while True:
        message = await peer.receive()
        if message.type == MessageType.START_STREAM:
            await peer.send(Message.build(MessageType.OK, stream_id=message.stream_id))
            return message


async def test_burst_to_a_reading_client_is_not_dropped(server: ServerProcess) -> None:
    peer = await _burst_device(server)
    count = 5_000
    async with aiohttp.ClientSession() as http:
        url = server.ws_url(f"/v3/users/{USER}/devices/burst/resources/x")
        async with http.ws_connect(url, headers=server.headers) as ws:
            start = await _start_stream(peer)
            data = b"".join(
                encode_message(
                    Message.build(MessageType.STREAM_DATA, stream_id=start.stream_id, payload=i)
                )
                for i in range(count)
            )
            await peer.write(data)
            seen: list[int] = []
            async with asyncio.timeout(30):
                while len(seen) < count:
                    frame = await ws.receive_json()
                    seen.append(frame["payload"])
                    await asyncio.sleep(0)  # a reading, not an instant, client
            assert seen == list(range(count))
    await peer.close()


async def test_stream_interval_is_raised_to_the_minimum(server: ServerProcess) -> None:
    peer = await _burst_device(server)
    async with aiohttp.ClientSession() as http:
        url = server.ws_url(f"/v3/users/{USER}/devices/burst/resources")
        async with http.ws_connect(url, headers=server.headers) as ws:
            await ws.send_json({"resource": "x", "interval": 0.001})
            start = await _start_stream(peer)
            assert start.parameters == {"interval": 1000}  # 1 s, not 1 ms
    await peer.close()


async def test_bad_requests_and_rejected_devices_log_little(server: ServerProcess) -> None:
    before = len(server.log_lines())
    async with aiohttp.ClientSession() as http:
        for _ in range(20):
            async with http.get(
                server.http_url + "/v1/server/version", headers={"X-Big": "a" * 100_000}
            ) as resp:
                assert 400 <= resp.status < 500
    for garbage in (b"\xff" * 16, encode_message(Message(MessageType.KEEP_ALIVE))) * 50:
        peer = await RawDevice.open(server.tcp_port)
        await peer.write(garbage)
        assert await peer.closed_by_server(5.0)
        await peer.close()
    lines = _log_growth(server, before)
    assert len(lines) < 25, lines
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line]


# ---------------------------------------------- 5 and 6: values and bad inputs


@pytest.fixture
async def victim(server: ServerProcess) -> Any:
    state: dict[str, Any] = {"level": 0}
    device = Device(USER, "victim", credential("victim"), reconnect_delay=0.2)
    device.input_resource("level", lambda: state["level"], lambda v: state.update(level=v))
    task = asyncio.create_task(device.run("127.0.0.1", server.tcp_port))
    await device.wait_connected(10)
    async with aiohttp.ClientSession() as http:
        await wait_for(lambda: _active(server, http, "victim"), 10)
        yield device, state, http
    await device.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _active(server: ServerProcess, http: aiohttp.ClientSession, device_id: str) -> bool:
    url = f"{server.http_url}/v1/users/{USER}/devices/{device_id}"
    async with http.get(url, headers=server.headers) as resp:
        return bool((await resp.json())["connection"]["active"])


async def test_values_devices_would_refuse_get_400_and_the_device_stays(
    server: ServerProcess, victim: Any
) -> None:
    device, state, http = victim
    url = server.device_url("victim", "/resources/level")
    connections = device.connections
    for bad in (_nested(33), 2**70, -(2**63) - 1, {"a": _nested(32)}):
        async with http.post(url, json=bad, headers=server.headers) as resp:
            assert resp.status == 400, bad
            body = await resp.json()
            assert "device protocol" in body["error"]["message"]
    assert await _active(server, http, "victim")
    assert device.connections == connections  # never dropped
    async with http.post(url, json=_nested(32, 7), headers=server.headers) as resp:
        assert resp.status == 200
    assert state["level"] == _nested(32, 7)
    async with http.post(url, json=2**64 - 1, headers=server.headers) as resp:
        assert resp.status == 200


async def test_bad_inputs_get_4xx_json_never_500(server: ServerProcess, victim: Any) -> None:
    _device, _state, http = victim
    before = len(server.log_lines())
    tokens = f"{server.http_url}/v1/users/{USER}/tokens"
    requests: list[tuple[str, str, dict[str, str], bytes]] = [
        (
            "POST",
            server.http_url + "/oauth/token",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"grant_type=password&username=\xff&password=\xff",
        ),
        *[
            ("POST", tokens, {**server.headers, "Content-Type": "application/json"}, body)
            for body in (
                b'{"expires_in": 0}',
                b'{"expires_in": -5}',
                b'{"expires_in": NaN}',
                b'{"expires_in": 1e400}',
                b'{"expires_in": Infinity}',
            )
        ],
        (
            "POST",
            server.device_url("victim", "/resources/level"),
            {**server.headers, "Content-Type": "application/json"},
            b"[" * 10_000 + b"]" * 10_000,
        ),
        (
            "POST",
            server.device_url("victim", "/resources/level"),
            {**server.headers, "Content-Type": "application/json"},
            str(2**70).encode(),
        ),
    ]
    for method, url, headers, body in requests:
        async with http.request(method, url, headers=headers, data=body) as resp:
            assert 400 <= resp.status < 500, (url, body[:40], resp.status)
            payload = await resp.json()
            assert isinstance(payload["error"]["message"], str)
    lines = _log_growth(server, before)
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line], lines


# ------------------------------------------------------------ 7: spawned tasks


async def test_connect_describes_disconnect_in_one_write_logs_no_error(
    server: ServerProcess,
) -> None:
    before = len(server.log_lines())
    messages = [
        Message.build(
            MessageType.CONNECT, stream_id=1, payload=[USER, "spray", credential("spray")]
        ),
        *(Message.build(MessageType.DESCRIBE, stream_id=3 + 2 * i) for i in range(5)),
        Message(MessageType.DISCONNECT),
    ]
    for _ in range(5):
        peer = await RawDevice.open(server.tcp_port)
        await peer.write(b"".join(encode_message(m) for m in messages))
        assert await peer.closed_by_server(5.0)
        await peer.close()
    await asyncio.sleep(0.5)
    lines = _log_growth(server, before)
    assert not [
        line
        for line in lines
        if "never retrieved" in line or " ERROR " in line or "Traceback" in line
    ], lines
