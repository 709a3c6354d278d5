"""Streams against the real local server with a real device: delivery, re-subscribe, events."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from iotmp.client import (
    AccountEventStream,
    Backoff,
    DeviceResourceStream,
    IotmpApiClient,
    IotmpAuthError,
)
from iotmp.server.testing import TestDevice, TestServer, run_test_server

from .conftest import (
    DEVICE_CREDENTIAL,
    DEVICE_ID,
    Lab,
    LampState,
    build_lamp,
    running_device,
    wait_for,
)


def fast() -> Backoff:
    """Reconnect delays for tests: 10 ms doubling up to 100 ms."""
    return Backoff(initial=0.01, factor=2.0, maximum=0.1)


class Recorder:
    """Collects what a stream hands to its callbacks."""

    def __init__(self) -> None:
        self.data: list[tuple[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.connection: list[bool] = []

    def on_data(self, resource: str, value: Any) -> None:
        self.data.append((resource, value))

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def on_connection(self, up: bool) -> None:
        self.connection.append(up)

    def values(self, resource: str) -> list[Any]:
        return [value for name, value in self.data if name == resource]

    def device_states(self) -> list[tuple[str, str]]:
        return [
            (e["device"], e["state"])
            for e in self.events
            if e.get("event") == "device_state_change"
        ]


async def stop(stream: DeviceResourceStream | AccountEventStream, task: asyncio.Task[None]) -> None:
    await stream.close()
    async with asyncio.timeout(2):
        await task
    assert task.done()
    assert task.exception() is None


def has_subscriber(server: TestServer, resource: str) -> bool:
    return server.server.hub.has_subscribers(DEVICE_ID, resource)


async def test_resource_stream_delivery(session: aiohttp.ClientSession, lab: Lab) -> None:
    client = IotmpApiClient(session, lab.server.http_url, lab.server.token)
    rec = Recorder()
    stream = client.resource_stream(DEVICE_ID, rec.on_data, rec.on_connection)
    assert isinstance(stream, DeviceResourceStream)
    assert stream.device_id == DEVICE_ID
    stream.subscribe("temperature", interval=30)
    task = asyncio.create_task(stream.run())
    try:
        # The device echoes the current value when the stream starts.
        await wait_for(lambda: rec.values("temperature") == [21.5])
        assert rec.connection == [True]
        assert stream.connected
        # Subscribing while connected is sent at once; an input write is echoed.
        stream.subscribe("light", interval=0)
        stream.subscribe("living room/lamp")
        await wait_for(lambda: rec.values("light") == [False])
        await wait_for(lambda: rec.values("living room/lamp") == [True])
        await client.write(DEVICE_ID, "light", True)
        await wait_for(lambda: rec.values("light")[:2] == [False, True])
        assert set(rec.values("light")[1:]) == {True}  # echo (the server may push it too)
        assert stream.subscriptions == {"temperature": 30, "light": 0, "living room/lamp": 0}
        # Unsubscribe: the server drops the subscription; later writes are not delivered.
        stream.unsubscribe("light")
        stream.unsubscribe("never-subscribed")
        await wait_for(lambda: not has_subscriber(lab.server, "light"))
        await client.write(DEVICE_ID, "light", False)
        await client.write(DEVICE_ID, "living room/lamp", False)
        await wait_for(lambda: rec.values("living room/lamp")[-1] is False)
        assert False not in rec.values("light")[1:]
    finally:
        await stop(stream, task)
    assert not stream.connected
    assert stream.closed
    assert rec.connection == [True]  # close() is not an outage


async def test_periodic_interval(session: aiohttp.ClientSession, lab: Lab) -> None:
    client = IotmpApiClient(session, lab.server.http_url, lab.server.token)
    rec = Recorder()
    stream = client.resource_stream(DEVICE_ID, rec.on_data, rec.on_connection)
    stream.subscribe("dht", interval=1)
    task = asyncio.create_task(stream.run())
    try:
        await wait_for(lambda: len(rec.values("dht")) >= 2, timeout=5)
    finally:
        await stop(stream, task)
    assert rec.values("dht")[0] == {"celsius": 21.5, "humidity": 40}


async def test_resubscribe_after_server_restart(
    session: aiohttp.ClientSession, lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="iotmp.client")
    client = IotmpApiClient(session, lab.server.http_url, lab.server.token)
    rec = Recorder()
    stream = client.resource_stream(DEVICE_ID, rec.on_data, rec.on_connection, backoff=fast())
    stream.subscribe("temperature", interval=60)
    task = asyncio.create_task(stream.run())
    try:
        await wait_for(lambda: rec.values("temperature") == [21.5])
        await lab.server.stop()
        await wait_for(lambda: rec.connection == [True, False])
        await asyncio.sleep(0.3)  # several failed attempts while the server is down
        lab.state.temperature = 23.0
        await lab.server.start()
        await lab.server.wait_device_connected(DEVICE_ID, timeout=10)
        await wait_for(lambda: 23.0 in rec.values("temperature"), timeout=10)
        assert rec.connection == [True, False, True]
        # Subscribing after the reconnect still works.
        stream.subscribe("brightness")
        await wait_for(lambda: rec.values("brightness") == [10])
    finally:
        await stop(stream, task)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    client_messages = [m for m in messages if m.startswith("Resource stream")]
    assert len([m for m in client_messages if "connection lost" in m]) == 1
    assert len([m for m in client_messages if "connection restored" in m]) == 1
    assert len(client_messages) == 2


async def test_legacy_frames(session: aiohttp.ClientSession, socket_enabled: None) -> None:
    async with run_test_server(
        devices=[TestDevice(DEVICE_ID, credential=DEVICE_CREDENTIAL)], websocket_frames="legacy"
    ) as server:
        state = LampState()
        async with running_device(server, build_lamp(server, state)):
            client = IotmpApiClient(session, server.http_url, server.token)
            rec = Recorder()
            stream = client.resource_stream(DEVICE_ID, rec.on_data, rec.on_connection)
            stream.subscribe("temperature")
            stream.subscribe("light")
            task = asyncio.create_task(stream.run())
            try:
                await wait_for(lambda: rec.values("temperature") == [21.5])
                await wait_for(lambda: rec.values("light") == [False])
                await client.write(DEVICE_ID, "light", True)
                await wait_for(lambda: rec.values("light")[:2] == [False, True])
            finally:
                await stop(stream, task)


async def test_event_stream(session: aiohttp.ClientSession, server: TestServer) -> None:
    client = IotmpApiClient(session, server.http_url, server.token)
    rec = Recorder()
    events = client.event_stream(rec.on_event, rec.on_connection, backoff=fast())
    assert isinstance(events, AccountEventStream)
    task = asyncio.create_task(events.run())
    try:
        await wait_for(lambda: rec.connection == [True])
        await asyncio.sleep(0.1)  # let the subscription reach the server
        state = LampState()
        async with running_device(server, build_lamp(server, state)):
            await wait_for(lambda: rec.device_states() == [(DEVICE_ID, "connected")])
        await wait_for(
            lambda: rec.device_states() == [(DEVICE_ID, "connected"), (DEVICE_ID, "disconnected")]
        )
        assert all(isinstance(e["ts"], int) for e in rec.events)
        assert all("registered" not in e for e in rec.events)  # acks are not events
        # A server restart: disconnected, then connected and subscribed again.
        await server.stop()
        await wait_for(lambda: rec.connection == [True, False])
        await server.start()
        await wait_for(lambda: rec.connection == [True, False, True])
        await asyncio.sleep(0.1)
        async with running_device(server, build_lamp(server, state)):
            await wait_for(lambda: rec.device_states()[-1] == (DEVICE_ID, "connected"))
    finally:
        await stop(events, task)


async def test_revoked_token_raises(session: aiohttp.ClientSession, lab: Lab) -> None:
    token = lab.server.issue_token()
    lab.server.revoke_token(token)
    client = IotmpApiClient(session, lab.server.http_url, token)
    resources, events = Recorder(), Recorder()
    for stream in (
        client.resource_stream(DEVICE_ID, resources.on_data, resources.on_connection),
        client.event_stream(events.on_event, events.on_connection),
    ):
        async with asyncio.timeout(5):
            with pytest.raises(IotmpAuthError) as err:
                await stream.run()
        assert err.value.status == 401
        assert "refused the token" in str(err.value)
        assert token not in str(err.value)
    assert resources.connection == [False]
    assert events.connection == [False]


async def test_revoked_token_refreshed_once(session: aiohttp.ClientSession, lab: Lab) -> None:
    token = lab.server.issue_token()
    lab.server.revoke_token(token)
    calls = 0

    async def refresher() -> str:
        nonlocal calls
        calls += 1
        return lab.server.issue_token()

    client = IotmpApiClient(session, lab.server.http_url, token, token_refresher=refresher)
    rec = Recorder()
    stream = client.resource_stream(DEVICE_ID, rec.on_data, rec.on_connection)
    stream.subscribe("temperature")
    task = asyncio.create_task(stream.run())
    try:
        await wait_for(lambda: rec.values("temperature") == [21.5])
    finally:
        await stop(stream, task)
    assert calls == 1
    assert rec.connection == [True]

    # A refresher that cannot help: run() raises after exactly one refresh.
    async def useless() -> str:
        nonlocal calls
        calls += 1
        return token

    client = IotmpApiClient(session, lab.server.http_url, token, token_refresher=useless)
    calls = 0
    with pytest.raises(IotmpAuthError):
        async with asyncio.timeout(5):
            await client.event_stream(rec.on_event, rec.on_connection).run()
    assert calls == 1


async def test_device_appears_later(session: aiohttp.ClientSession, server: TestServer) -> None:
    """A stream for a device the server does not know yet retries until it exists."""
    client = IotmpApiClient(session, server.http_url, server.token)
    rec = Recorder()
    stream = client.resource_stream("newcomer", rec.on_data, rec.on_connection, backoff=fast())
    stream.subscribe("temperature")
    task = asyncio.create_task(stream.run())
    try:
        await wait_for(lambda: rec.connection == [False])
        await asyncio.sleep(0.2)
        server.add_device(TestDevice("newcomer"))
        await wait_for(lambda: rec.connection == [False, True])
    finally:
        await stop(stream, task)
