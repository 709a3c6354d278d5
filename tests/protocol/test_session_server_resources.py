"""Parsing device->server RUN / START_STREAM on numeric server resources (spec 11)."""

from __future__ import annotations

from typing import Any

import pytest

from iotmp.protocol.codec import decode_message
from iotmp.protocol.message import ABSENT, Message, MessageType
from iotmp.protocol.server_resources import (
    ServerResource,
    parse_server_resource,
)

RECORD = {"temperature": 23.5}


def run(**fields: Any) -> Message:
    return Message.build(MessageType.RUN, stream_id=4660, **fields)


def test_linux_layout_resource_is_code() -> None:
    # 06 .. 08 b4 24 | 12 89 "my_bucket" | 1a <record> | 20 05
    message = run(parameters="my_bucket", payload=RECORD, resource=5)
    assert parse_server_resource(message) == (ServerResource.WRITE_BUCKET, "my_bucket", RECORD)


def test_embedded_layout_parameters_is_code() -> None:
    # 06 .. 08 b4 24 | 10 05 | 1a <record> | 22 89 "my_bucket"
    message = run(parameters=5, payload=RECORD, resource="my_bucket")
    code, target, payload = parse_server_resource(message) or (None, None, None)
    assert (code, target, payload) == (ServerResource.WRITE_BUCKET, "my_bucket", RECORD)


@pytest.mark.parametrize(
    "wire",
    [
        # [Linux] order as produced by its unordered_map, then [Embedded] ascending.
        "06 11 20 03 12 e2 84 6f746865 83 6c6564 1a 61 08 01",
        "06 11 08 01 10 03 1a 61 22 e2 84 6f746865 83 6c6564",
    ],
)
def test_call_device_both_layouts_from_bytes(wire: str) -> None:
    message = decode_message(bytes.fromhex(wire.replace(" ", "")))
    call = parse_server_resource(message)
    assert call is not None
    assert call.code is ServerResource.CALL_DEVICE
    assert call.target == ["othe", "led"]
    assert call.payload is True


def test_subscribe_event_stream() -> None:
    event = {"event": "device_property_update", "filters": {"property": "p"}}
    message = Message.build(MessageType.START_STREAM, stream_id=9, parameters=event, resource=8)
    assert parse_server_resource(message) == (ServerResource.SUBSCRIBE_EVENT, event, ABSENT)


def test_read_property_without_payload_and_missing_target() -> None:
    assert parse_server_resource(run(parameters="prop", resource=1)) == (
        ServerResource.READ_DEVICE_PROPERTY,
        "prop",
        ABSENT,
    )
    assert parse_server_resource(run(resource=6)) == (ServerResource.LOCK_SYNC, None, ABSENT)
    assert parse_server_resource(run(parameters=7)) == (ServerResource.UNLOCK_SYNC, None, ABSENT)


@pytest.mark.parametrize(
    "message",
    [
        run(resource="led"),  # a normal device resource
        run(resource=0),
        run(resource=9),  # unknown code
        run(resource=43317),  # e.g. an FNV hash of a name ([Bench])
        run(parameters={"interval": 1}, resource="temperature"),
        run(parameters=True, resource="x"),  # bool is not an int here
        run(parameters=5, resource={"not": "a target"}),
        Message.build(MessageType.DESCRIBE, stream_id=1, resource=5),
    ],
)
def test_not_a_server_resource(message: Message) -> None:
    assert parse_server_resource(message) is None
