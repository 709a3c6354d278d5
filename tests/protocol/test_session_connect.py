"""CONNECT handshake on both ends (spec 7, 15; reference-device observations 2, 10)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest
from session_helpers import CREDENTIAL, DEVICE, LOCALHOST, USER, WAIT

from iotmp.protocol.codec import encode_message
from iotmp.protocol.errors import (
    AuthenticationError,
    ConnectionClosedError,
    ProtocolError,
    RequestTimeoutError,
)
from iotmp.protocol.limits import Limits
from iotmp.protocol.message import Field, Message, MessageType, WireType
from iotmp.protocol.session import Role, Session, SessionConfig
from iotmp.protocol.transport import Transport, open_tcp, open_websocket

pytestmark = pytest.mark.usefixtures("socket_enabled")

# Observed first CONNECT of a reference device: PAYLOAD first, STREAM_ID last, no PARAMETERS.
REFERENCE_CONNECT = "03 1b 1a e3 85 616c696365 87 72656664657631 86 733363726574 08 e7 8a 01"
REFERENCE_OK = "01 04 08 e7 8a 01"


def accept_refdev(user: str, device: str, credential: str, parameters: Any) -> bool:
    return (user, device, credential) == ("alice", "refdev1", "s3cret")


def connect_bytes(payload: Any, parameters: Any = None, stream_id: int = 1) -> str:
    from iotmp.protocol.message import ABSENT

    message = Message.build(
        MessageType.CONNECT,
        stream_id=stream_id,
        parameters=ABSENT if parameters is None else parameters,
        payload=payload,
    )
    return encode_message(message).hex()


async def client_session(port: int, **kwargs: Any) -> Session:
    transport = await open_tcp(LOCALHOST, port, **kwargs)
    return Session(transport, Role.CLIENT)


@pytest.mark.parametrize("kind", ["tcp", "tls", "ws"])
async def test_connect_accepted(
    make_server: Any, kind: str, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    server = await make_server(kind=kind, ssl_context=server_ssl if kind == "tls" else None)
    transport: Transport
    if kind == "ws":
        transport = await open_websocket(server.url)
    else:
        transport = await open_tcp(
            LOCALHOST, server.port, ssl_context=client_ssl if kind == "tls" else None
        )
    assert transport.kind == kind
    client = Session(transport, Role.CLIENT)
    await client.connect(USER, DEVICE, CREDENTIAL)
    remote = await server.next_session()
    assert client.is_connected
    assert remote.info is not None
    assert (remote.info.user, remote.info.device, remote.info.credential) == (
        USER,
        DEVICE,
        CREDENTIAL,
    )
    assert remote.info.parameters is None
    assert remote.info.legacy is False
    assert remote.keep_alive == 60
    await client.close()
    assert await remote.wait_closed()
    assert client.closed.done()


async def test_wrong_credentials_rejected_and_server_closes(make_server: Any) -> None:
    server = await make_server()
    client = await client_session(server.port)
    with pytest.raises(AuthenticationError) as info:
        await client.connect(USER, DEVICE, "wrong")
    assert info.value.code == 2
    assert client.is_closed
    refusal = await server.next_refusal()
    assert isinstance(refusal, AuthenticationError)


async def test_reference_connect_bytes_ok(make_server: Any, raw_peers: Any) -> None:
    """Fields reversed (PAYLOAD then STREAM_ID), no PARAMETERS: accepted, OK echoes the id."""
    server = await make_server(authenticate=accept_refdev)
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    await peer.read_hex(REFERENCE_OK)
    session = await server.next_session()
    assert session.info is not None
    assert session.info.stream_id == 17767
    assert session.info.device == "refdev1"
    assert session.legacy is False


async def test_refused_connect_closes_socket_from_server_side(
    make_server: Any, raw_peers: Any
) -> None:
    """Reference devices leave the socket open after ERROR: we must close it."""
    server = await make_server()  # expects dev1, the reference device is refdev1
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    # ERROR, same stream id, PARAMETERS 2 (bad credentials) -- then EOF.
    assert (await peer.wait_eof()).hex(" ") == "02 06 08 e7 8a 01 10 02"


async def test_legacy_connect_accepted_and_answered_in_legacy_pson(
    make_server: Any, raw_peers: Any
) -> None:
    server = await make_server(
        authenticate=lambda u, d, c, p: (u, d, c, p) == ("user", "device", "pass", 1)
    )
    peer = await raw_peers(server.port)
    await peer.send_hex("03 1b 08 01 10 01 19 72 14 4a04 75736572 4a06 646576696365 4a04 70617373")
    await peer.read_hex("01 02 08 01")
    session = await server.next_session()
    assert session.legacy is True
    assert session.info is not None and session.info.parameters == 1

    run = asyncio.ensure_future(session.run("led", "on", timeout=WAIT))
    request = await peer.read_message()
    assert request.type == MessageType.RUN
    assert request.wire_types[Field.PAYLOAD] == WireType.PSON_LEGACY
    assert request.wire_types[Field.RESOURCE] == WireType.PSON_LEGACY
    assert request.payload == "on"
    await peer.send_hex(
        encode_message(
            Message.build(MessageType.OK, stream_id=request.stream_id), legacy=True
        ).hex()
    )
    assert await run is None


async def test_connect_with_pv_and_ka_parameters(make_server: Any, raw_peers: Any) -> None:
    server = await make_server(authenticate=lambda *a: True)
    peer = await raw_peers(server.port)
    # spec 7.1 example: {"ka":60,"pv":1}, new PSON
    await peer.send_hex(
        "03 20 08 01 12 c2 82 6b61 1f 3c 82 7076 01 1a e3 84 75736572 86 646576696365 84 70617373"
    )
    await peer.read_hex("01 02 08 01")
    session = await server.next_session()
    assert session.legacy is False
    assert session.keep_alive == 60
    assert session.info is not None and session.info.parameters == {"ka": 60, "pv": 1}


async def test_pv1_wins_over_legacy_wire_type(make_server: Any, raw_peers: Any) -> None:
    server = await make_server(authenticate=lambda *a: True)
    peer = await raw_peers(server.port)
    message = Message.build(
        MessageType.CONNECT, stream_id=5, parameters={"pv": 1}, payload=["u", "d", "c"]
    )
    await peer.send_hex(encode_message(message, legacy=True).hex())
    await peer.read_hex("01 02 08 05")
    session = await server.next_session()
    assert session.legacy is False


@pytest.mark.parametrize(
    ("parameters", "code"),
    [
        ({"ka": 5000}, 3),
        ({"ka": "sixty"}, 3),
        ({"ka": 0}, 3),
        ({"ka": True}, 3),
        ({"pv": 7}, 4),
        ({"at": 2}, 2),
        (2, 2),
    ],
)
async def test_connect_parameters_refused(
    make_server: Any, raw_peers: Any, parameters: Any, code: int
) -> None:
    server = await make_server(authenticate=lambda *a: True)
    peer = await raw_peers(server.port)
    await peer.send_hex(connect_bytes(["u", "d", "c"], parameters, stream_id=9))
    reply = await peer.wait_eof()
    assert reply.hex(" ") == f"02 04 08 09 10 {code:02x}"


@pytest.mark.parametrize("payload", [["u", "d"], ["u", "d", 3], "u:d:c", None])
async def test_connect_bad_payload_refused(make_server: Any, raw_peers: Any, payload: Any) -> None:
    server = await make_server(authenticate=lambda *a: True)
    peer = await raw_peers(server.port)
    await peer.send_hex(connect_bytes(payload, stream_id=3))
    assert (await peer.wait_eof()).hex(" ") == "02 04 08 03 10 02"


async def test_connect_without_stream_id_and_any_field_order(
    make_server: Any, raw_peers: Any
) -> None:
    server = await make_server(authenticate=lambda *a: True)
    peer = await raw_peers(server.port)
    # PARAMETERS after PAYLOAD, no STREAM_ID: the reply carries stream id 0.
    message = Message(
        MessageType.CONNECT, {Field.PAYLOAD: ["u", "d", "c"], Field.PARAMETERS: {"ka": 30}}
    )
    await peer.send_hex(encode_message(message).hex())
    await peer.read_hex("01 02 08 00")
    session = await server.next_session()
    assert session.keep_alive == 30


async def test_authenticator_may_be_async_and_return_a_code(
    make_server: Any,
) -> None:
    async def authenticate(user: str, device: str, credential: str, parameters: Any) -> int:
        await asyncio.sleep(0)
        return 1  # "redirect"; any int refuses with that code

    server = await make_server(authenticate=authenticate)
    client = await client_session(server.port)
    with pytest.raises(AuthenticationError) as info:
        await client.connect(USER, DEVICE, CREDENTIAL)
    assert info.value.code == 1


async def test_authenticator_exception_refuses_without_code(
    make_server: Any, raw_peers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def authenticate(*args: Any) -> bool:
        raise RuntimeError("database down")

    server = await make_server(authenticate=authenticate)
    peer = await raw_peers(server.port)
    with caplog.at_level(logging.ERROR):
        await peer.send_hex(connect_bytes(["u", "d", "c"], stream_id=4))
        assert (await peer.wait_eof()).hex(" ") == "02 02 08 04"


async def test_first_message_not_connect_closes(make_server: Any, raw_peers: Any) -> None:
    server = await make_server()
    peer = await raw_peers(server.port)
    await peer.send_hex("05 00")
    assert await peer.wait_eof() == b""
    assert isinstance(await server.next_refusal(), ProtocolError)


async def test_garbage_before_connect_closes(make_server: Any, raw_peers: Any) -> None:
    server = await make_server(config=SessionConfig(limits=Limits(max_message_size=1024)))
    peer = await raw_peers(server.port)
    await peer.send_hex("03 ff ff ff ff 0f")  # a 4 GiB body
    assert await peer.wait_eof() == b""
    assert isinstance(await server.next_refusal(), ProtocolError)


async def test_client_connect_timeout(raw_peers: Any) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers, waits for the client to go
        writer.close()

    server = await asyncio.start_server(silent, LOCALHOST, 0)
    try:
        client = await client_session(server.sockets[0].getsockname()[1])
        with pytest.raises(RequestTimeoutError):
            await client.connect(USER, DEVICE, CREDENTIAL, timeout=0.2)
        assert client.is_closed
    finally:
        server.close()
        await server.wait_closed()


async def test_client_sees_server_hang_up(raw_peers: Any) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, LOCALHOST, 0)
    try:
        client = await client_session(server.sockets[0].getsockname()[1])
        with pytest.raises(ConnectionClosedError):
            await client.connect(USER, DEVICE, CREDENTIAL)
    finally:
        server.close()
        await server.wait_closed()


async def test_client_sends_parameters_only_when_given(raw_peers: Any) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(1024)
        received.put_nowait(data)
        writer.close()

    server = await asyncio.start_server(record, LOCALHOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for parameters in (None, {"pv": 1, "ka": 60}):
            client = await client_session(port)
            with pytest.raises(ConnectionClosedError):
                await client.connect("u", "d", "c", parameters=parameters)
            data = await received.get()
            from iotmp.protocol.codec import decode_message

            message = decode_message(data)
            assert message.type == MessageType.CONNECT
            assert message.payload == ["u", "d", "c"]
            assert message.wire_types[Field.PAYLOAD] == WireType.PSON
            assert message.stream_id % 2 == 1  # the connecting side uses odd ids
            if parameters is None:
                assert not message.has(Field.PARAMETERS)
            else:
                assert message.parameters == parameters
    finally:
        server.close()
        await server.wait_closed()


async def test_server_handshake_timeout(make_server: Any, raw_peers: Any) -> None:
    server = await make_server(config=SessionConfig(handshake_timeout=0.05))
    peer = await raw_peers(server.port)
    assert await peer.wait_eof() == b""  # nothing sent: the server gives up
    assert isinstance(await server.next_refusal(), RequestTimeoutError)


async def test_cancelled_connect_closes_the_session() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, LOCALHOST, 0)
    try:
        client = await client_session(server.sockets[0].getsockname()[1])
        connecting = asyncio.ensure_future(client.connect(USER, DEVICE, CREDENTIAL))
        await asyncio.sleep(0.01)
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
        assert client.is_closed
        assert await client.wait_closed() == "connect failed"
        assert client.transport.is_closing
    finally:
        server.close()
        await server.wait_closed()
