"""Helpers of the device-side tests: SDK devices run for a block, raw peers, a recording peer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import server_helpers
from server_helpers import LOCALHOST, WAIT, varint_hex

from iotmp.device import Device
from iotmp.protocol.message import Message, MessageType
from iotmp.protocol.session import (
    Reply,
    Request,
    RequestHandler,
    Role,
    Session,
    SessionConfig,
)
from iotmp.protocol.transport import Transport, start_tcp_server


def sdk_device(
    user: str, device_id: str, credential: str, *, layout: str = "embedded", **kwargs: Any
) -> Device:
    """An SDK device that reconnects fast and handles requests concurrently."""
    return Device(
        user,
        device_id,
        credential,
        config=SessionConfig(request_timeout=5.0, concurrent_requests=True),
        reconnect_delay=0.1,
        jitter=0.0,
        server_call_layout=layout,  # type: ignore[arg-type]
        **kwargs,
    )


@asynccontextmanager
async def running(device: Device, port: int, *, wait: bool = True) -> AsyncIterator[Device]:
    """Run ``device.run(...)`` for the block (connected first when ``wait``); stop it after."""
    task = asyncio.get_running_loop().create_task(device.run(LOCALHOST, port))
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


def sid(stream_id: int) -> str:
    """The STREAM_ID field of ``stream_id`` as hex."""
    return "08" + varint_hex(stream_id)


class RawPeer(server_helpers.RawPeer):
    """A TCP device that also logs in, skips KEEP_ALIVEs and keeps every byte it got."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.raw = bytearray()
        """Every byte received so far."""

    @classmethod
    async def open(cls, port: int, *, source: str | None = None) -> RawPeer:
        """Connect to 127.0.0.1:``port``."""
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        return cls(reader, writer)

    async def login(self, user: str, device: str, credential: str) -> None:
        """CONNECT (new PSON, no parameters), expect OK, answer the server's DESCRIBE."""
        await self.send(
            Message.build(MessageType.CONNECT, stream_id=1, payload=[user, device, credential])
        )
        reply = await self.receive()
        assert reply.type == MessageType.OK, reply
        describe = await self.receive()
        assert describe.type == MessageType.DESCRIBE, describe
        await self.send(Message.build(MessageType.OK, stream_id=describe.stream_id, payload={}))

    async def receive(self, limit: float = WAIT) -> Message:
        """Next message from the server, KEEP_ALIVEs skipped (TimeoutError / EOFError)."""
        async with asyncio.timeout(limit):
            while True:
                while not self.inbox:
                    data = await self.reader.read(65536)
                    if not data:
                        raise EOFError("server closed the connection")
                    self.raw.extend(data)
                    self.inbox.extend(self.decoder.feed(data))
                message = self.inbox.pop(0)
                if message.type != MessageType.KEEP_ALIVE:
                    return message

    async def reply_to(self, stream_id: int, limit: float = WAIT) -> Message:
        """The next OK / ERROR with ``stream_id`` (other messages are kept for later)."""
        skipped: list[Message] = []
        try:
            while True:
                message = await self.receive(limit)
                if message.type in (MessageType.OK, MessageType.ERROR) and (
                    message.stream_id == stream_id
                ):
                    return message
                skipped.append(message)
        finally:
            self.inbox[:0] = skipped


class _RecordingTransport(Transport):
    """A server-side transport that keeps every byte it received."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.received = bytearray()

    @property
    def peer(self) -> str:
        return self.inner.peer

    @property
    def is_closing(self) -> bool:
        return self.inner.is_closing

    async def read(self) -> bytes:
        data = await self.inner.read()
        self.received.extend(data)
        return data

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def close(self) -> None:
        await self.inner.close()


Answer = Callable[[Request], Reply]


@dataclass
class RecordingHandler(RequestHandler):
    """Answers every RUN and START_STREAM with ``answer(request)`` and keeps the requests."""

    answer: Answer = lambda _request: Reply.success()
    requests: list[Message] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_run(self, request: Request) -> Reply:
        self.requests.append(request.message)
        self.arrived.set()
        return self.answer(request)

    async def on_describe(self, request: Request) -> Reply:
        return Reply.success({})

    async def on_start_stream(self, request: Request) -> Reply:
        self.requests.append(request.message)
        self.arrived.set()
        return self.answer(request)


@dataclass
class RecordingPeer:
    """An in-process IOTMP server (``Session(Role.SERVER)``) that records raw bytes."""

    handler: RecordingHandler = field(default_factory=RecordingHandler)
    port: int = 0
    transports: list[_RecordingTransport] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> RecordingPeer:
        """Listen on an ephemeral loopback port."""

        async def on_connect(inner: Transport) -> None:
            transport = _RecordingTransport(inner)
            self.transports.append(transport)
            session = Session(transport, Role.SERVER, handler=self.handler)
            self.sessions.append(session)
            with contextlib.suppress(Exception):
                await session.accept(lambda *_args: True)
                await session.wait_closed()

        self._server = await start_tcp_server(on_connect, LOCALHOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def received(self) -> bytes:
        """Every byte received on the latest connection."""
        return bytes(self.transports[-1].received)

    async def next_request(self) -> Message:
        """Wait for the next RUN / START_STREAM and return it."""
        count = len(self.handler.requests)
        async with asyncio.timeout(WAIT):
            while len(self.handler.requests) <= count:
                self.handler.arrived.clear()
                await self.handler.arrived.wait()
        return self.handler.requests[count]

    async def stop(self) -> None:
        """Close every session and the listener."""
        for session in self.sessions:
            await session.close("test peer stopped")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
