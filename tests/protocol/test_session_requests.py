"""Requests, replies and streams through a Session, replaying the exact bytes
of reference-device-observations.md against a server session."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from session_helpers import CREDENTIAL, DEVICE, LOCALHOST, USER, WAIT, RawPeer

from iotmp.protocol.codec import encode_message
from iotmp.protocol.errors import (
    ConnectionClosedError,
    RemoteError,
    RequestTimeoutError,
)
from iotmp.protocol.message import ABSENT, Field, Message, MessageType
from iotmp.protocol.session import (
    IncomingStream,
    Reply,
    Request,
    RequestHandler,
    Role,
    Session,
    SessionConfig,
)
from iotmp.protocol.transport import open_tcp

pytestmark = pytest.mark.usefixtures("socket_enabled")

REFERENCE_CONNECT = "03 1b 1a e3 85 616c696365 87 72656664657631 86 733363726574 08 e7 8a 01"

DESCRIBE_REPLY = (  # OK {...}, keys sorted, STREAM_ID 16 last
    "01 59 1a c7 8a 6272696768746e657373 c1 82 666e 02 84 63616c63 c1 82 666e 04"
    " 83 6c6564 c1 82 666e 02 86 7265626f6f74 c1 82 666e 01 83 726762 c1 82 666e 02"
    " 8b 74656d7065726174757265 c1 82 666e 03 86 757074696d65 c1 82 666e 03 08 10"
)
API = {
    "brightness": {"fn": 2},
    "calc": {"fn": 4},
    "led": {"fn": 2},
    "reboot": {"fn": 1},
    "rgb": {"fn": 2},
    "temperature": {"fn": 3},
    "uptime": {"fn": 3},
}


def accept_all(*args: Any) -> bool:
    return True


async def connected_raw_device(
    make_server: Any, raw_peers: Any, *, first_stream_id: int = 16, **config: Any
) -> tuple[Session, RawPeer]:
    """A server session talking to a raw peer that sent the reference CONNECT."""
    server = await make_server(
        authenticate=accept_all,
        config=SessionConfig(first_stream_id=first_stream_id, **config),
    )
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    await peer.read_hex("01 04 08 e7 8a 01")
    return await server.next_session(), peer


# ----------------------------------------------------- reference replies


async def test_describe_reply_with_stream_id_last(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=16)
    describe = asyncio.ensure_future(session.describe(timeout=WAIT))
    await peer.read_hex("07 02 08 10")  # DESCRIBE, STREAM_ID 16, nothing else
    await peer.send_hex(DESCRIBE_REPLY)
    assert await describe == API


async def test_run_replies_from_reference_device(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=18)

    run = asyncio.ensure_future(session.run("temperature", timeout=WAIT))
    await peer.read_hex("06 0f 08 12 22 8b 74656d7065726174757265")
    # OK {celsius: 21.5 (float32), humidity: 45}, PAYLOAD first
    await peer.send_hex("01 1c 1a c2 87 63656c73697573 40 0000ac41 88 68756d6964697479 1f 2d 08 12")
    assert await run == {"celsius": 21.5, "humidity": 45}

    run = asyncio.ensure_future(session.run("led", True, timeout=WAIT))
    await peer.read_hex("06 09 08 14 1a 61 22 83 6c6564")
    await peer.send_hex("01 02 08 14")  # OK, no payload
    assert await run is None


async def test_error_reply_with_code_and_message(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=24)
    run = asyncio.ensure_future(session.run("calc", {"a": "x"}, timeout=WAIT))
    request = await peer.read_message()
    assert request.stream_id == 24
    await peer.send_hex(
        "02 28 10 90 03 1a c1 85 6572726f72 9a"
        " 63616c63206e65656473206e756d65726963206120616e642062 08 18"
    )
    with pytest.raises(RemoteError) as info:
        await run
    assert info.value.code == 400
    assert info.value.payload == {"error": "calc needs numeric a and b"}


async def test_error_without_payload(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=32)
    run = asyncio.ensure_future(session.run("nope", timeout=WAIT))
    await peer.read_message()
    await peer.send_hex("02 02 08 20")
    with pytest.raises(RemoteError) as info:
        await run
    assert (info.value.code, info.value.payload) == (None, None)


async def test_stream_with_echo_and_varint_payloads(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=512)
    samples: asyncio.Queue[Any] = asyncio.Queue()
    start = asyncio.ensure_future(
        session.start_stream("uptime", interval_ms=2000, on_data=samples.put_nowait)
    )
    request = await peer.read_message()
    assert request.type == MessageType.START_STREAM
    assert request.stream_id == 512
    assert request.parameters == {"interval": 2000}
    assert request.resource == "uptime"
    # OK, the library echo (STREAM_ID first) and a sample (PAYLOAD first).
    await peer.send_hex("01 03 08 80 040a 05 08 80 04 18 000a 05 18 02 08 80 04")
    handle = await start
    assert handle.stream_id == 512
    async with asyncio.timeout(WAIT):
        assert await samples.get() == 0
        assert await samples.get() == 2

    stop = asyncio.ensure_future(handle.stop(timeout=WAIT))
    await peer.read_hex("09 03 08 80 04")
    await peer.send_hex("01 03 08 80 04")
    await stop
    assert handle.closed
    assert 512 not in session.streams


async def test_stream_receive_buffer_and_parameters_1_2(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=40)
    start = asyncio.ensure_future(session.start_stream("led"))
    await peer.read_message()
    await peer.send_hex("01 02 08 28")
    handle = await start
    # [Linux-old] style: PARAMETERS 1 (input) / 2 (output) on STREAM_DATA.
    await peer.send_hex("0a 06 08 28 10 01 1a 610a 06 08 28 10 02 1a 60")
    assert await handle.receive(timeout=WAIT) is True
    assert await handle.receive(timeout=WAIT) is False
    assert handle.last_message is not None
    assert handle.last_message.parameters == 2
    with pytest.raises(RequestTimeoutError):
        await handle.receive(timeout=0.01)


async def test_start_stream_refused(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=50)
    start = asyncio.ensure_future(session.start_stream("nope", timeout=WAIT))
    await peer.read_message()
    await peer.send_hex("02 02 08 32")
    with pytest.raises(RemoteError):
        await start
    assert session.streams == {}


async def test_run_without_stream_id_and_reply_with_id_zero(
    make_server: Any, raw_peers: Any
) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=60)
    await session.run_no_reply("reboot")
    await peer.read_hex("06 08 22 86 7265626f6f74")  # RUN, RESOURCE only
    await peer.send_hex("01 02 08 00")  # what reference devices answer anyway
    # The stray reply is ignored; the session keeps working.
    run = asyncio.ensure_future(session.run("reboot", timeout=WAIT))
    request = await peer.read_message()
    await peer.send_hex(f"01 02 08 {request.stream_id:02x}")
    assert await run is None
    assert session.is_connected


async def test_unknown_stream_data_is_tolerated(make_server: Any, raw_peers: Any) -> None:
    unknown: asyncio.Queue[Message] = asyncio.Queue()

    class Handler(RequestHandler):
        async def on_unknown_stream_data(self, session: Session, message: Message) -> None:
            unknown.put_nowait(message)

    server = await make_server(
        authenticate=accept_all, handler_factory=Handler, config=SessionConfig(first_stream_id=70)
    )
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    await peer.read_hex("01 04 08 e7 8a 01")
    session = await server.next_session()
    # Streams the device opened... on the previous connection (observation 11).
    await peer.send_hex("0a 05 08 80 04 18 070a 05 18 09 08 81 08")
    async with asyncio.timeout(WAIT):
        assert (await unknown.get()).payload == 7
        assert (await unknown.get()).stream_id == 1025
    run = asyncio.ensure_future(session.run("led", timeout=WAIT))
    request = await peer.read_message()
    await peer.send_hex(f"01 02 08 {request.stream_id:02x}")
    assert await run is None


async def test_unknown_stream_data_dropped_quietly_by_default(
    make_server: Any, raw_peers: Any
) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=80)
    await peer.send_hex("0a 05 08 80 04 18 070b 0005 00")  # + an unknown type 0x0b
    await peer.read_hex("05 00")  # still alive and echoing
    assert session.is_connected


async def test_reply_matched_by_id_and_type(make_server: Any, raw_peers: Any) -> None:
    """A STREAM_DATA (or request) carrying the pending id is not the reply."""
    session, peer = await connected_raw_device(make_server, raw_peers, first_stream_id=90)
    run = asyncio.ensure_future(session.run("temperature", timeout=WAIT))
    request = await peer.read_message()
    assert request.stream_id == 90
    await peer.send_hex("0a 04 08 5a 18 01")  # STREAM_DATA with id 90
    await peer.send_hex("01 04 1a 0c 08 5a")  # then the real OK, payload 12
    assert await run == 12


async def test_run_timeout(make_server: Any, raw_peers: Any) -> None:
    session, _peer = await connected_raw_device(make_server, raw_peers)
    with pytest.raises(RequestTimeoutError):
        await session.run("slow", timeout=0.05)
    assert session._pending == {}
    assert session.is_connected  # a timeout does not close the session


async def test_connection_loss_fails_pending_requests(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers)
    runs = [asyncio.ensure_future(session.run(f"r{i}", timeout=WAIT)) for i in range(3)]
    for _ in runs:
        await peer.read_message()
    await peer.close()
    for run in runs:
        with pytest.raises(ConnectionClosedError):
            await run
    assert await session.wait_closed() == "connection closed by peer"
    with pytest.raises(ConnectionClosedError):
        await session.run("again")


async def test_garbage_closes_only_that_session_with_one_log_line(
    make_server: Any, raw_peers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(authenticate=accept_all)
    good = await raw_peers(server.port)
    bad = await raw_peers(server.port)
    for peer in (good, bad):
        await peer.send_hex(REFERENCE_CONNECT)
        await peer.read_hex("01 04 08 e7 8a 01")
    first = await server.next_session()
    second = await server.next_session()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="iotmp.protocol"):
        await bad.send_hex("0a 07 08 01 1a ff ff ff ff")  # STREAM_DATA with a bad PSON tag
        assert await bad.wait_eof() == b""
        await asyncio.wait([first.closed, second.closed], return_when=asyncio.FIRST_COMPLETED)
    closed = first if first.is_closed else second
    alive = second if closed is first else first
    assert "protocol error" in await closed.wait_closed()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "protocol error" in warnings[0].getMessage()
    # The other device is unaffected.
    await good.send_hex("05 00")
    await good.read_hex("05 00")
    assert alive.is_connected


async def test_oversized_message_closes_session(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers)
    await peer.send_hex("06 ff ff 7f")  # announces a 2 MiB body (limit 64 KiB)
    assert await peer.wait_eof() == b""
    assert "protocol error" in await session.wait_closed()


async def test_disconnect_from_peer_closes(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers)
    await peer.send_hex("04 06 08 07 12 82 6279")  # DISCONNECT, STREAM_ID 7, reason "by"
    await peer.read_hex("01 02 08 07")  # acknowledged because it carried a stream id
    assert await session.wait_closed() == "disconnected by peer: by"


async def test_disconnect_from_us(make_server: Any, raw_peers: Any) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers)
    await session.disconnect()
    assert await peer.wait_eof() == bytes.fromhex("04 00")
    assert session.is_closed


# ------------------------------------------------- requests from the peer


class EchoHandler(RequestHandler):
    """Serves RUN "echo" (returns the payload), RUN "fail" (ERROR 404) and streams on "ticks"."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.stream_data: asyncio.Queue[Any] = asyncio.Queue()

    async def on_run(self, request: Request) -> Reply:
        self.entered.set()
        await self.gate.wait()
        if request.resource == "echo":
            return Reply.success(request.payload)
        if request.resource == "fail":
            raise RemoteError("nope", 404, {"error": "not found"})
        if request.resource == "boom":
            raise RuntimeError("exploded")
        return Reply.error()

    async def on_describe(self, request: Request) -> Reply:
        return Reply.success({"echo": {"fn": 4}})

    async def on_start_stream(self, request: Request) -> Reply:
        return Reply.success() if request.resource == "ticks" else Reply.error()

    async def on_stream_started(self, stream: IncomingStream) -> None:
        await stream.send(1)

    async def on_stream_data(self, stream: IncomingStream, message: Message) -> None:
        self.stream_data.put_nowait(message.payload)


