"""TCP and TLS transports (``ProtocolTransport``) over real loopback sockets.

Each test runs on asyncio's loop and on uvloop (when installed): the device
listeners must work on both (``LOOP_FACTORIES``, see conftest).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from session_helpers import LOCALHOST, WAIT

from iotmp.protocol import transport as transport_module
from iotmp.protocol.codec import MessageDecoder, encode_message
from iotmp.protocol.errors import ConnectionClosedError
from iotmp.protocol.message import Message, MessageType
from iotmp.protocol.transport import (
    READ_LIMIT,
    ProtocolTransport,
    client_ssl_context,
    open_tcp,
    server_ssl_context,
    start_tcp_server,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop
}
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is an optional extra
    pass
else:
    LOOP_FACTORIES["uvloop"] = uvloop.new_event_loop


CHUNK = 64 * 1024
MAX_CHUNKS = 4096
"""Writes tried before a test gives up waiting for back-pressure (256 MiB: far above
any loopback socket buffer, so only a broken transport gets there)."""
LARGEST_RECV = 256 * 1024
"""The most bytes asyncio and uvloop hand to ``data_received`` at once."""


class Listener:
    """Accepts connections and hands their server transports to the test."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[ProtocolTransport] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.transports: list[ProtocolTransport] = []

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ProtocolTransport(self._connected), LOCALHOST, 0, ssl=ssl_context
        )
        return int(self.server.sockets[0].getsockname()[1])

    def _connected(self, transport: ProtocolTransport) -> None:
        self.transports.append(transport)
        self.accepted.put_nowait(transport)

    async def next(self) -> ProtocolTransport:
        async with asyncio.timeout(WAIT):
            return await self.accepted.get()

    async def stop(self) -> None:
        for transport in self.transports:
            await transport.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    server = Listener()
    yield server
    await server.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[ProtocolTransport]]:
    """Client transports the test opens, closed at teardown."""
    opened: list[ProtocolTransport] = []
    yield opened
    for client in opened:
        await client.close()


async def connect(
    listener: Listener, clients: list[ProtocolTransport], port: int, **kwargs: Any
) -> tuple[ProtocolTransport, ProtocolTransport]:
    """A connected (client, server-side) pair."""
    client = await open_tcp(LOCALHOST, port, timeout=WAIT, **kwargs)
    clients.append(client)
    return client, await listener.next()


async def read_exactly(transport: ProtocolTransport, count: int) -> bytes:
    data = bytearray()
    async with asyncio.timeout(WAIT):
        while len(data) < count:
            chunk = await transport.read()
            assert chunk, "unexpected EOF"
            data += chunk
    return bytes(data)


async def read_to_eof(transport: ProtocolTransport) -> bytes:
    data = bytearray()
    async with asyncio.timeout(WAIT):
        while chunk := await transport.read():
            data += chunk
    return bytes(data)


def pattern(index: int) -> bytes:
    """Chunk ``index`` of a stream whose order a reader can check."""
    return bytes([index % 251]) * CHUNK


async def write_until_blocked(transport: ProtocolTransport) -> tuple[asyncio.Task[None], int]:
    """Write chunk after chunk until a write has to wait; returns it and the chunks written."""
    for index in range(MAX_CHUNKS):
        task = asyncio.ensure_future(transport.write(pattern(index)))
        await asyncio.sleep(0)  # the write's task runs first: done unless it waits
        if not task.done():
            return task, index + 1
        task.result()
    pytest.fail(f"{MAX_CHUNKS} writes of {CHUNK} bytes never had to wait")


# ------------------------------------------------------------------ basics


