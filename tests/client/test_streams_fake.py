"""Stream edge cases against small aiohttp/asyncio servers.

The local server only sends well-formed frames and always answers pings, so
malformed / unknown frames, dead (half-open) sockets, hanging handshakes and
odd handshake statuses are served here instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from iotmp.client import (
    Backoff,
    DeviceResourceStream,
    IotmpApiClient,
    IotmpAuthError,
    IotmpConnectionError,
)
from iotmp.client.streams import AccountEventStream

from .conftest import fake_server, make_jwt, wait_for
from .test_streams_local import Recorder, fast

TOKEN = make_jwt({"usr": "alice", "jti": "t-secret-id"})
RESOURCES = "/v3/users/alice/devices/lamp/resources"
EVENTS = "/v2/users/alice/events"


class WsScript:
    """A WebSocket endpoint that records what clients send and sends scripted frames."""

    def __init__(self, frames: list[str | bytes] | None = None, *, autoping: bool = True) -> None:
        self.frames = frames or []
        self.autoping = autoping
        self.received: list[Any] = []
        self.connections = 0
        self.tokens: list[str | None] = []
        self.close_after_send = False
        self.sockets: set[web.WebSocketResponse] = set()

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=self.autoping)
        await ws.prepare(request)
        self.connections += 1
        self.tokens.append(request.query.get("authorization"))
        self.sockets.add(ws)
        try:
            for frame in self.frames:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            if self.close_after_send:
                await ws.close(code=4000)
                return ws
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.received.append(json.loads(msg.data))
        finally:
            self.sockets.discard(ws)
        return ws


@contextlib.asynccontextmanager
async def ws_server(script: WsScript, path: str = RESOURCES) -> AsyncIterator[str]:
    async with fake_server([web.get(path, script.handler)]) as url:
        try:
            yield url
        finally:
            for ws in list(script.sockets):
                await ws.close()


async def stop(stream: Any, task: asyncio.Task[None]) -> None:
    await stream.close()
    async with asyncio.timeout(2):
        await task


RESOURCE_FRAMES: list[str | bytes] = [
    "{not json",
    "[1, 2]",
    '{"no": "resource"}',
    '{"resource": 5, "payload": 1}',
    '{"resource": "a", "signal": "start"}',
    '{"resource": "a", "signal": "error", "payload": {"error": {"message": "refused"}}}',
    '{"resource": "a", "signal": "data"}',
    b"\x00\x01binary",
    '{"resource": "a", "signal": "data", "payload": 1}',
    '{"resource": "b", "out": {"x": 2}}',
    '{"resource": "c", "in": true}',
    '{"resource": "d", "payload": null}',
    '{"resource": "e"}',
    '{"resource": "boom", "signal": "data", "payload": 0}',
    '{"resource": "z", "out": "end"}',
]


async def test_resource_frames(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="iotmp.client")
    script = WsScript(RESOURCE_FRAMES)
    rec = Recorder()

    def on_data(resource: str, value: Any) -> None:
        if resource == "boom":
            raise RuntimeError("callback bug")
        rec.on_data(resource, value)

    async with ws_server(script) as url:
        client = IotmpApiClient(session, url, TOKEN)
        stream = client.resource_stream("lamp", on_data, rec.on_connection)
        stream.subscribe("a", interval=5)
        stream.subscribe("b", interval=0.5)
        task = asyncio.create_task(stream.run())
        try:
            await wait_for(lambda: ("z", "end") in rec.data)
            assert rec.data == [
                ("a", 1),
                ("b", {"x": 2}),
                ("c", True),
                ("d", None),
                ("z", "end"),
            ]
            stream.subscribe("c", 2.0)
            stream.unsubscribe("a")
            await wait_for(lambda: len(script.received) == 4)
            assert script.received == [
                {"resource": "a", "interval": 5, "enabled": True},
                {"resource": "b", "interval": 0.5, "enabled": True},
                {"resource": "c", "interval": 2, "enabled": True},
                {"resource": "a", "enabled": False},
            ]
            assert rec.connection == [True]
            with pytest.raises(ValueError):
                stream.subscribe("x", -1)
        finally:
            await stop(stream, task)
    assert script.tokens == [TOKEN]
    assert "callback bug" in caplog.text
    assert TOKEN not in caplog.text


async def test_event_frames(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="iotmp.client")
    event = {"event": "device_state_change", "device": "lamp", "state": "connected", "ts": 1}
    script = WsScript(
        [
            '{"success": true, "registered": {"event": "device_state_change"}}',
            '{"success": false}',
            "nope",
            '{"event": 5}',
            json.dumps({**event, "device": "boom"}),
            json.dumps(event),
        ]
    )
    seen: list[dict[str, Any]] = []

    def on_event(frame: dict[str, Any]) -> None:
        if frame["device"] == "boom":
            raise RuntimeError("event callback bug")
        seen.append(frame)

    def on_connection(up: bool) -> None:
        raise RuntimeError("connection callback bug")

    async with ws_server(script, EVENTS) as url:
        events = IotmpApiClient(session, url, TOKEN).event_stream(on_event, on_connection)
        task = asyncio.create_task(events.run())
        try:
            await wait_for(lambda: seen == [event])
            await wait_for(lambda: script.received == [{"event": "device_state_change"}])
            assert events.connected
        finally:
            await stop(events, task)
    assert "event callback bug" in caplog.text
    assert "connection callback bug" in caplog.text


async def test_half_open_socket_detected_by_heartbeat(session: aiohttp.ClientSession) -> None:
    script = WsScript(autoping=False)  # never answers pings: a dead peer
    rec = Recorder()
    async with ws_server(script) as url:
        client = IotmpApiClient(session, url, TOKEN)
        stream = DeviceResourceStream(
            client, "lamp", rec.on_data, rec.on_connection, backoff=fast(), heartbeat=0.2
        )
        stream.subscribe("a")
        task = asyncio.create_task(stream.run())
        try:
            await wait_for(lambda: rec.connection[:3] == [True, False, True], timeout=5)
            await wait_for(lambda: len(script.received) >= 2)
            assert script.received[:2] == [{"resource": "a", "interval": 0, "enabled": True}] * 2
        finally:
            await stop(stream, task)


async def test_server_closes_immediately_is_retried_at_the_first_delay(
    session: aiohttp.ClientSession,
) -> None:
    """A server that accepts and closes at once: the backoff restarts with every
    authenticated connection, so retries come at the first delay, never in a tight loop."""
    script = WsScript()
    script.close_after_send = True
    rec = Recorder()
    backoff = Backoff(initial=0.05, factor=2.0, maximum=1.0, jitter=0)
    async with ws_server(script) as url:
        client = IotmpApiClient(session, url, TOKEN)
        stream = client.resource_stream("lamp", rec.on_data, rec.on_connection, backoff=backoff)
        started = time.monotonic()
        task = asyncio.create_task(stream.run())
        try:
            await wait_for(lambda: script.connections >= 5)
            elapsed = time.monotonic() - started
            assert backoff.attempts <= 1
            assert elapsed >= 4 * 0.05  # four waits of the first delay between five connections
        finally:
            await stop(stream, task)
    assert rec.connection[:2] == [True, False]


async def test_stable_connection_resets_backoff(session: aiohttp.ClientSession) -> None:
    script = WsScript()
    script.close_after_send = True
    rec = Recorder()
    backoff = Backoff(initial=0.01, factor=1.5, maximum=0.05, jitter=0)
    async with ws_server(script) as url:
        client = IotmpApiClient(session, url, TOKEN)
        stream = DeviceResourceStream(
            client, "lamp", rec.on_data, rec.on_connection, backoff=backoff, stable_after=0
        )
        task = asyncio.create_task(stream.run())
        try:
            await wait_for(lambda: script.connections >= 4)
            assert backoff.attempts <= 1
        finally:
            await stop(stream, task)


@pytest.mark.parametrize("status", [403, 404, 500])
async def test_handshake_refused_retries(
    session: aiohttp.ClientSession, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="iotmp.client")
    attempts = 0

    async def refuse(request: web.Request) -> web.Response:
        nonlocal attempts
        attempts += 1
        return web.json_response({"error": {"message": "no"}}, status=status)

    rec = Recorder()
    async with fake_server([web.get(RESOURCES, refuse)]) as url:
        client = IotmpApiClient(session, url, TOKEN)
        stream = client.resource_stream("lamp", rec.on_data, rec.on_connection, backoff=fast())
        task = asyncio.create_task(stream.run())
        try:
            await wait_for(lambda: attempts >= 4)
        finally:
            await stop(stream, task)
    assert rec.connection == [False]
    infos = [r for r in caplog.records if r.name.startswith("iotmp.client")]
    assert len(infos) == 1
    assert f"HTTP {status}" in infos[0].getMessage()
    assert TOKEN not in caplog.text


@contextlib.asynccontextmanager
async def silent_tcp_server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """Accepts TCP connections and never answers (a hanging handshake)."""
    writers: list[asyncio.StreamWriter] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], writers
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_close_during_handshake(session: aiohttp.ClientSession) -> None:
    async with silent_tcp_server() as (port, writers):
        client = IotmpApiClient(session, f"http://127.0.0.1:{port}", TOKEN, request_timeout=30)
        rec = Recorder()
        stream = client.resource_stream("lamp", rec.on_data, rec.on_connection)
        task = asyncio.create_task(stream.run())
        await wait_for(lambda: len(writers) == 1)
        await asyncio.sleep(0.05)
        async with asyncio.timeout(1):
            await stop(stream, task)
    assert rec.connection == []


async def test_handshake_timeout(session: aiohttp.ClientSession) -> None:
    async with silent_tcp_server() as (port, writers):
        client = IotmpApiClient(session, f"http://127.0.0.1:{port}", TOKEN, request_timeout=0.1)
        rec = Recorder()
        stream = client.event_stream(rec.on_event, rec.on_connection, backoff=fast())
        task = asyncio.create_task(stream.run())
        try:
            await wait_for(lambda: len(writers) >= 2)
        finally:
            await stop(stream, task)
    assert rec.connection == [False]


async def test_close_during_backoff(session: aiohttp.ClientSession) -> None:
    async with fake_server([]) as url:
        pass  # the port is closed now: connection refused
    client = IotmpApiClient(session, url, TOKEN)
    rec = Recorder()
    stream = client.resource_stream(
        "lamp", rec.on_data, rec.on_connection, backoff=Backoff(initial=30, maximum=30)
    )
    task = asyncio.create_task(stream.run())
    await wait_for(lambda: rec.connection == [False])
    async with asyncio.timeout(1):
        await stop(stream, task)


async def test_close_before_run_and_double_run(session: aiohttp.ClientSession) -> None:
    script = WsScript()
    async with ws_server(script) as url:
        client = IotmpApiClient(session, url, TOKEN)
        rec = Recorder()
        stream = client.resource_stream("lamp", rec.on_data, rec.on_connection)
        task = asyncio.create_task(stream.run())
        await wait_for(lambda: rec.connection == [True])
        with pytest.raises(RuntimeError, match="already running"):
            await stream.run()
        await stop(stream, task)
        await stream.close()  # twice is fine

        closed_first = client.resource_stream("lamp", rec.on_data, rec.on_connection)
        await closed_first.close()
        async with asyncio.timeout(1):
            await closed_first.run()
    assert script.connections == 1


async def test_subscribe_while_disconnected_is_sent_on_connect(
    session: aiohttp.ClientSession,
) -> None:
    script = WsScript()
    rec = Recorder()
    async with ws_server(script) as url:
        client = IotmpApiClient(session, url, TOKEN)
        stream = client.resource_stream("lamp", rec.on_data, rec.on_connection)
        stream.subscribe("a", 1)
        stream.subscribe("b", 2)
        stream.unsubscribe("a")  # nothing sent while disconnected
        task = asyncio.create_task(stream.run())
        try:
            await wait_for(lambda: len(script.received) == 1)
            await asyncio.sleep(0.05)
        finally:
            await stop(stream, task)
    assert script.received == [{"resource": "b", "interval": 2, "enabled": True}]


async def test_event_stream_class_direct(session: aiohttp.ClientSession) -> None:
    script = WsScript()
    async with ws_server(script, EVENTS) as url:
        client = IotmpApiClient(session, url, TOKEN)
        rec = Recorder()
        events = AccountEventStream(client, rec.on_event, rec.on_connection, stable_after=0)
        task = asyncio.create_task(events.run())
        try:
            await wait_for(lambda: script.received == [{"event": "device_state_change"}])
            # The server goes away: the stream notices, reports once and comes back.
            for ws in list(script.sockets):
                await ws.close(code=1001)
            await wait_for(lambda: rec.connection == [True, False, True], timeout=5)
        finally:
            await stop(events, task)


async def test_cancelling_the_task_cleans_up(session: aiohttp.ClientSession) -> None:
    """Home Assistant cancels background tasks on unload: that must leave nothing behind."""
    script = WsScript()
    async with ws_server(script) as url:
        client = IotmpApiClient(session, url, TOKEN)
        rec = Recorder()
        stream = client.resource_stream("lamp", rec.on_data, rec.on_connection)
        stream.subscribe("a")
        task = asyncio.create_task(stream.run())
        await wait_for(lambda: rec.connection == [True])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(lambda: not script.sockets)  # the socket was closed
    async with silent_tcp_server() as (port, writers):
        client = IotmpApiClient(session, f"http://127.0.0.1:{port}", TOKEN)
        stream = client.resource_stream("lamp", rec.on_data, rec.on_connection)
        task = asyncio.create_task(stream.run())
        await wait_for(lambda: len(writers) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class TokenGate:
    """A WebSocket endpoint that answers 401 unless the token is ``good``."""

    def __init__(self, good: str) -> None:
        self.good = good
        self.script = WsScript()

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("authorization") != self.good:
            return web.json_response({"error": {"message": "invalid token"}}, status=401)
        return await self.script.handler(request)


async def test_refresh_failures_on_handshake(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="iotmp.client")
    good = make_jwt({"usr": "alice", "jti": "good"})
    gate = TokenGate(good)
    outcomes: list[Any] = [IotmpConnectionError("down"), good]
    calls = 0

    async def refresher() -> str:
        nonlocal calls
        calls += 1
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    async with fake_server([web.get(RESOURCES, gate.handler)]) as url:
        client = IotmpApiClient(session, url, TOKEN, token_refresher=refresher)
        rec = Recorder()
        stream = client.resource_stream("lamp", rec.on_data, rec.on_connection, backoff=fast())
        task = asyncio.create_task(stream.run())
        try:
            # refresh fails (server trouble) -> back off -> 401 again -> refresh works.
            await wait_for(lambda: rec.connection == [False, True])
        finally:
            await stop(stream, task)
    assert calls == 2
    assert "token refresh failed" in caplog.text
    assert TOKEN not in caplog.text
    assert good not in caplog.text


async def test_refresher_raising_auth_error_ends_run(session: aiohttp.ClientSession) -> None:
    gate = TokenGate("never")

    async def refresher() -> str:
        raise IotmpAuthError("refresh token already used")

    async with fake_server([web.get(EVENTS, gate.handler)]) as url:
        client = IotmpApiClient(session, url, TOKEN, token_refresher=refresher)
        rec = Recorder()
        with pytest.raises(IotmpAuthError, match="refused the token"):
            async with asyncio.timeout(5):
                await client.event_stream(rec.on_event, rec.on_connection).run()
    assert rec.connection == [False]


async def test_sends_after_the_socket_died(session: aiohttp.ClientSession) -> None:
    """Subscriptions made while the socket is going away are dropped, then replayed."""
    script = WsScript()
    async with ws_server(script) as url:
        client = IotmpApiClient(session, url, TOKEN)
        rec = Recorder()
        stream = client.resource_stream("lamp", rec.on_data, rec.on_connection, backoff=fast())
        task = asyncio.create_task(stream.run())
        try:
            await wait_for(lambda: rec.connection == [True])
            ws = stream._ws
            assert ws is not None
            await ws.close()  # closed under the stream's feet
            stream.subscribe("late", 3)  # queued on a dead socket: skipped
            await wait_for(lambda: rec.connection == [True, False, True])
            await wait_for(
                lambda: {"resource": "late", "interval": 3, "enabled": True} in script.received
            )
        finally:
            await stop(stream, task)


async def test_many_frames_in_order(session: aiohttp.ClientSession) -> None:
    """A burst of frames (the benchmark pushes ~1000/s) arrives complete and in order."""
    frames: list[str | bytes] = [
        json.dumps({"resource": f"r{i % 7}", "signal": "data", "payload": i}) for i in range(5000)
    ]
    script = WsScript(frames)
    values: list[int] = []
    async with ws_server(script) as url:
        client = IotmpApiClient(session, url, TOKEN)
        stream = client.resource_stream(
            "lamp", lambda resource, value: values.append(value), lambda up: None
        )
        task = asyncio.create_task(stream.run())
        try:
            await wait_for(lambda: len(values) == 5000, timeout=20)
        finally:
            await stop(stream, task)
    assert values == list(range(5000))