async def test_peer_requests_are_answered(make_server: Any, raw_peers: Any) -> None:
    handler = EchoHandler()
    server = await make_server(authenticate=accept_all, handler_factory=lambda: handler)
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    await peer.read_hex("01 04 08 e7 8a 01")
    await server.next_session()

    def run(stream_id: int | None, resource: str, payload: Any = ABSENT) -> str:
        message = Message.build(
            MessageType.RUN, stream_id=stream_id, resource=resource, payload=payload
        )
        return encode_message(message).hex()

    await peer.send_hex(run(5, "echo", {"x": 1}))
    assert (await peer.read_message()).fields == {Field.STREAM_ID: 5, Field.PAYLOAD: {"x": 1}}
    await peer.send_hex(run(6, "fail"))
    reply = await peer.read_message()
    assert (reply.type, reply.stream_id, reply.parameters, reply.payload) == (
        MessageType.ERROR,
        6,
        404,
        {"error": "not found"},
    )
    await peer.send_hex(run(7, "boom"))
    reply = await peer.read_message()
    assert (reply.type, reply.payload) == (MessageType.ERROR, {"error": "exploded"})
    await peer.send_hex(run(8, "unknown"))
    await peer.read_hex("02 02 08 08")
    # RUN without STREAM_ID: handled, but no reply (the next reply is DESCRIBE's).
    await peer.send_hex(run(None, "echo", 3))
    await peer.send_hex("07 02 08 09")
    reply = await peer.read_message()
    assert (reply.type, reply.stream_id, reply.payload) == (
        MessageType.OK,
        9,
        {"echo": {"fn": 4}},
    )
    # A stream the peer opens on us: OK, echo, then data from the peer.
    await peer.send_hex("08 09 08 0b 22 85 7469636b73")
    await peer.read_hex("01 02 08 0b")
    await peer.read_hex("0a 04 08 0b 18 01")
    await peer.send_hex("0a 04 08 0b 18 02")
    async with asyncio.timeout(WAIT):
        assert await handler.stream_data.get() == 2
    await peer.send_hex("09 02 08 0b")
    await peer.read_hex("01 02 08 0b")
    await peer.send_hex("09 02 08 0b")  # not open any more
    await peer.read_hex("02 02 08 0b")


