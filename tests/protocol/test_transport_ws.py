"""WebSocket transport: subprotocol, byte-stream semantics and TEXT frames that
are not valid UTF-8 (reference-device observation 13)."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from session_helpers import LOCALHOST, WAIT

from iotmp.protocol.codec import encode_message
from iotmp.protocol.message import Message, MessageType
from iotmp.protocol.session import Role, Session
from iotmp.protocol.transport import (
    WEBSOCKET_PATH,
    WebSocketTransport,
    _TextAsBinaryShim,
    open_websocket,
    websocket_handler,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")

REFERENCE_CONNECT = bytes.fromhex(
    "03 1b 1a e3 85 616c696365 87 72656664657631 86 733363726574 08 e7 8a 01"
)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_all(*args: Any) -> bool:
    return True


def ws_frame(
    payload: bytes, opcode: int = OP_TEXT, *, fin: bool = True, mask: bool = True
) -> bytes:
    """One WebSocket frame as a client sends it (masked)."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask else 0
    size = len(payload)
    if size < 126:
        header = bytes([first, mask_bit | size])
    elif size < 65536:
        header = bytes([first, mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + size.to_bytes(8, "big")
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWebSocket:
    """A hand-made WebSocket client, to send exactly the frames a device sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawWebSocket:
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {WEBSOCKET_PATH} HTTP/1.1\r\n"
                f"Host: {LOCALHOST}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: iotmp\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(WAIT):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"sec-websocket-protocol: iotmp" in head.lower()
        return cls(reader, writer)

    async def send(self, frame: bytes) -> None:
        self.writer.write(frame)
        await self.writer.drain()

    async def read_frame(self) -> tuple[int, bytes]:
        async with asyncio.timeout(WAIT):
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                size = int.from_bytes(await self.reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await self.reader.readexactly(8), "big")
            assert not second & 0x80  # server frames are not masked
            return first & 0x0F, await self.reader.readexactly(size)

    async def read_bytes(self, count: int) -> bytes:
        """Concatenate data frames until ``count`` payload bytes arrived."""
        data = b""
        while len(data) < count:
            opcode, payload = await self.read_frame()
            assert opcode == OP_BINARY, opcode  # we always send binary frames
            data += payload
        return data

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_non_utf8_text_frames_are_accepted(make_server: Any) -> None:
    server = await make_server(kind="ws", authenticate=accept_all)
    ws = await RawWebSocket.connect(server.port)
    try:
        # The reference CONNECT is not valid UTF-8 (e3 85 61) and comes in a TEXT frame.
        with pytest.raises(UnicodeDecodeError):
            REFERENCE_CONNECT.decode()
        await ws.send(ws_frame(REFERENCE_CONNECT))
        assert await ws.read_bytes(6) == bytes.fromhex("01 04 08 e7 8a 01")
        session = await server.next_session()

        # Two messages in one frame, then one message split over two frames.
        await ws.send(ws_frame(b"\x05\x00\x05\x00"))
        assert await ws.read_bytes(4) == b"\x05\x00\x05\x00"
        await ws.send(ws_frame(b"\x05"))
        await ws.send(ws_frame(b"\x00"))
        assert await ws.read_bytes(2) == b"\x05\x00"

        # A fragmented TEXT message (TEXT + CONTINUATION) with non-UTF-8 bytes,
        # a control frame in between, and a 16-bit-length frame.
        unknown_stream = Message.build(
            MessageType.STREAM_DATA, stream_id=1025, payload=b"\xff" * 123
        )
        stream_data = encode_message(unknown_stream) + b"\x05\x00"
        assert len(stream_data) > 126
        await ws.send(ws_frame(stream_data[:7], OP_TEXT, fin=False))
        await ws.send(ws_frame(b"hi", OP_PING))
        assert await ws.read_frame() == (OP_PONG, b"hi")
        await ws.send(ws_frame(stream_data[7:], OP_CONT))
        assert await ws.read_bytes(2) == b"\x05\x00"

        # Binary frames are fine too.
        await ws.send(ws_frame(b"\x05\x00", OP_BINARY))
        assert await ws.read_bytes(2) == b"\x05\x00"
        assert session.is_connected
    finally:
        await ws.close()
    assert await session.wait_closed()


async def test_aiohttp_client_uses_subprotocol_and_binary_frames(socket_enabled: None) -> None:
    seen: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("iotmp",))
        await ws.prepare(request)
        seen.put_nowait(("protocol", ws.ws_protocol))
        async for msg in ws:
            seen.put_nowait((msg.type, msg.data))
            await ws.send_bytes(b"\x05")  # a message split over two frames
            await ws.send_bytes(b"\x00")
        return ws

    app = web.Application()
    app.router.add_get(WEBSOCKET_PATH, handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, LOCALHOST, 0).start()
    port = runner.addresses[0][1]
    try:
        transport = await open_websocket(f"ws://{LOCALHOST}:{port}{WEBSOCKET_PATH}")
        assert transport.kind == "ws"
        await transport.write(b"\x05\x00")
        async with asyncio.timeout(WAIT):
            assert await seen.get() == ("protocol", "iotmp")
            assert await seen.get() == (aiohttp.WSMsgType.BINARY, b"\x05\x00")
            data = b""
            while len(data) < 2:
                data += await transport.read()
        assert data == b"\x05\x00"
        await transport.close()
        await transport.close()  # idempotent
        assert transport.is_closing
        assert await transport.read() == b""
    finally:
        await runner.cleanup()


async def test_websocket_over_tls(
    make_server: Any, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    server = await make_server(kind="ws", ssl_context=server_ssl, authenticate=accept_all)
    assert server.url.startswith("wss://")
    transport = await open_websocket(server.url, ssl=client_ssl)
    assert transport.kind == "wss"
    client = Session(transport, Role.CLIENT)
    await client.connect("u", "d", "c")
    remote = await server.next_session()
    await client.close()
    assert await remote.wait_closed()


async def test_open_websocket_failure_is_connection_closed_error(socket_enabled: None) -> None:
    from iotmp.protocol.errors import ConnectionClosedError

    server = await asyncio.start_server(lambda r, w: w.close(), LOCALHOST, 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectionClosedError):
        await open_websocket(f"ws://{LOCALHOST}:{port}/iotmp", timeout=WAIT)


async def test_handler_closes_transport_when_callback_returns(socket_enabled: None) -> None:
    done = asyncio.Event()

    async def on_connection(transport: WebSocketTransport) -> None:
        assert await transport.read() == b"\x05\x00"
        done.set()

    app = web.Application()
    app.router.add_get(WEBSOCKET_PATH, websocket_handler(on_connection))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, LOCALHOST, 0).start()
    try:
        transport = await open_websocket(
            f"ws://{LOCALHOST}:{runner.addresses[0][1]}{WEBSOCKET_PATH}"
        )
        await transport.write(b"\x05\x00")
        async with asyncio.timeout(WAIT):
            await done.wait()
            assert await transport.read() == b""  # the server closed the socket
        await transport.close()
    finally:
        await runner.cleanup()


class _Collector:
    """Stands in for aiohttp's frame parser behind the shim."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data.extend(data)
        return False, b""

    def feed_eof(self) -> None:
        pass


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000, 1 << 20])
def test_text_as_binary_shim_rewrites_only_text_opcodes(chunk: int) -> None:
    frames = [
        ws_frame(b"\xe3\x85a", OP_TEXT),
        ws_frame(b"\x01" * 300, OP_TEXT, fin=False),  # 16-bit length, fragmented
        ws_frame(b"\x01" * 10, OP_CONT),
        ws_frame(b"\x02" * 70000, OP_TEXT, mask=False),  # 64-bit length, unmasked
        ws_frame(b"\x01\x01", OP_BINARY),
        ws_frame(b"", OP_PING),
        ws_frame(b"\x81\x81", OP_BINARY),  # payload bytes that look like a TEXT header
        ws_frame(b"", OP_TEXT),
    ]
    expected_opcodes = [OP_BINARY, OP_BINARY, OP_CONT, OP_BINARY, OP_BINARY, OP_PING, OP_BINARY]
    expected_opcodes.append(OP_BINARY)
    raw = b"".join(frames)
    inner = _Collector()
    shim = _TextAsBinaryShim(inner)
    for start in range(0, len(raw), chunk):
        assert shim.feed_data(raw[start : start + chunk]) == (False, b"")
    assert len(inner.data) == len(raw)
    position = 0
    for frame, opcode in zip(frames, expected_opcodes, strict=True):
        rewritten = bytes(inner.data[position : position + len(frame)])
        assert rewritten[0] & 0x0F == opcode
        assert rewritten[0] & 0xF0 == frame[0] & 0xF0  # FIN / RSV untouched
        assert rewritten[1:] == frame[1:]
        position += len(frame)
