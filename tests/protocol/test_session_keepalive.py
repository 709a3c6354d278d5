"""KEEP_ALIVE behaviour (spec 8; reference-device observation 3).

Intervals are fractions of a second; timeouts only guard against hangs and the
margins are wide so a slow machine cannot make a test fail.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from session_helpers import CREDENTIAL, DEVICE, LOCALHOST, USER, WAIT

from iotmp.protocol.codec import MessageDecoder, encode_message
from iotmp.protocol.message import Message, MessageType
from iotmp.protocol.session import Role, Session, SessionConfig
from iotmp.protocol.transport import open_tcp

pytestmark = pytest.mark.usefixtures("socket_enabled")

REFERENCE_CONNECT = "03 1b 1a e3 85 616c696365 87 72656664657631 86 733363726574 08 e7 8a 01"


def accept_all(*args: Any) -> bool:
    return True


async def test_server_closes_silent_peer_after_ka_times_factor(
    make_server: Any, raw_peers: Any
) -> None:
    server = await make_server(
        authenticate=accept_all, config=SessionConfig(keep_alive=0.2, timeout_factor=1.15)
    )
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    await peer.read_hex("01 04 08 e7 8a 01")
    session = await server.next_session()
    # The peer says nothing more: the server hangs up on its own.
    assert await peer.wait_eof() == b""
    reason = await session.wait_closed()
    assert "keep-alive timeout" in reason


async def test_ka_from_connect_parameters_sets_the_timeout(
    make_server: Any, raw_peers: Any
) -> None:
    server = await make_server(authenticate=accept_all)  # default ka 60 s
    peer = await raw_peers(server.port)
    # CONNECT {"ka": 0.1} (a float ka is still "a number")
    connect = Message.build(
        MessageType.CONNECT, stream_id=1, parameters={"ka": 0.1}, payload=["u", "d", "c"]
    )
    await peer.send_hex(encode_message(connect).hex())
    await peer.read_hex("01 02 08 01")
    session = await server.next_session()
    assert session.keep_alive == pytest.approx(0.1)
    assert await peer.wait_eof() == b""
    assert "keep-alive timeout" in await session.wait_closed()


async def test_server_echoes_every_keep_alive(make_server: Any, raw_peers: Any) -> None:
    server = await make_server(authenticate=accept_all)
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    await peer.read_hex("01 04 08 e7 8a 01")
    for _ in range(3):
        await peer.send_hex("05 00")
        await peer.read_hex("05 00")


async def test_device_that_never_answers_server_keep_alive_stays_connected(
    make_server: Any, raw_peers: Any
) -> None:
    """Reference devices ignore the server's KEEP_ALIVE but send their own."""
    server = await make_server(
        authenticate=accept_all,
        config=SessionConfig(keep_alive=0.5, server_keep_alive=0.05),
    )
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    await peer.read_hex("01 04 08 e7 8a 01")
    session = await server.next_session()

    # Run for several ka periods; the device sends its own keep-alive every
    # 0.1 s and never answers the server's (which keep coming).
    received = bytearray()

    async def drain() -> None:
        while data := await peer.reader.read(4096):
            received.extend(data)

    drainer = asyncio.ensure_future(drain())
    try:
        for _ in range(20):
            await peer.send_hex("05 00")
            await asyncio.sleep(0.1)
    finally:
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer
    assert received  # the server's own keep-alives and the echoes
    assert set(received) <= {5, 0}
    assert session.is_connected
    # Silence now: the server declares the device dead.
    assert "keep-alive timeout" in await session.wait_closed()


class RawServer:
    """A raw IOTMP server: answers CONNECT with OK, records what it receives."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.keep_alives = 0
        self.messages: asyncio.Queue[int] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, LOCALHOST, 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        decoder = MessageDecoder()
        while data := await reader.read(4096):
            for message in decoder.feed(data):
                if message.type == MessageType.CONNECT:
                    writer.write(bytes([1, 2, 8, message.stream_id]))
                elif message.type == MessageType.KEEP_ALIVE:
                    self.keep_alives += 1
                    if self.echo:
                        writer.write(b"\x05\x00")
                self.messages.put_nowait(message.type)
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


async def test_client_sends_keep_alives_and_never_echoes() -> None:
    raw = RawServer(echo=True)
    port = await raw.start()
    try:
        transport = await open_tcp(LOCALHOST, port)
        client = Session(
            transport,
            Role.CLIENT,
            config=SessionConfig(keep_alive=0.05, check_keep_alive_echo=True, first_stream_id=1),
        )
        await client.connect(USER, DEVICE, CREDENTIAL)
        async with asyncio.timeout(WAIT):
            while raw.keep_alives < 5:
                assert await raw.messages.get() in (MessageType.CONNECT, MessageType.KEEP_ALIVE)
        # Echoes came back, so the echo check kept the link up.
        assert client.is_connected
        await client.close()
    finally:
        await raw.stop()


async def test_client_drops_link_when_echo_missing_if_enabled() -> None:
    raw = RawServer(echo=False)
    port = await raw.start()
    try:
        transport = await open_tcp(LOCALHOST, port)
        client = Session(
            transport,
            Role.CLIENT,
            config=SessionConfig(keep_alive=0.05, check_keep_alive_echo=True, first_stream_id=1),
        )
        await client.connect(USER, DEVICE, CREDENTIAL)
        async with asyncio.timeout(WAIT):
            assert await client.wait_closed() == "keep-alive echo missing"
    finally:
        await raw.stop()


async def test_client_ignores_missing_echo_by_default() -> None:
    raw = RawServer(echo=False)
    port = await raw.start()
    try:
        transport = await open_tcp(LOCALHOST, port)
        client = Session(
            transport, Role.CLIENT, config=SessionConfig(keep_alive=0.05, first_stream_id=1)
        )
        await client.connect(USER, DEVICE, CREDENTIAL)
        async with asyncio.timeout(WAIT):
            while raw.keep_alives < 4:
                await raw.messages.get()
        assert client.is_connected
        await client.close()
    finally:
        await raw.stop()


async def test_client_does_not_answer_server_keep_alive(raw_peers: Any) -> None:
    """A KEEP_ALIVE from the server gets no answer; the next thing the client
    sends is its reply to a request, not a KEEP_ALIVE."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.put_nowait((reader, writer))

    server = await asyncio.start_server(on_connect, LOCALHOST, 0)
    try:
        transport = await open_tcp(LOCALHOST, server.sockets[0].getsockname()[1])
        client = Session(transport, Role.CLIENT, config=SessionConfig(first_stream_id=1))
        connecting = asyncio.ensure_future(client.connect(USER, DEVICE, CREDENTIAL))
        reader, writer = await accepted.get()
        decoder = MessageDecoder()
        connect = decoder.feed(await reader.read(4096))[0]
        assert connect.stream_id == 1
        writer.write(bytes.fromhex("01 02 08 0105 0007 02 08 02"))  # OK, KA, DESCRIBE
        await connecting
        async with asyncio.timeout(WAIT):
            reply: list[Any] = []
            while not reply:
                reply = decoder.feed(await reader.read(4096))
        assert reply[0].type == MessageType.ERROR  # no RequestHandler: ERROR, not an echo
        assert reply[0].stream_id == 2
        await client.close()
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