async def test_ids_in_use_by_the_peer_are_skipped(make_server: Any, raw_peers: Any) -> None:
    handler = EchoHandler()
    handler.gate.clear()  # keep the peer's RUN unanswered
    server = await make_server(
        authenticate=accept_all,
        handler_factory=lambda: handler,
        config=SessionConfig(first_stream_id=20, concurrent_requests=True),
    )
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    await peer.read_hex("01 04 08 e7 8a 01")
    session = await server.next_session()
    await peer.send_hex("06 08 08 14 22 84 6563686f")  # RUN echo with stream id 20
    async with asyncio.timeout(WAIT):
        await handler.entered.wait()
    assert 20 in session._remote_busy
    run = asyncio.ensure_future(session.run("x", timeout=WAIT))
    request = await peer.read_message()
    assert request.stream_id == 22  # 20 is the peer's
    await peer.send_hex("01 02 08 16")
    await run
    handler.gate.set()
    await peer.read_hex("01 02 08 14")


async def test_stream_id_allocation_parity_and_wrap() -> None:
    class NullTransport:
        kind = "test"
        peer = "null"
        is_closing = False

    def session(role: Role, first: int | None) -> Session:
        transport: Any = NullTransport()
        return Session(transport, role, config=SessionConfig(first_stream_id=first))

    server = session(Role.SERVER, 65532)
    assert [server._allocate_id() for _ in range(4)] == [65532, 65534, 2, 4]
    client = session(Role.CLIENT, 65533)
    busy: Any = None
    client._streams[1] = busy
    client._incoming[3] = busy
    assert [client._allocate_id() for _ in range(3)] == [65533, 65535, 5]
    random_start = session(Role.CLIENT, None)
    assert all(random_start._allocate_id() % 2 == 1 for _ in range(100))


