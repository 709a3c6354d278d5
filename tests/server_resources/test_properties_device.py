"""Devices read and set their properties over IOTMP (codes 1 and 2), byte for byte.

A raw TCP peer logs in with the reference device's recorded CONNECT and sends
READ_DEVICE_PROPERTY / SET_DEVICE_PROPERTY in both layouts: [Linux]
(RESOURCE = code as a varint, PARAMETERS = property id) and [Embedded]
(PARAMETERS = code, RESOURCE = property id). Replies are compared as exact
bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from server_helpers import frame_hex, varint_hex

from iotmp.protocol.codec import MessageDecoder
from iotmp.server.limits import ServerLimits
from iotmp.server.testing import TestDevice, TestServer, run_test_server

WAIT = 5.0
# The reference device's CONNECT: ["alice", "refdev1", "s3cret"], stream id 0x4567.
REF_CONNECT = "03 1b 1a e3 85 616c696365 87 72656664657631 86 733363726574 08 e7 8a 01"
OK, ERROR, RUN, DESCRIBE = 0x01, 0x02, 0x06, 0x07


def frame(message_type: int, body_hex: str) -> bytes:
    """A whole IOTMP message: type, body size, body."""
    return bytes.fromhex(frame_hex(message_type, body_hex))


def pson_str(text: str) -> str:
    """A short PSON string (under 31 bytes) as hex."""
    data = text.encode()
    assert len(data) < 31
    return f"{0x80 | len(data):02x}{data.hex()}"


def pson_error(message: str) -> str:
    """``{"error": message}`` in PSON (message under 31 bytes)."""
    return "c1" + pson_str("error") + pson_str(message)


class RawDevice:
    """A device speaking raw bytes: it answers the server's DESCRIBE with ``{}`` and
    hands every other message over as its exact bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, port: int) -> AsyncIterator[RawDevice]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        try:
            await peer.send(bytes.fromhex(REF_CONNECT.replace(" ", "")))
            answer = await peer.next_frame()
            assert answer[0] == OK, answer.hex()
            yield peer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _raw_frame(self) -> bytes:
        head = await self.reader.readexactly(1)
        size_bytes = b""
        while True:
            byte = await self.reader.readexactly(1)
            size_bytes += byte
            if not byte[0] & 0x80:
                break
        size = 0
        for shift, part in enumerate(size_bytes):
            size |= (part & 0x7F) << (7 * shift)
        return head + size_bytes + await self.reader.readexactly(size)

    async def next_frame(self, limit: float = WAIT) -> bytes:
        """The next message that is not a DESCRIBE (those are answered) or KEEP_ALIVE."""
        async with asyncio.timeout(limit):
            while True:
                data = await self._raw_frame()
                if data[0] == DESCRIBE:
                    message = MessageDecoder().feed(data)[0]
                    await self.send(frame(OK, "08" + varint_hex(message.stream_id) + "1a c0"))
                    continue
                if data[0] == 0x05:  # KEEP_ALIVE
                    continue
                return data

    async def nothing_within(self, seconds: float) -> bool:
        """True when the server sends nothing but DESCRIBE/KEEP_ALIVE for ``seconds``."""
        try:
            data = await self.next_frame(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected message {data.hex()}")


def read_request(layout: str, sid: int, prop: str) -> bytes:
    """READ_DEVICE_PROPERTY (code 1) in ``layout``."""
    if layout == "linux":
        return frame(RUN, f"08 {varint_hex(sid)} 12 {pson_str(prop)} 20 01")
    return frame(RUN, f"08 {varint_hex(sid)} 10 01 22 {pson_str(prop)}")


def set_request(layout: str, sid: int | None, prop: str, payload_hex: str) -> bytes:
    """SET_DEVICE_PROPERTY (code 2) in ``layout``; no STREAM_ID when ``sid`` is None."""
    head = "" if sid is None else f"08 {varint_hex(sid)} "
    if layout == "linux":
        return frame(RUN, f"{head}12 {pson_str(prop)} 1a {payload_hex} 20 02")
    return frame(RUN, f"{head}10 02 1a {payload_hex} 22 {pson_str(prop)}")


LAYOUTS = ["linux", "embedded"]


@pytest.fixture
async def server(database: str) -> AsyncIterator[TestServer]:
    devices = [TestDevice("refdev1", credential="s3cret"), TestDevice("lamp")]
    limits = ServerLimits(min_stream_interval=0.01, property_max_bytes=40)
    async with run_test_server(
        devices=devices, user="alice", database=database, limits=limits
    ) as running:
        yield running


async def rest(server: TestServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {server.token}"}
    url = f"{server.http_url}/v3/users/alice/devices/{path}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=body, headers=headers) as resp,
    ):
        text = await resp.text()
        return resp.status, (await resp.json() if text else None)


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_read_answers_the_value_or_an_error(server: TestServer, layout: str) -> None:
    status, _ = await rest(server, "PUT", "refdev1/properties/config", {"value": {"on": True}})
    assert status == 200
    await rest(server, "PUT", "lamp/properties/secret", {"value": 7})
    async with RawDevice.connected(server.tcp_port) as device:
        await device.send(read_request(layout, 42, "config"))
        # OK, STREAM_ID 42, PAYLOAD {"on": true}
        assert await device.next_frame() == frame(OK, "08 2a 1a c1 826f6e 61")
        await device.send(read_request(layout, 43, "missing"))
        assert await device.next_frame() == frame(
            ERROR, "08 2b 1a " + pson_error("property not found")
        )
        # another device's property is not this device's
        await device.send(read_request(layout, 44, "secret"))
        assert await device.next_frame() == frame(
            ERROR, "08 2c 1a " + pson_error("property not found")
        )


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_set_with_and_without_stream_id(server: TestServer, layout: str) -> None:
    async with RawDevice.connected(server.tcp_port) as device:
        # with STREAM_ID: OK (no payload) once stored
        await device.send(set_request(layout, 300, "mode", pson_str("eco")))
        assert await device.next_frame() == frame(OK, "08 ac 02")
        assert (await rest(server, "GET", "refdev1/properties/mode"))[1]["value"] == "eco"
        # without: stored, and no reply at all
        await device.send(set_request(layout, None, "mode", "c1 " + pson_str("level") + " 05"))
        assert await device.nothing_within(0.5)
        assert (await rest(server, "GET", "refdev1/properties/mode"))[1]["value"] == {"level": 5}
        await device.send(read_request(layout, 7, "mode"))
        assert await device.next_frame() == frame(OK, "08 07 1a c1 " + pson_str("level") + " 05")
    # the device set its own property only
    assert (await rest(server, "GET", "lamp/properties/mode"))[0] == 404


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_set_over_the_limit_is_refused_and_nothing_stored(
    server: TestServer, layout: str
) -> None:
    text = "x" * 37  # ["xx...x"]: 41 bytes of JSON, over the 40-byte limit
    async with RawDevice.connected(server.tcp_port) as device:
        await device.send(set_request(layout, 10, "blob", "e1 9f 25 " + text.encode().hex()))
        answer = await device.next_frame()
    status, body = await rest(server, "PUT", "refdev1/properties/blob", {"value": [text]})
    assert status == 413
    message = body["error"]["message"]
    assert message == "property value larger than 40 bytes (41)"
    # the device gets the same message in its ERROR
    assert answer == frame(ERROR, "08 0a 1a c1 " + pson_str("error") + _long_str(message))
    assert (await rest(server, "GET", "refdev1/properties/blob"))[0] == 404


def _long_str(text: str) -> str:
    data = text.encode()
    if len(data) < 31:
        return pson_str(text)
    return "9f" + varint_hex(len(data)) + data.hex()


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_bad_requests_get_errors(server: TestServer, layout: str) -> None:
    async with RawDevice.connected(server.tcp_port) as device:
        await device.send(read_request(layout, 1, "bad id!"))
        answer = await device.next_frame()
        assert answer[0] == ERROR
        assert b"property id must be" in answer
        # SET without a PAYLOAD
        if layout == "linux":
            request = frame(RUN, f"08 02 12 {pson_str('p')} 20 02")
        else:
            request = frame(RUN, f"08 02 10 02 22 {pson_str('p')}")
        await device.send(request)
        answer = await device.next_frame()
        assert answer[0] == ERROR
        assert b"PAYLOAD" in answer


async def test_device_writes_publish_events(server: TestServer) -> None:
    seen: list[dict[str, Any]] = []
    unsubscribe = server.server.events.subscribe("alice", seen.append)
    try:
        async with RawDevice.connected(server.tcp_port) as device:
            for sid, payload in ((1, "01"), (2, "01"), (3, "02")):
                await device.send(set_request("linux", sid, "count", payload))
                assert (await device.next_frame())[0] == OK
    finally:
        unsubscribe()
    seen = [e for e in seen if e["event"].startswith("device_property_")]
    events = [(e["event"], e["device"], e["property"], e["value"]) for e in seen]
    assert events == [
        ("device_property_create", "refdev1", "count", 1),
        ("device_property_update", "refdev1", "count", 2),  # the same value again: no event
    ]
    assert all(e["user"] == "alice" and isinstance(e["ts"], int) for e in seen)
