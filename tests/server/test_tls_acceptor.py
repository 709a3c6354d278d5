"""TlsAcceptor (device TLS port and HTTPS): the handshake on asyncio's loop and on uvloop.

uvloop starts reading a connection once ``connection_made`` returns, even when
the protocol paused reading there; a ClientHello that is already in the socket
then reaches the acceptor before ``start_tls`` takes over, and must not be lost
(a client in the same process sends it that early every time).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from server_helpers import LOCALHOST, WAIT

from iotmp.protocol.transport import ProtocolTransport, client_ssl_context, open_tcp
from iotmp.server.certs import make_self_signed
from iotmp.server.tls import TlsAcceptor

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is an optional extra
    pass
else:
    LOOPS["uvloop"] = uvloop.new_event_loop


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Run a coroutine to completion on the event loop under test."""

    def runner(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as loop_runner:
            loop_runner.run(coro)

    return runner


@pytest.fixture(scope="module")
def server_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    directory = tmp_path_factory.mktemp("tls")
    make_self_signed(directory / "cert.pem", directory / "key.pem")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


async def _listen(
    context: ssl.SSLContext, failures: list[tuple[str, str, object]]
) -> tuple[asyncio.Server, asyncio.Queue[ProtocolTransport]]:
    accepted: asyncio.Queue[ProtocolTransport] = asyncio.Queue()
    acceptor = TlsAcceptor(
        context,
        lambda: ProtocolTransport(accepted.put_nowait),
        report=lambda *failure: failures.append(failure),
        what="tls",
        handshake_timeout=WAIT,
    )
    server = await asyncio.get_running_loop().create_server(acceptor, LOCALHOST, 0)
    return server, accepted


def test_handshake_and_round_trip(
    run: Callable[[Coroutine[Any, Any, None]], None], server_context: ssl.SSLContext
) -> None:
    async def scenario() -> None:
        failures: list[tuple[str, str, object]] = []
        server, accepted = await _listen(server_context, failures)
        port = server.sockets[0].getsockname()[1]
        try:
            # Two kinds of client: asyncio streams and our own transport.
            reader, writer = await asyncio.open_connection(
                LOCALHOST, port, ssl=client_ssl_context(verify=False)
            )
            async with asyncio.timeout(WAIT):
                remote = await accepted.get()
            assert remote.kind == "tls"
            writer.write(b"\x05\x00")
            async with asyncio.timeout(WAIT):
                assert await remote.read() == b"\x05\x00"
            await remote.write(b"\x01\x02\x08\x01")
            async with asyncio.timeout(WAIT):
                assert await reader.readexactly(4) == b"\x01\x02\x08\x01"
            writer.close()
            await remote.close()

            client = await open_tcp(
                LOCALHOST, port, ssl_context=client_ssl_context(verify=False), timeout=WAIT
            )
            async with asyncio.timeout(WAIT):
                remote = await accepted.get()
            await client.write(b"\x05\x00")
            async with asyncio.timeout(WAIT):
                assert await remote.read() == b"\x05\x00"
            await client.close()
            await remote.close()
            assert failures == []
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


def test_a_failed_handshake_is_reported(
    run: Callable[[Coroutine[Any, Any, None]], None], server_context: ssl.SSLContext
) -> None:
    async def scenario() -> None:
        failures: list[tuple[str, str, object]] = []
        server, accepted = await _listen(server_context, failures)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            writer.write(bytes.fromhex("03 1b 1a e3 85 616c696365"))  # plain IOTMP, no TLS
            with contextlib.suppress(ConnectionResetError):  # aborted: EOF or reset
                async with asyncio.timeout(WAIT):
                    assert await reader.read() == b""
            writer.close()
            assert [(address, what) for address, what, _detail in failures] == [(LOCALHOST, "tls")]
            assert "TLS error" in str(failures[0][2])
            assert accepted.empty()
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())