# ------------------------------------------------- client <-> server sessions


async def test_session_to_session_round_trip(make_server: Any) -> None:
    server = await make_server()
    client = Session(await open_tcp(LOCALHOST, server.port), Role.CLIENT, handler=EchoHandler())
    await client.connect(USER, DEVICE, CREDENTIAL)
    remote = await server.next_session()
    assert await remote.run("echo", [1, "two", 3.5], timeout=WAIT) == [1, "two", 3.5]
    assert await remote.describe(timeout=WAIT) == {"echo": {"fn": 4}}
    handle = await remote.start_stream("ticks", timeout=WAIT)
    assert handle.stream_id % 2 == 0
    assert await handle.receive(timeout=WAIT) == 1
    await remote.send_stream_data(handle.stream_id, "to device")
    await handle.stop(timeout=WAIT)
    with pytest.raises(RemoteError):
        await remote.run("fail", timeout=WAIT)
    # Requests also work in the other direction (the server has no handler).
    with pytest.raises(RemoteError):
        await client.run("anything", timeout=WAIT)
    closed: list[str] = []
    client.on_closed = closed.append
    await remote.close()
    assert await client.wait_closed() == "connection closed by peer"
    assert closed == ["connection closed by peer"]


async def test_on_closed_may_close_again_without_deadlock(make_server: Any) -> None:
    server = await make_server()
    client = Session(await open_tcp(LOCALHOST, server.port), Role.CLIENT)
    await client.connect(USER, DEVICE, CREDENTIAL)
    remote = await server.next_session()
    reasons: list[str] = []

    async def on_closed(reason: str) -> None:
        await remote.close("again")  # re-entrant close from the callback
        reasons.append(await remote.wait_closed())

    remote.on_closed = on_closed
    await client.close()
    async with asyncio.timeout(WAIT):
        assert await remote.wait_closed() == "connection closed by peer"
    assert reasons == ["connection closed by peer"]


