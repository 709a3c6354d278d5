"""SUBSCRIBE_EVENT (8): devices receive their user's server events as STREAM_DATA.

Events are published on the server's own bus (``server.events``), exactly as
the features do; the devices are the SDK's and raw peers sending exact bytes.
Subscriptions keep no stored state, so the default SQLite database is enough.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from device_side import WAIT, RawPeer, running, sdk_device, sid
from server_helpers import frame_hex

from iotmp.protocol.message import Message, MessageType
from iotmp.server.events import make_event
from iotmp.server.testing import TEST_LIMITS, TestDevice, TestServer, run_test_server

DEVICES = [
    TestDevice("sensor", credential="sensor-pw"),
    TestDevice("panel", credential="panel-pw"),
    TestDevice("bobdev", credential="bob-pw", user="bob"),
]


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    limits = replace(TEST_LIMITS, event_subscriptions_per_device=3, event_subscription_queue=8)
    async with run_test_server(devices=DEVICES, limits=limits) as running_:
        yield running_


def publish(server: TestServer, name: str, user: str = "alice", **fields: Any) -> None:
    server.server.events.publish(make_event(name, user, **fields))


async def until(predicate: Any) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_device_gets_its_users_matching_events_only(server: TestServer) -> None:
    sensor = sdk_device("alice", "sensor", "sensor-pw")
    got: list[Any] = []
    baseline = server.server.events.listener_count("alice")
    async with running(sensor, server.tcp_port):
        subscription = sensor.subscribe_event("bucket_write", got.append, {"bucket": "env*"})
        await subscription.wait_active(WAIT)
        assert server.server.events.listener_count("alice") == baseline + 1
        publish(server, "bucket_write", "bob", bucket="env", data={"n": "bob"})
        publish(server, "bucket_write", bucket="other", data={"n": "other bucket"})
        publish(server, "endpoint_call_response", endpoint="env", status=200, payload=None)
        publish(server, "bucket_write", bucket="environment", data={"n": 1}, ts=5)
        await until(lambda: len(got) == 1)
        await asyncio.sleep(0.1)  # nothing else may follow
        assert got == [
            {
                "event": "bucket_write",
                "user": "alice",
                "ts": 5,
                "bucket": "environment",
                "data": {"n": 1},
            }
        ]
    await until(lambda: server.server.events.listener_count("alice") == baseline)


async def test_property_subscriptions_see_the_devices_own_properties(server: TestServer) -> None:
    sensor = sdk_device("alice", "sensor", "sensor-pw")
    values: list[Any] = []
    async with running(sensor, server.tcp_port):
        subscription = sensor.on_property_update("config", values.append)
        await subscription.wait_active(WAIT)
        assert values == []  # no such property yet: the OK carries no payload
        update = "device_property_update"
        publish(server, update, device="panel", property="config", value="not mine")
        publish(server, update, device="sensor", property="other", value="other property")
        publish(server, update, device="sensor", property="config", value={"mode": "eco"})
        await until(lambda: values == [{"mode": "eco"}])


# Exact bytes of the two layouts. [Linux]: RESOURCE = 8, PARAMETERS = the filter map.
LINUX = (
    "12 c2 85 6576656e74 8c 6275636b65745f7772697465"  # {"event": "bucket_write",
    " 87 66696c74657273 c1 86 6275636b6574 84 656e762a"  # "filters": {"bucket": "env*"}}
    " 20 08"
)
# [Embedded]-style: PARAMETERS = 8, RESOURCE = the event name, PAYLOAD = the rest.
EMBEDDED = (
    "10 08 1a c1 87 66696c74657273 c1 86 6275636b6574 84 656e762a 22 8c 6275636b65745f7772697465"
)


@pytest.mark.parametrize("layout", ["linux", "embedded"])
async def test_subscribe_and_stop_raw_bytes(server: TestServer, layout: str) -> None:
    baseline = server.server.events.listener_count("alice")
    peer = await RawPeer.open(server.tcp_port)
    try:
        await peer.login("alice", "sensor", "sensor-pw")
        body = LINUX if layout == "linux" else EMBEDDED
        await peer.send_hex(frame_hex(MessageType.START_STREAM, sid(0x41) + body))
        assert (await peer.reply_to(0x41)).type == MessageType.OK
        assert peer.raw.hex().endswith(frame_hex(MessageType.OK, sid(0x41)))
        publish(server, "bucket_write", bucket="env1", data=7, ts=1)
        data = await peer.receive()
        assert data.type == MessageType.STREAM_DATA
        assert data.stream_id == 0x41
        assert data.payload == {
            "event": "bucket_write",
            "user": "alice",
            "ts": 1,
            "bucket": "env1",
            "data": 7,
        }
        await peer.send_hex(frame_hex(MessageType.STOP_STREAM, sid(0x41)))
        assert (await peer.reply_to(0x41)).type == MessageType.OK
        assert server.server.events.listener_count("alice") == baseline
        publish(server, "bucket_write", bucket="env1", data=8)
        with pytest.raises(TimeoutError):
            await peer.receive(0.3)
    finally:
        await peer.close()


async def test_bad_subscriptions_are_refused_with_a_reason(server: TestServer) -> None:
    peer = await RawPeer.open(server.tcp_port)
    try:
        await peer.login("alice", "sensor", "sensor-pw")
        long_filter = "x" * 300
        cases = [
            ({"filters": {"bucket": "a"}}, 'SUBSCRIBE_EVENT needs "event": a non-empty string'),
            (
                {"event": "device_topic_publish", "scope": "subscribe", "topic": "a/b"},
                "device_topic_publish subscriptions (MQTT topics) are not supported",
            ),
            ({"event": "bucket_write", "filters": [1]}, '"filters" must be an object'),
            (
                {"event": "bucket_write", "bucket": {"a": 1}},
                "filter 'bucket' must be a string or a number",
            ),
            ({"event": "bucket_write", "current": "yes"}, '"current" must be true or false'),
            ({"event": long_filter}, "filter longer than 256 characters"),
        ]
        for number, (parameters, message) in enumerate(cases):
            stream_id = 0x51 + 2 * number
            await peer.send(
                Message.build(
                    MessageType.START_STREAM, stream_id=stream_id, resource=8, parameters=parameters
                )
            )
            reply = await peer.reply_to(stream_id)
            assert (reply.type, reply.payload) == (MessageType.ERROR, {"error": message})
    finally:
        await peer.close()


async def test_at_most_n_subscriptions_per_device_and_a_disconnect_ends_them(
    server: TestServer,
) -> None:
    baseline = server.server.events.listener_count("alice")
    peer = await RawPeer.open(server.tcp_port)
    try:
        await peer.login("alice", "sensor", "sensor-pw")
        for number in range(4):
            stream_id = 0x61 + 2 * number
            await peer.send(
                Message.build(
                    MessageType.START_STREAM,
                    stream_id=stream_id,
                    resource=8,
                    parameters={"event": "bucket_write"},
                )
            )
            reply = await peer.reply_to(stream_id)
            if number < 3:
                assert reply.type == MessageType.OK
            else:
                assert reply.payload == {"error": "at most 3 event subscriptions per device"}
        assert server.server.event_subscriptions.count("sensor") == 3
        assert server.server.events.listener_count("alice") == baseline + 3
    finally:
        await peer.close()
    await until(lambda: server.server.events.listener_count("alice") == baseline)
    assert server.server.event_subscriptions.count("sensor") == 0


async def test_a_slow_reader_loses_its_subscription_not_single_events(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "iotmp.server.event_subscriptions")
    baseline = server.server.events.listener_count("alice")
    peer = await RawPeer.open(server.tcp_port)
    try:
        await peer.login("alice", "sensor", "sensor-pw")
        await peer.send(
            Message.build(
                MessageType.START_STREAM,
                stream_id=0x71,
                resource=8,
                parameters={"event": "bucket_write"},
            )
        )
        assert (await peer.reply_to(0x71)).type == MessageType.OK
        # The peer reads nothing now; the server's socket buffers fill, then its queue.
        blob = "x" * 16_000
        published = 0
        while server.server.events.listener_count("alice") > baseline:
            assert published < 5_000, "the subscription was never closed"
            publish(server, "bucket_write", bucket="b", data={"n": published, "blob": blob})
            published += 1
            await asyncio.sleep(0)
        # Read everything: the events that got through are contiguous, then STOP_STREAM.
        numbers: list[int] = []
        while True:
            message = await peer.receive()
            if message.type == MessageType.STOP_STREAM:
                assert message.stream_id == 0x71
                break
            assert message.type == MessageType.STREAM_DATA
            numbers.append(message.payload["data"]["n"])
        assert numbers == list(range(len(numbers)))
        assert len(numbers) < published
        # The device answers the server's STOP_STREAM; the session goes on.
        await peer.send_hex(frame_hex(MessageType.OK, sid(0x71)))
        assert server.server.event_subscriptions.count("sensor") == 0
        assert server.devices_online() == ["sensor"]
    finally:
        await peer.close()
    lines = [r.getMessage() for r in caplog.records if "event subscription" in r.getMessage()]
    assert len(lines) == 1
    assert "device sensor: event subscription 113 closed" in lines[0]
