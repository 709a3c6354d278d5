"""Helpers for the local server tests: a scripted test device and a raw IOTMP peer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from iotmp.device import Device, ResourceError
from iotmp.protocol.codec import MessageDecoder, encode_message
from iotmp.protocol.message import Message
from iotmp.protocol.session import SessionConfig
from iotmp.server.testing import TestServer

LOCALHOST = "127.0.0.1"
WAIT = 5.0


async def api_call(
    http: aiohttp.ClientSession,
    server: TestServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    raw: bytes | str | None = None,
) -> tuple[int, Any]:
    """Call the server's REST API as ``server``'s user: ``(status, JSON body, text or None)``.

    ``path`` is relative to the server's HTTP URL unless it is a whole URL; ``token``
    replaces the user's token; ``raw`` is sent as the body instead of ``body`` as JSON.
    """
    url = path if path.startswith(("http://", "https://")) else server.http_url + path
    headers = {"Authorization": f"Bearer {token or server.token}"}
    kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
    async with http.request(method, url, headers=headers, **kwargs) as resp:
        text = await resp.text()
    if not text:
        return resp.status, None
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


@dataclass
class LampState:
    """State behind the test device's resources (tests inspect it)."""

    led: bool = False
    rgb: dict[str, int] = field(default_factory=lambda: {"r": 0, "g": 0, "b": 0})
    brightness: int = 10
    reboots: int = 0
    counter: int = 0
    slow_delay: float = 5.0


def make_lamp(
    user: str, device_id: str, credential: str, *, state: LampState | None = None
) -> tuple[Device, LampState]:
    """A device with one resource of every kind, plus slow and failing ones."""
    st = state or LampState()
    device = Device(
        user,
        device_id,
        credential,
        config=SessionConfig(request_timeout=5.0, concurrent_requests=True),
        reconnect_delay=0.1,
        jitter=0.0,
    )

    def set_led(value: Any) -> None:
        st.led = bool(value)

    def set_rgb(value: Any) -> None:
        if not isinstance(value, dict):
            raise ResourceError("rgb needs an object", 400)
        st.rgb = {k: int(value.get(k, 0)) for k in ("r", "g", "b")}

    def set_brightness(value: Any) -> None:
        st.brightness = int(value)

    def reboot() -> None:
        st.reboots += 1

    def counter() -> int:
        st.counter += 1
        return st.counter

    def calc(value: Any) -> Any:
        if not isinstance(value, dict) or not all(
            isinstance(value.get(k), int | float) for k in ("a", "b")
        ):
            raise ResourceError("calc needs numeric a and b", 400)
        return {"sum": value["a"] + value["b"], "product": value["a"] * value["b"]}

    async def slow() -> int:
        await asyncio.sleep(st.slow_delay)
        return 1

    def broken() -> None:
        raise ResourceError("sensor unplugged", 409)

    def weird() -> None:
        raise ResourceError("odd failure", 7)

    device.output_resource("temperature", lambda: {"celsius": 21.5, "humidity": 45})
    device.input_resource("led", lambda: st.led, set_led)
    device.input_resource("rgb", lambda: dict(st.rgb), set_rgb)
    device.input_resource("brightness", lambda: st.brightness, set_brightness)
    device.run_resource("reboot", reboot)
    device.output_resource("counter", counter)
    device.input_output_resource("calc", calc, {"a": 0, "b": 0})
    device.output_resource("$ota/options", lambda: {"chunk": 8192})
    device.output_resource("slow", slow)
    device.output_resource("broken", broken)
    device.output_resource("weird", weird)
    return device, st


@asynccontextmanager
async def running_device(
    device: Device,
    port: int,
    *,
    keep_alive: float = 60.0,
    transport: str = "tcp",
    url: str | None = None,
    wait: bool = True,
) -> AsyncIterator[Device]:
    """Run ``device.run(...)`` in a task for the block; stop it afterwards."""
    task = asyncio.get_running_loop().create_task(
        device.run(
            LOCALHOST,
            port,
            keep_alive=keep_alive,
            transport=transport,  # type: ignore[arg-type]
            url=url,
        )
    )
    try:
        if wait:
            await device.wait_connected(WAIT)
        yield device
    finally:
        await device.stop()
        try:
            async with asyncio.timeout(WAIT):
                await task
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


@dataclass
class Lab:
    """A server with one connected device ``lamp`` (user ``alice``) and an HTTP session."""

    server: TestServer
    device: Device
    state: LampState
    http: aiohttp.ClientSession

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header with the server's token."""
        return {"Authorization": f"Bearer {self.server.token}"}

    def url(self, path: str) -> str:
        """Absolute URL of an API path."""
        return self.server.http_url + path

    def dev(self, path: str = "", version: int = 3, device: str = "lamp") -> str:
        """URL under /v{version}/users/alice/devices/{device}."""
        return self.url(f"/v{version}/users/{self.server.user}/devices/{device}{path}")