# ------------------------------------- samples handled as they arrive (push)


async def _open_stream(session: Session, peer: RawPeer, on_data: Any) -> int:
    """Open a stream on ``uptime`` from the server session; returns its id."""
    start = asyncio.ensure_future(session.start_stream("uptime", on_data=on_data))
    request = await peer.read_message()
    await peer.send_hex(
        encode_message(Message.build(MessageType.OK, stream_id=request.stream_id)).hex()
    )
    handle = await start
    return handle.stream_id


def _samples(stream_id: int, values: range) -> bytes:
    return b"".join(
        encode_message(Message.build(MessageType.STREAM_DATA, stream_id=stream_id, payload=v))
        for v in values
    )


async def test_samples_behind_a_slow_consumer_arrive_in_order_with_bounded_memory(
    make_server: Any, raw_peers: Any
) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers)
    assert session.transport.pushes  # the TCP server hands chunks to the session
    gate = asyncio.Event()
    received: list[int] = []
    everything = asyncio.Event()
    count = 200_000  # about 1.4 MB: more than the work queue, the inbox and the kernel hold
    # Small socket buffers, so that what the kernel holds does not hide the back-pressure.
    for sock in (
        peer.writer.get_extra_info("socket"),
        session.transport._transport.get_extra_info("socket"),  # type: ignore[attr-defined]
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)

    async def slow(value: int) -> None:
        await gate.wait()
        received.append(value)
        if len(received) == count:
            everything.set()

    stream_id = await _open_stream(session, peer, slow)
    sender = asyncio.ensure_future(peer.send_hex(_samples(stream_id, range(count)).hex()))
    await asyncio.sleep(1.0)  # the consumer is stuck: the device's writes back up
    assert not sender.done()
    # The session stopped reading once its inbox was full (plus at most one chunk).
    assert session._reading_paused
    assert session._inbox_bytes <= 128 * 1024 + 256 * 1024
    gate.set()
    async with asyncio.timeout(WAIT * 6):
        await sender
        await everything.wait()
    assert received == list(range(count))
    assert session.is_connected


async def test_requests_between_samples_keep_their_order(make_server: Any, raw_peers: Any) -> None:
    order: list[Any] = []

    class Recorder(RequestHandler):
        async def on_run(self, request: Request) -> Reply:
            await asyncio.sleep(0.05)  # the samples after it must wait for it
            record(("run", request.payload))
            return Reply.success()

    server = await make_server(
        authenticate=accept_all,
        handler_factory=Recorder,
        config=SessionConfig(first_stream_id=16),
    )
    peer = await raw_peers(server.port)
    await peer.send_hex(REFERENCE_CONNECT)
    await peer.read_hex("01 04 08 e7 8a 01")
    session = await server.next_session()
    four = asyncio.Event()

    def record(value: Any) -> None:
        order.append(value)
        if len(order) == 4:
            four.set()

    stream_id = await _open_stream(session, peer, record)
    run = encode_message(Message.build(MessageType.RUN, stream_id=5, resource="x", payload=7))
    # One chunk: a sample, a request, two samples.
    await peer.send_hex(
        (_samples(stream_id, range(1)) + run + _samples(stream_id, range(1, 3))).hex()
    )
    reply = await peer.read_message()
    assert (reply.type, reply.stream_id) == (MessageType.OK, 5)
    async with asyncio.timeout(WAIT):
        await four.wait()
    assert order == [0, ("run", 7), 1, 2]


async def test_samples_sent_before_the_peer_closes_are_all_delivered(
    make_server: Any, raw_peers: Any
) -> None:
    session, peer = await connected_raw_device(make_server, raw_peers)
    gate = asyncio.Event()
    received: list[int] = []

    async def slow(value: int) -> None:
        await gate.wait()
        received.append(value)

    stream_id = await _open_stream(session, peer, slow)
    count = 5_000
    await peer.send_hex(_samples(stream_id, range(count)).hex())
    peer.writer.close()
    await asyncio.sleep(0.2)  # the end of the connection arrives while the consumer is stuck
    assert session.is_connected
    gate.set()
    async with asyncio.timeout(WAIT):
        reason = await session.wait_closed()
    assert reason == "connection closed by peer"
    assert received == list(range(count))
