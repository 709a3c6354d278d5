"""Helpers shared by the session / transport / device tests.

A minimal IOTMP server made from :mod:`iotmp.protocol.session`
(TCP, TLS or WebSocket) and a raw TCP peer that speaks exact bytes. The
fixtures that create and clean them up are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio.plugin
from aiohttp import web

from iotmp.protocol.codec import MessageDecoder
from iotmp.protocol.errors import IotmpError
from iotmp.protocol.message import Message
from iotmp.protocol.session import (
    RequestHandler,
    Role,
    Session,
    SessionConfig,
)
from iotmp.protocol.transport import (
    WEBSOCKET_PATH,
    Transport,
    start_tcp_server,
    websocket_handler,
)

LOCALHOST = "127.0.0.1"


def _has_loop_factories_hook() -> bool:
    specs = getattr(pytest_asyncio.plugin, "PytestAsyncioSpecs", None)
    return specs is not None and hasattr(specs, "pytest_asyncio_loop_factories")


LOOP_FACTORIES_HOOK = _has_loop_factories_hook()
"""Whether pytest-asyncio has the ``pytest_asyncio_loop_factories`` hook (1.3 and later).
Without it (Home Assistant 2025.4 pins 0.26), a module's ``LOOP_FACTORIES`` are not
used and its tests run on asyncio's loop only: its ``event_loop_policy`` would have to be
session-scoped there, for Home Assistant's session fixtures. The other legs run both."""
USER, DEVICE, CREDENTIAL = "alice", "dev1", "s3cret"
WAIT = 10.0
"""Generous timeout so a broken test fails instead of hanging (never a speed check)."""


Authenticate = Callable[[str, str, str, Any], Any]


def default_authenticate(user: str, device: str, credential: str, parameters: Any) -> bool:
    """Accept exactly the test credentials."""
    return (user, device, credential) == (USER, DEVICE, CREDENTIAL)


@dataclass
class ServerConnection:
    """One accepted connection as the test sees it."""

    session: Session
    error: BaseException | None = None


@dataclass
class IotmpTestServer:
    """A minimal IOTMP server over TCP, TLS or WebSocket built from Session."""

    kind: str = "tcp"
    authenticate: Authenticate = default_authenticate
    config: SessionConfig = field(default_factory=SessionConfig)
    handler_factory: Callable[[], RequestHandler] = RequestHandler
    ssl_context: ssl.SSLContext | None = None

    port: int = 0
    sessions: list[Session] = field(default_factory=list)
    accepted: asyncio.Queue[Session] = field(default_factory=asyncio.Queue)
    refused: asyncio.Queue[BaseException] = field(default_factory=asyncio.Queue)
    _server: asyncio.Server | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{LOCALHOST}:{self.port}{WEBSOCKET_PATH}"

    async def start(self) -> IotmpTestServer:
        if self.kind == "ws":
            app = web.Application()
            app.router.add_get(WEBSOCKET_PATH, websocket_handler(self.serve))
            self._runner = web.AppRunner(app, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, LOCALHOST, 0, ssl_context=self.ssl_context)
            await site.start()
            self.port = self._runner.addresses[0][1]
        else:
            self._server = await start_tcp_server(
                self.serve, LOCALHOST, 0, ssl_context=self.ssl_context
            )
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def serve(self, transport: Transport) -> None:
        """Run one server session for its whole life."""
        session = Session(
            transport, Role.SERVER, config=self.config, handler=self.handler_factory()
        )
        self.sessions.append(session)
        try:
            await session.accept(self.authenticate)
        except IotmpError as exc:
            self.refused.put_nowait(exc)
            return
        self.accepted.put_nowait(session)
        await session.wait_closed()

    async def next_session(self) -> Session:
        """The next session that passed CONNECT."""
        async with asyncio.timeout(WAIT):
            return await self.accepted.get()

    async def next_refusal(self) -> BaseException:
        """The next refused / failed CONNECT."""
        async with asyncio.timeout(WAIT):
            return await self.refused.get()

    async def stop(self) -> None:
        for session in self.sessions:
            await session.close("test server stopped")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()


class RawPeer:
    """A raw TCP client: write exact bytes, read exact bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        return cls(reader, writer)

    async def send_hex(self, hex_bytes: str) -> None:
        self.writer.write(bytes.fromhex(hex_bytes.replace(" ", "")))
        await self.writer.drain()

    async def read_exactly(self, count: int) -> bytes:
        async with asyncio.timeout(WAIT):
            return await self.reader.readexactly(count)

    async def read_hex(self, hex_bytes: str) -> None:
        """Read len(expected) bytes and assert they are exactly ``hex_bytes``."""
        expected = bytes.fromhex(hex_bytes.replace(" ", ""))
        got = await self.read_exactly(len(expected))
        assert got.hex(" ") == expected.hex(" ")

    async def read_message(self) -> Message:
        """Read one whole IOTMP message (type and size as single-byte varints
        are the common case, but varints of any length are handled)."""
        decoder = MessageDecoder()
        async with asyncio.timeout(WAIT):
            while True:
                byte = await self.reader.readexactly(1)
                messages = decoder.feed(byte)
                if messages:
                    assert len(messages) == 1
                    return messages[0]

    async def wait_eof(self) -> bytes:
        """Read until the server closes; returns what arrived before EOF."""
        async with asyncio.timeout(WAIT):
            return await self.reader.read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
