"""The device SDK's server calls, byte for byte, against an in-process IOTMP peer.

The peer is a ``Session(Role.SERVER)`` on a loopback socket that records every
byte it receives; each call's frame is asserted exactly in both layouts
([Embedded]: PARAMETERS = code, RESOURCE = target; [Linux]: the other way).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from device_side import WAIT, RecordingPeer, running, sdk_device, sid
from server_helpers import frame_hex, varint_hex

from iotmp.device import Device, ServerCallError, server_call_fields
from iotmp.protocol.errors import ConnectionClosedError
from iotmp.protocol.message import MessageType
from iotmp.protocol.server_resources import ServerResource
from iotmp.protocol.session import Reply, Request

LAYOUTS = ("embedded", "linux")

# PSON (new) of the values used below.
CONFIG = "86 636f6e666967"  # "config"
STATE = "85 7374617465"  # "state"
ENV = "83 656e76"  # "env"
HOOK = "84 686f6f6b"  # "hook"
TRUE = "61"
RECORD = "c1 81 74 01"  # {"t": 1}
LAMP_LED = "e2 84 6c616d70 83 6c6564"  # ["lamp", "led"]
DOOR = "84 646f6f72"  # "door"


def run_body(
    layout: str, code: int, target: str, payload: str | None, stream_id: int | None
) -> str:
    """The body of a server-resource RUN, fields in ascending order as the SDK sends them."""
    head = "" if stream_id is None else sid(stream_id)
    data = "" if payload is None else "1a " + payload
    if layout == "embedded":
        return f"{head} 10 {varint_hex(code)} {data} 22 {target}"
    return f"{head} 12 {target} {data} 20 {varint_hex(code)}"


@pytest.fixture
async def peer() -> AsyncIterator[RecordingPeer]:
    running_peer = await RecordingPeer().start()
    try:
        yield running_peer
    finally:
        await running_peer.stop()


Call = Callable[[Device], Awaitable[Any]]

CASES: dict[str, tuple[Call, int, str, str | None, Any, Any]] = {
    # name: (call, code, target, payload, the peer's OK payload, what the call returns)
    "get_property": (
        lambda d: d.get_property("config"),
        1,
        CONFIG,
        None,
        {"on": True},
        {"on": True},
    ),
    "set_property": (lambda d: d.set_property("state", True), 2, STATE, TRUE, None, None),
    "call_device": (lambda d: d.call_device("lamp", "led", True), 3, LAMP_LED, TRUE, None, None),
    "call_endpoint": (lambda d: d.call_endpoint("hook"), 4, HOOK, None, "sent", "sent"),
    "call_endpoint_payload": (
        lambda d: d.call_endpoint("hook", {"t": 1}),
        4,
        HOOK,
        RECORD,
        None,
        None,
    ),
    "write_bucket": (lambda d: d.write_bucket("env", {"t": 1}), 5, ENV, RECORD, None, None),
    "lock_sync": (lambda d: d.lock_sync("door"), 6, DOOR, None, None, None),
    "lock_sync_options": (
        lambda d: d.lock_sync("door", lock="a", slots=2, timeout=3),
        6,
        DOOR,
        "c3 84 6c6f636b 81 61 85 736c6f7473 02 87 74696d656f7574 03",
        None,
        None,
    ),
    "unlock_sync": (
        lambda d: d.unlock_sync("door", lock="a"),
        7,
        DOOR,
        "c1 84 6c6f636b 81 61",
        None,
        None,
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", sorted(CASES))
async def test_server_call_frames(peer: RecordingPeer, layout: str, case: str) -> None:
    call, code, target, payload, answer, expected = CASES[case]
    peer.handler.answer = lambda _request: (
        Reply.success() if answer is None else Reply.success(answer)
    )
    device = sdk_device("alice", "dev1", "pw", layout=layout)
    async with running(device, peer.port):
        result = await call(device)
        request = peer.handler.requests[-1]
    assert result == expected
    frame = frame_hex(MessageType.RUN, run_body(layout, code, target, payload, request.stream_id))
    assert frame in peer.received.hex()


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_unconfirmed_calls_carry_no_stream_id(peer: RecordingPeer, layout: str) -> None:
    device = sdk_device("alice", "dev1", "pw", layout=layout)
    async with running(device, peer.port):
        await device.set_property("state", True, confirm=False)
        await peer.next_request()
        await device.write_bucket("env", {"t": 1}, confirm=False)
        await peer.next_request()
        await device.unlock_sync("door", confirm=False)
        await peer.next_request()
    received = peer.received.hex()
    assert frame_hex(MessageType.RUN, run_body(layout, 2, STATE, TRUE, None)) in received
    assert frame_hex(MessageType.RUN, run_body(layout, 5, ENV, RECORD, None)) in received
    assert frame_hex(MessageType.RUN, run_body(layout, 7, DOOR, None, None)) in received
    assert all(not m.has(1) for m in peer.handler.requests)


async def test_server_error_raises_with_the_servers_message(peer: RecordingPeer) -> None:
    def refuse(request: Request) -> Reply:
        if request.message.resource == "nope":
            return Reply.error()
        return Reply.error_message("bucket 'env' does not exist")

    peer.handler.answer = refuse
    device = sdk_device("alice", "dev1", "pw")
    async with running(device, peer.port):
        with pytest.raises(ServerCallError) as caught:
            await device.write_bucket("env", {"t": 1})
        assert str(caught.value) == "bucket 'env' does not exist"
        assert caught.value.call == "WRITE_BUCKET 'env'"
        with pytest.raises(ServerCallError, match="the server refused READ_DEVICE_PROPERTY 'nope'"):
            await device.get_property("nope")


async def test_calls_while_offline_raise_connection_closed() -> None:
    device = sdk_device("alice", "dev1", "pw")
    with pytest.raises(ConnectionClosedError):
        await device.get_property("config")


def test_layout_is_checked() -> None:
    assert server_call_fields(ServerResource.WRITE_BUCKET, "b", "embedded") == ("b", 5)
    assert server_call_fields(ServerResource.WRITE_BUCKET, "b", "linux") == (5, "b")
    with pytest.raises(ValueError, match="server_call_layout"):
        sdk_device("alice", "dev1", "pw", layout="arduino")


SUBSCRIBE = (
    "12 c3 85 6576656e74 96 6465766963655f70726f70657274795f757064617465"  # event
    " 87 66696c74657273 c1 88 70726f7065727479 86 636f6e666967"  # filters.property
    " 87 63757272656e74 61"  # current: true
    " 20 08"
)


async def test_subscriptions_are_sent_again_after_every_login(peer: RecordingPeer) -> None:
    peer.handler.answer = lambda _request: Reply.success({"mode": "eco"})
    device = sdk_device("alice", "dev1", "pw")
    values: list[Any] = []
    async with running(device, peer.port):
        subscription = device.on_property_update("config", values.append)
        first = await peer.next_request()
        await subscription.wait_active(WAIT)
        assert frame_hex(MessageType.START_STREAM, sid(first.stream_id) + SUBSCRIBE) in (
            peer.received.hex()
        )
        # The OK's payload is the current value; later events carry it in "value".
        session = peer.sessions[-1]
        await session.send_stream_data(
            first.stream_id,
            {"event": "device_property_update", "property": "config", "value": {"mode": "on"}},
        )
        async with asyncio.timeout(WAIT):
            while len(values) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert values == [{"mode": "eco"}, {"mode": "on"}]

        await session.close("server restart")
        again = await peer.next_request()
        assert again.type == MessageType.START_STREAM
        assert frame_hex(MessageType.START_STREAM, sid(again.stream_id) + SUBSCRIBE) in (
            peer.received.hex()
        )
        assert device.connections == 2
        await subscription.wait_active(WAIT)
        assert values[-1] == {"mode": "eco"}  # the current value again after the new login

        await subscription.cancel()
        assert device.subscriptions == []
        stop = frame_hex(MessageType.STOP_STREAM, sid(again.stream_id))
        async with asyncio.timeout(WAIT):
            while stop not in peer.received.hex():  # noqa: ASYNC110
                await asyncio.sleep(0.01)


async def test_a_refused_subscription_reports_the_servers_message(peer: RecordingPeer) -> None:
    peer.handler.answer = lambda _request: Reply.error_message("not supported")
    device = sdk_device("alice", "dev1", "pw")
    async with running(device, peer.port):
        subscription = device.subscribe_event("device_topic_publish", lambda _e: None)
        with pytest.raises(ServerCallError, match=r"^not supported$"):
            await subscription.wait_active(WAIT)
        assert not subscription.active