class RawPeer:
    """A TCP peer that writes exact bytes and reads decoded messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = MessageDecoder()
        self.inbox: list[Message] = []

    @classmethod
    async def open(cls, port: int, *, source: str | None = None) -> RawPeer:
        """Connect to 127.0.0.1:port (from the loopback address ``source`` when given)."""
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection(LOCALHOST, port, local_addr=local)
        return cls(reader, writer)

    async def send_hex(self, text: str) -> None:
        """Send bytes given as hex (spaces allowed)."""
        self.writer.write(bytes.fromhex(text.replace(" ", "")))
        await self.writer.drain()

    async def send(self, message: Message) -> None:
        """Encode and send a message."""
        self.writer.write(encode_message(message))
        await self.writer.drain()

    async def receive(self, limit: float = WAIT) -> Message:
        """Next message from the server (TimeoutError / EOFError)."""
        async with asyncio.timeout(limit):
            while not self.inbox:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.inbox.extend(self.decoder.feed(data))
        return self.inbox.pop(0)

    async def wait_eof(self, limit: float = WAIT) -> bool:
        """True when the server closes the connection within ``limit`` seconds."""
        try:
            async with asyncio.timeout(limit):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
                    self.inbox.extend(self.decoder.feed(data))
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    async def close(self) -> None:
        """Close the socket."""
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def varint_hex(value: int) -> str:
    """Unsigned LEB128 of ``value`` as hex."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return out.hex()
        out.append(byte | 0x80)


def frame_hex(message_type: int, body_hex: str) -> str:
    """A whole IOTMP message: type, body size, body."""
    body = bytes.fromhex(body_hex.replace(" ", ""))
    return f"{message_type:02x}{varint_hex(len(body))}{body.hex()}"


# Byte strings recorded from a reference device (reference-device-observations.md).
REF_CONNECT = "03 1b 1a e3 85 616c696365 87 72656664657631 86 733363726574 08 e7 8a 01"
REF_API_PAYLOAD = (
    "1a c7 8a 6272696768746e657373 c1 82 666e 02 84 63616c63 c1 82 666e 04"
    " 83 6c6564 c1 82 666e 02 86 7265626f6f74 c1 82 666e 01 83 726762 c1 82 666e 02"
    " 8b 74656d7065726174757265 c1 82 666e 03 86 757074696d65 c1 82 666e 03"
)
REF_TEMPERATURE_PAYLOAD = "1a c2 87 63656c73697573 40 0000ac41 88 68756d6964697479 1f 2d"
REF_LED_SAMPLE_PAYLOAD = "1a c1 82 696e 61"  # {"in": true}


class ReferenceDevice:
    """Plays a reference device (IOTMP-Linux) from recorded bytes over a raw socket.

    Fields come in the reference order (PAYLOAD before STREAM_ID), the server's
    KEEP_ALIVEs are never answered, streams echo ``uptime`` as a varint 0.
    """

    def __init__(self, peer: RawPeer) -> None:
        self.peer = peer
        self.requests: list[Message] = []
        self.keep_alive_echoes = 0
        self._task: asyncio.Task[None] | None = None

    async def login(self) -> Message:
        """Send the recorded CONNECT; return the server's answer."""
        await self.peer.send_hex(REF_CONNECT)
        return await self.peer.receive()

    def start(self) -> None:
        """Serve the server's requests in the background."""
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        with contextlib.suppress(EOFError, ConnectionError):
            while True:
                msg = await self.peer.receive(limit=3600)
                await self._answer(msg)

    async def _answer(self, msg: Message) -> None:
        sid = "08" + varint_hex(msg.stream_id)
        if msg.type == 0x05:
            self.keep_alive_echoes += 1
            return
        self.requests.append(msg)
        resource = msg.resource
        if msg.type == 0x07 and not isinstance(resource, str):
            await self.peer.send_hex(frame_hex(0x01, REF_API_PAYLOAD + sid))
        elif msg.type == 0x07 and resource == "led":
            await self.peer.send_hex(frame_hex(0x01, REF_LED_SAMPLE_PAYLOAD + sid))
        elif msg.type == 0x06 and resource == "temperature":
            await self.peer.send_hex(frame_hex(0x01, REF_TEMPERATURE_PAYLOAD + sid))
        elif msg.type == 0x06 and resource in ("led", "reboot"):
            await self.peer.send_hex(frame_hex(0x01, sid))
        elif msg.type == 0x08 and resource == "uptime":
            await self.peer.send_hex(frame_hex(0x01, sid))
            await self.peer.send_hex(frame_hex(0x0A, sid + "18 00"))  # stream echo
        elif msg.type == 0x09:
            await self.peer.send_hex(frame_hex(0x01, sid))
        else:
            await self.peer.send_hex(frame_hex(0x02, sid))

    async def close(self) -> None:
        """Stop serving and close the socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self.peer.close()


async def reference_websocket_login(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bytes:
    """Do what a reference device does on ``/iotmp``: upgrade, then REF_CONNECT in one
    masked TEXT frame (IOTMP bytes, not UTF-8). Returns the server's first frame's payload;
    the caller closes the connection."""
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /iotmp HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: iotmp\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = bytes.fromhex(REF_CONNECT.replace(" ", ""))
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)  # TEXT, masked
    await writer.drain()
    frame = await reader.readexactly(2)
    return await reader.readexactly(frame[1] & 0x7F)
