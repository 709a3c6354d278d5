"""TCP and TLS transports over asyncio streams."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest
from session_helpers import LOCALHOST, WAIT

from iotmp.protocol.errors import ConnectionClosedError
from iotmp.protocol.transport import (
    StreamTransport,
    client_ssl_context,
    open_tcp,
    server_ssl_context,
    server_transport,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


class EchoServer:
    """Accepts connections and hands their server transports to the test."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[StreamTransport] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.transports: list[StreamTransport] = []

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> int:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            transport = server_transport(reader, writer)
            self.transports.append(transport)
            self.accepted.put_nowait(transport)

        self.server = await asyncio.start_server(on_connect, LOCALHOST, 0, ssl=ssl_context)
        return int(self.server.sockets[0].getsockname()[1])

    async def next(self) -> StreamTransport:
        async with asyncio.timeout(WAIT):
            return await self.accepted.get()

    async def stop(self) -> None:
        for transport in self.transports:
            await transport.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def read_exactly(transport: StreamTransport, count: int) -> bytes:
    data = b""
    async with asyncio.timeout(WAIT):
        while len(data) < count:
            chunk = await transport.read()
            assert chunk, "unexpected EOF"
            data += chunk
    return data


async def test_tcp_round_trip_eof_and_close() -> None:
    server = EchoServer()
    port = await server.start()
    try:
        client = await open_tcp(LOCALHOST, port)
        remote = await server.next()
        assert client.kind == remote.kind == "tcp"
        assert client.peer == f"{LOCALHOST}:{port}"
        assert remote.peer.startswith(f"{LOCALHOST}:")
        sock = client._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

        await client.write(b"\x05\x00")
        assert await read_exactly(remote, 2) == b"\x05\x00"
        await remote.write(b"\x01\x02\x08\x01")
        assert await read_exactly(client, 4) == b"\x01\x02\x08\x01"

        await client.close()
        await client.close()  # idempotent
        assert client.is_closing
        assert await client.read() == b""
        with pytest.raises(ConnectionClosedError):
            await client.write(b"\x05\x00")
        async with asyncio.timeout(WAIT):
            assert await remote.read() == b""  # EOF on the other end
    finally:
        await server.stop()


async def test_tls_round_trip(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    server = EchoServer()
    port = await server.start(server_ssl)
    try:
        client = await open_tcp(LOCALHOST, port, ssl_context=client_ssl)
        remote = await server.next()
        assert client.kind == remote.kind == "tls"
        await client.write(b"\x05\x00")
        assert await read_exactly(remote, 2) == b"\x05\x00"
        await client.close()
    finally:
        await server.stop()


async def test_tls_verification(server_ssl: ssl.SSLContext) -> None:
    server = EchoServer()
    port = await server.start(server_ssl)
    try:
        # Default verification rejects the self-signed certificate...
        with pytest.raises(ConnectionClosedError):
            await open_tcp(LOCALHOST, port, ssl_context=client_ssl_context(), timeout=WAIT)
        # ...and verify=False accepts it, like the reference clients.
        client = await open_tcp(
            LOCALHOST, port, ssl_context=client_ssl_context(verify=False), timeout=WAIT
        )
        await client.close()
    finally:
        await server.stop()


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


async def test_peer_reset_reads_as_eof() -> None:
    server = EchoServer()
    port = await server.start()
    try:
        client = await open_tcp(LOCALHOST, port)
        remote = await server.next()
        # Abort with unread data -> RST on most systems; either way read() says EOF.
        remote._writer.transport.abort()
        async with asyncio.timeout(WAIT):
            assert await client.read() == b""
        await client.close()
    finally:
        await server.stop()