async def test_tcp_round_trip_eof_and_close(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    client, remote = await connect(listener, clients, port)
    assert client.kind == remote.kind == "tcp"
    assert client.peer == f"{LOCALHOST}:{port}"
    assert remote.peer.startswith(f"{LOCALHOST}:")
    assert client._transport is not None
    sock = client._transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    await client.write(b"\x05\x00")
    assert await read_exactly(remote, 2) == b"\x05\x00"
    await remote.write(b"\x01\x02\x08\x01")
    assert await read_exactly(client, 4) == b"\x01\x02\x08\x01"
    assert (client.tx_bytes, client.rx_bytes) == (2, 4)
    assert (remote.tx_bytes, remote.rx_bytes) == (4, 2)

    await client.close()
    await client.close()  # idempotent
    assert client.is_closing
    assert await client.read() == b""
    with pytest.raises(ConnectionClosedError):
        await client.write(b"\x05\x00")
    assert await read_to_eof(remote) == b""  # EOF on the other end


async def test_tls_round_trip(
    listener: Listener,
    clients: list[ProtocolTransport],
    server_ssl: ssl.SSLContext,
    client_ssl: ssl.SSLContext,
) -> None:
    port = await listener.start(server_ssl)
    client, remote = await connect(listener, clients, port, ssl_context=client_ssl)
    assert client.kind == remote.kind == "tls"
    await client.write(b"\x05\x00")
    assert await read_exactly(remote, 2) == b"\x05\x00"
    # More than the read limit and the TLS buffers, both ways: pausing and
    # resuming through the TLS layer loses and reorders nothing.
    blob = b"".join(pattern(i) for i in range(40))
    sending = asyncio.ensure_future(client.write(blob))
    assert await read_exactly(remote, len(blob)) == blob
    await sending
    await remote.write(blob)
    assert await read_exactly(client, len(blob)) == blob
    await client.close()
    assert await read_to_eof(remote) == b""


async def test_tls_verification(
    listener: Listener, clients: list[ProtocolTransport], server_ssl: ssl.SSLContext
) -> None:
    port = await listener.start(server_ssl)
    # Default verification rejects the self-signed certificate...
    with pytest.raises(ConnectionClosedError):
        await open_tcp(LOCALHOST, port, ssl_context=client_ssl_context(), timeout=WAIT)
    # ...and verify=False accepts it, like the reference clients.
    await connect(listener, clients, port, ssl_context=client_ssl_context(verify=False))


async def test_server_ssl_context_helper(tls_files: Any) -> None:
    context = server_ssl_context(tls_files.certfile, tls_files.keyfile)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


async def test_connection_refused() -> None:
    probe = await asyncio.start_server(lambda r, w: None, LOCALHOST, 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(ConnectionClosedError):
        await open_tcp(LOCALHOST, port, timeout=WAIT)


async def test_start_tcp_server_runs_a_handler_and_closes_after_it() -> None:
    async def echo_once(transport: ProtocolTransport) -> None:
        await transport.write(await transport.read())

    server = await start_tcp_server(echo_once, LOCALHOST, 0)
    try:
        client = await open_tcp(LOCALHOST, server.sockets[0].getsockname()[1], timeout=WAIT)
        await client.write(b"\x05\x00")
        # The echo, then EOF: the server closed the transport when the handler returned.
        assert await read_to_eof(client) == b"\x05\x00"
        await client.close()
    finally:
        server.close()
        await server.wait_closed()


# ------------------------------------------------------------------ reading


async def test_a_partial_frame_is_returned_as_it_arrives(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    client, remote = await connect(listener, clients, port)
    frame = encode_message(
        Message.build(MessageType.CONNECT, stream_id=1, payload=["user", "device", "credential"])
    )
    decoder = MessageDecoder()
    await client.write(frame[:5])
    head = await read_exactly(remote, 5)  # no wait for the rest of the frame
    assert decoder.feed(head) == []
    await client.write(frame[5:])
    (message,) = decoder.feed(await read_exactly(remote, len(frame) - 5))
    assert message.type is MessageType.CONNECT
    assert message.payload == ["user", "device", "credential"]


async def test_chunks_queued_while_nobody_reads_come_back_as_one_read(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    client, remote = await connect(listener, clients, port)
    keep_alive = encode_message(Message.build(MessageType.KEEP_ALIVE))
    for _ in range(500):
        await client.write(keep_alive)
    total = 500 * len(keep_alive)
    async with asyncio.timeout(WAIT):
        while remote.queued_bytes < total:  # noqa: ASYNC110 (no event says "bytes queued")
            await asyncio.sleep(0.01)
    data = await remote.read()
    assert data == keep_alive * 500
    assert remote.queued_bytes == 0
    assert len(MessageDecoder().feed(data)) == 500


async def test_a_flooding_peer_is_paused_and_server_memory_stays_bounded(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    client, remote = await connect(listener, clients, port)
    # Nobody reads on the server side: the client's writes must end up waiting on TCP.
    blocked, chunks = await write_until_blocked(client)
    assert 0 < remote.queued_bytes <= READ_LIMIT + LARGEST_RECV
    assert chunks * CHUNK > READ_LIMIT + LARGEST_RECV  # the rest waits in the kernel
    # Reading resumes the socket: everything arrives, in order.
    received = await read_exactly(remote, chunks * CHUNK)
    await asyncio.wait_for(blocked, WAIT)
    assert received == b"".join(pattern(i) for i in range(chunks))
    assert remote.rx_bytes == chunks * CHUNK


async def test_a_read_that_was_cancelled_loses_nothing(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    client, remote = await connect(listener, clients, port)
    waiting = asyncio.ensure_future(remote.read())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await client.write(b"\x05\x00")
    assert await read_exactly(remote, 2) == b"\x05\x00"


async def test_a_second_concurrent_read_is_refused(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    client, remote = await connect(listener, clients, port)
    first = remote.read()
    with pytest.raises(RuntimeError, match="another read"):
        remote.read()
    await client.write(b"\x05\x00")
    assert await asyncio.wait_for(first, WAIT) == b"\x05\x00"


async def test_peer_eof_ends_reading_but_we_can_still_answer(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    try:
        remote = await listener.next()
        writer.write(b"\x05\x00")
        writer.write_eof()
        # What came before the EOF, then b"" (every time).
        assert await read_to_eof(remote) == b"\x05\x00"
        assert await remote.read() == b""
        await remote.write(b"\x01\x02\x08\x01")  # TCP half-close: our side stays open
        await remote.close()
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b"\x01\x02\x08\x01"
    finally:
        writer.close()


async def test_peer_reset_reads_as_eof_and_fails_writes(listener: Listener) -> None:
    port = await listener.start()
    _reader, writer = await asyncio.open_connection(LOCALHOST, port)
    remote = await listener.next()
    waiting = asyncio.ensure_future(remote.read())
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # linger 0: an RST, not a FIN
    assert await asyncio.wait_for(waiting, WAIT) == b""
    assert remote.is_closing
    with pytest.raises(ConnectionClosedError):
        await remote.write(b"\x05\x00")


async def test_close_during_a_pending_read(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    client, remote = await connect(listener, clients, port)
    waiting = asyncio.ensure_future(remote.read())
    await asyncio.sleep(0)
    await remote.close()
    assert await asyncio.wait_for(waiting, WAIT) == b""
    assert await read_to_eof(client) == b""


# ------------------------------------------------------------------ writing


async def test_a_peer_that_stops_reading_blocks_only_its_own_writes(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    slow, remote_slow = await connect(listener, clients, port)
    blocked, chunks = await write_until_blocked(remote_slow)
    assert remote_slow.tx_bytes == (chunks - 1) * CHUNK  # the waiting write is not sent yet

    # Another device on the same server is not held up.
    other, remote_other = await connect(listener, clients, port)
    await other.write(b"\x05\x00")
    assert await read_exactly(remote_other, 2) == b"\x05\x00"
    await remote_other.write(b"\x01\x02\x08\x01")
    assert await read_exactly(other, 4) == b"\x01\x02\x08\x01"
    assert not blocked.done()

    # Once the slow peer reads, the waiting write completes and everything arrives.
    received = await read_exactly(slow, chunks * CHUNK)
    await asyncio.wait_for(blocked, WAIT)
    assert received == b"".join(pattern(i) for i in range(chunks))
    assert remote_slow.tx_bytes == chunks * CHUNK


async def test_close_during_a_pending_write_fails_it_and_aborts(
    listener: Listener, clients: list[ProtocolTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The peer never reads, so the close cannot flush: it aborts after _CLOSE_TIMEOUT.
    monkeypatch.setattr(transport_module, "_CLOSE_TIMEOUT", 0.2)
    port = await listener.start()
    slow, remote = await connect(listener, clients, port)
    blocked, _chunks = await write_until_blocked(remote)
    await asyncio.wait_for(remote.close(), WAIT)
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(blocked, WAIT)
    assert remote.is_closing
    # The peer sees the connection end (what was buffered is dropped by the abort).
    async with asyncio.timeout(WAIT):
        while await slow.read():
            pass


# ------------------------------------------------------------- push receiver


class Collector:
    """A Receiver that keeps what it is pushed."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eofs = 0
        self.changed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.changed.set()

    def eof_received(self) -> None:
        self.eofs += 1
        self.changed.set()

    async def wait_for(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not done():
                self.changed.clear()
                await self.changed.wait()


async def test_a_receiver_gets_queued_then_pushed_bytes_and_one_eof(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    client, remote = await connect(listener, clients, port)
    assert remote.pushes
    await client.write(b"\x05\x00")
    async with asyncio.timeout(WAIT):
        while remote.queued_bytes < 2:  # noqa: ASYNC110 (no event says "bytes queued")
            await asyncio.sleep(0.01)
    collector = Collector()
    remote.attach_receiver(collector)
    assert bytes(collector.data) == b"\x05\x00"  # what was held, at once
    await client.write(b"\x01\x02\x08\x01")
    await collector.wait_for(lambda: len(collector.data) == 6)
    assert bytes(collector.data) == b"\x05\x00\x01\x02\x08\x01"
    assert remote.rx_bytes == 6
    await client.close()
    await collector.wait_for(lambda: collector.eofs > 0)
    await remote.close()
    assert collector.eofs == 1


async def test_a_paused_receiver_gets_nothing_until_resumed(
    listener: Listener, clients: list[ProtocolTransport]
) -> None:
    port = await listener.start()
    client, remote = await connect(listener, clients, port)
    collector = Collector()
    remote.attach_receiver(collector)
    remote.pause_reading()
    # The sender ends up waiting on TCP: nothing was pushed meanwhile.
    blocked, chunks = await write_until_blocked(client)
    assert collector.data == b""
    remote.resume_reading()
    await collector.wait_for(lambda: len(collector.data) == chunks * CHUNK)
    await asyncio.wait_for(blocked, WAIT)
    assert bytes(collector.data) == b"".join(pattern(i) for i in range(chunks))
