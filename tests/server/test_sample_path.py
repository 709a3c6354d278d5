"""The compiled sample path gives subscribers exactly what the Python path gives.

Each test runs twice: with the compiled path (``_sample_path_c``, when built) and with
it switched off. A raw device streams chosen STREAM_DATA frames; application
WebSockets receive them. Frames, repeats dropped, the device's fate on bad input and
the stream's last message must be the same both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from iotmp.protocol.codec import MessageDecoder, decode_message, encode_message
from iotmp.protocol.message import Message, MessageType
from iotmp.protocol.transport import client_ssl_context
from iotmp.protocol.varint import encode_varint
from iotmp.server import streams
from iotmp.server.certs import make_self_signed
from iotmp.server.http_api import dumps_bytes
from iotmp.server.limits import ServerLimits
from iotmp.server.testing import TestDevice, TestServer, run_test_server

try:
    from iotmp.server import _sample_path_c  # type: ignore[attr-defined]
except ImportError:
    if os.environ.get("IOTMP_REQUIRE_EXTENSIONS") == "1":
        raise  # a wheel built with the compiler must carry it
    _sample_path_c = None

# (IOTMP_NO_EXTENSIONS=1 leaves the module importable but switched off)
PATHS = ["python"] + (["compiled"] if streams._SamplePath is not None else [])
SAMPLE = {"temperature": 23.5, "humidity": 60, "pressure": 1013, "label": "outdoor"}


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(streams, "_SamplePath", None)
    return str(request.param)


@dataclass
class Rig:
    server: TestServer
    writer: asyncio.StreamWriter
    stream_ids: list[int]  # every START_STREAM's id, the current one last
    ws: aiohttp.ClientWebSocketResponse
    answer: asyncio.Event  # cleared: the device does not answer START/STOP_STREAM yet
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def stream_id(self) -> int:
        return self.stream_ids[-1]

    def frame(self, payload: Any, *, raw: bytes | None = None) -> bytes:
        if raw is not None:
            body = b"\x08" + encode_varint(self.stream_id) + b"\x1a" + raw
            return b"\x0a" + encode_varint(len(body)) + body
        return encode_message(
            Message.build(MessageType.STREAM_DATA, stream_id=self.stream_id, payload=payload)
        )

    async def send(self, *frames: bytes, gap: float = 0.002) -> None:
        for frame in frames:
            self.writer.write(frame)  # one chunk each, as a device sends them
            await self.writer.drain()
            await asyncio.sleep(gap)

    async def texts(self, count: int, wait: float = 3.0) -> list[str]:
        got: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while len(got) < count:
                    msg = await self.ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    got.append(msg.data)
        return got

    def routes(self) -> list[Any]:
        session = _session(self.server)
        if session is None or session.fast_path is None:
            return []
        return list(session.fast_path.routes.values())


def _session(server: TestServer) -> Any:
    link = server.device("d0").link
    return None if link is None else link.session


async def _device(
    port: int,
    started: asyncio.Future[int],
    rig_closed: asyncio.Event,
    writer_box: list[asyncio.StreamWriter],
    ids: list[int],
    *,
    answer: asyncio.Event,
    tls: ssl.SSLContext | None = None,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    writer_box.append(writer)
    writer.write(
        encode_message(
            Message.build(MessageType.CONNECT, stream_id=1, payload=["alice", "d0", "pw"])
        )
    )
    decoder = MessageDecoder()
    try:
        while data := await reader.read(65536):
            for msg in decoder.feed(data):
                if msg.type == MessageType.DESCRIBE:
                    writer.write(
                        encode_message(
                            Message.build(
                                MessageType.OK, stream_id=msg.stream_id, payload={"s": {"fn": 3}}
                            )
                        )
                    )
                elif msg.type in (MessageType.START_STREAM, MessageType.STOP_STREAM):
                    await answer.wait()  # a test may hold the stream's restart back
                    writer.write(
                        encode_message(Message.build(MessageType.OK, stream_id=msg.stream_id))
                    )
                    if msg.type == MessageType.START_STREAM:
                        ids.append(msg.stream_id)
                        if not started.done():
                            started.set_result(msg.stream_id)
    finally:
        rig_closed.set()


@contextlib.asynccontextmanager
async def _rig(
    http: aiohttp.ClientSession, limits: ServerLimits | None = None, *, tls: bool = False
) -> AsyncIterator[Rig]:
    limits = limits or ServerLimits(min_stream_interval=0.01)
    certs = tempfile.TemporaryDirectory()
    cert, key = Path(certs.name) / "cert.pem", Path(certs.name) / "key.pem"
    options: dict[str, Any] = {}
    if tls:
        make_self_signed(cert, key)
        options = {"tls_cert": str(cert), "tls_key": str(key)}
    async with run_test_server(
        [TestDevice("d0", credential="pw")], limits=limits, **options
    ) as server:
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        closed = asyncio.Event()
        box: list[asyncio.StreamWriter] = []
        ids: list[int] = []
        answer = asyncio.Event()
        answer.set()
        port = server.tls_port if tls else server.tcp_port
        assert port is not None
        task = asyncio.create_task(
            _device(
                port,
                started,
                closed,
                box,
                ids,
                answer=answer,
                tls=client_ssl_context(verify=False) if tls else None,
            )
        )
        await server.wait_device_connected("d0")
        url = f"{server.ws_url}/v3/users/alice/devices/d0/resources/s?interval=0"
        ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {server.token}"})
        await asyncio.wait_for(started, 5)
        rig = Rig(server, box[0], ids, ws, answer, closed)
        try:
            yield rig
        finally:
            await ws.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
            certs.cleanup()


def _expected(payload: Any) -> str:
    return dumps_bytes({"resource": "s", "signal": "data", "payload": payload}).decode()


PAYLOADS: list[Any] = [
    {**SAMPLE, "ts": 1},
    {**SAMPLE, "ts": 2},
    {"a": [1, 2.5, True, None, False], "b": {"c": -5, "d": ""}, "e": []},
    {"x": 21.6, "y": 0.1, "z": 1e300},  # a float with an exponent: the Python path
    {"name": "café"},  # non-ASCII: the Python path
    {"q": 'say "hi"'},  # escapes: the Python path
    [1, 2, 3],
    "text",
    {**SAMPLE, "ts": 3},
]


async def test_frames_are_the_same_both_ways(http: aiohttp.ClientSession, path: str) -> None:
    async with _rig(http) as rig:
        await rig.send(*(rig.frame(p) for p in PAYLOADS))
        got = await rig.texts(len(PAYLOADS))
        want = [_expected(decode_message(rig.frame(p)).fields[3]) for p in PAYLOADS]
        assert got == want
        taken = sum(r.taken for r in rig.routes())
        if path == "compiled":
            assert taken >= 5  # the plain ones after the first went the compiled way
        else:
            assert taken == 0


async def test_repeats_are_dropped_alike(http: aiohttp.ClientSession, path: str) -> None:
    a, b = {**SAMPLE, "ts": 1}, {**SAMPLE, "ts": 2}
    async with _rig(http) as rig:
        await rig.send(*(rig.frame(p) for p in (a, a, b, b, a, {"k": 1}, {"k": True}, {"k": 1.5})))
        got = await rig.texts(10, wait=1.0)
        # a repeat of the last value delivered (within the window) is dropped;
        # {"k": True} equals {"k": 1} for the hub
        assert got == [_expected(v) for v in (a, b, a, {"k": 1}, {"k": 1.5})]


async def test_same_map_in_another_key_order_is_a_repeat(
    http: aiohttp.ClientSession, path: str
) -> None:
    async with _rig(http) as rig:
        await rig.send(
            rig.frame({"a": 1, "b": 2}), rig.frame({"b": 2, "a": 1}), rig.frame({"a": 3})
        )
        assert await rig.texts(3, wait=1.0) == [_expected({"a": 1, "b": 2}), _expected({"a": 3})]


async def test_bad_payload_closes_the_device_alike(http: aiohttp.ClientSession, path: str) -> None:
    async with _rig(http) as rig:
        await rig.send(rig.frame({**SAMPLE, "ts": 1}), rig.frame({**SAMPLE, "ts": 2}))
        assert len(await rig.texts(2)) == 2
        await rig.send(rig.frame(None, raw=b"\xc2\x81a\x01"))  # map of 2, one entry
        async with asyncio.timeout(5):
            await rig.closed.wait()  # the server closed the device's connection
        assert rig.server.device("d0").link is None or rig.server.device("d0").link.closed


async def test_rate_limit_closes_the_device_alike(http: aiohttp.ClientSession, path: str) -> None:
    limits = ServerLimits(min_stream_interval=0.01, device_message_rate=50, device_message_burst=60)
    async with _rig(http, limits) as rig:
        with contextlib.suppress(ConnectionError):  # closed while it still sends
            await rig.send(*(rig.frame({**SAMPLE, "ts": i}) for i in range(200)), gap=0)
        async with asyncio.timeout(5):
            await rig.closed.wait()
        got = await rig.texts(200, wait=0.5)
        assert 10 <= len(got) < 200  # the burst went through, then the device was closed


async def test_a_second_subscriber_gets_every_frame_too(
    http: aiohttp.ClientSession, path: str
) -> None:
    async with _rig(http) as rig:
        await rig.send(rig.frame({**SAMPLE, "ts": 1}), rig.frame({**SAMPLE, "ts": 2}))
        assert len(await rig.texts(2)) == 2
        url = f"{rig.server.ws_url}/v3/users/alice/devices/d0/resources/s?interval=0"
        other = await http.ws_connect(url, headers={"Authorization": f"Bearer {rig.server.token}"})
        async with asyncio.timeout(5):  # the stream restarts for the new subscriber set
            while len(rig.stream_ids) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        payloads = [{**SAMPLE, "ts": t} for t in range(10, 20)]
        await rig.send(*(rig.frame(p) for p in payloads))
        mine = await rig.texts(10)
        theirs: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                while len(theirs) < 10:
                    theirs.append((await other.receive()).data)
        await other.close()
        assert mine[-5:] == [_expected(p) for p in payloads[-5:]]
        assert theirs[-5:] == mine[-5:]


async def test_a_subscriber_joining_gets_what_the_first_gets_at_once(
    http: aiohttp.ClientSession, path: str
) -> None:
    """From the moment a second subscriber joins, neither gets a sample the other does not.

    The restart of the device stream for the new subscriber set is held back, so
    samples keep coming on the old stream meanwhile (the hub drops those: that stream
    is being stopped); then both get every sample of the new one.
    """
    async with _rig(http) as rig:
        await rig.send(rig.frame({**SAMPLE, "ts": 1}), rig.frame({**SAMPLE, "ts": 2}))
        assert len(await rig.texts(2)) == 2
        assert len(rig.routes()) == (1 if path == "compiled" else 0)
        rig.answer.clear()  # the restart the new subscriber causes waits
        stream = rig.server.server.hub.stream("d0", "s")
        assert stream is not None
        url = f"{rig.server.ws_url}/v3/users/alice/devices/d0/resources/s?interval=0"
        other = await http.ws_connect(url, headers={"Authorization": f"Bearer {rig.server.token}"})
        async with asyncio.timeout(5):
            while len(stream.subscribers) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert rig.routes() == []  # no route while two subscribers share the stream

        async def theirs(count: int) -> list[str]:
            got: list[str] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.5):
                    while len(got) < count:
                        got.append((await other.receive()).data)
            return got

        held = [{**SAMPLE, "ts": t} for t in range(10, 15)]
        await rig.send(*(rig.frame(p) for p in held))  # on the old stream
        assert await rig.texts(5, wait=1.5) == await theirs(5)
        rig.answer.set()
        async with asyncio.timeout(5):
            while len(rig.stream_ids) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        payloads = [{**SAMPLE, "ts": t} for t in range(20, 25)]
        await rig.send(*(rig.frame(p) for p in payloads))
        mine = await rig.texts(5)
        assert mine == [_expected(p) for p in payloads]
        assert (await theirs(6))[-5:] == mine  # (after the echo, if it comes first)
        await other.close()


async def test_a_sample_right_after_a_subscriber_joins_reaches_both(
    http: aiohttp.ClientSession, path: str
) -> None:
    """In the same tick as the subscribe, before the stream restarts: both get it."""
    async with _rig(http) as rig:
        await rig.send(rig.frame({**SAMPLE, "ts": 1}), rig.frame({**SAMPLE, "ts": 2}))
        assert len(await rig.texts(2)) == 2
        got: list[Any] = []

        def deliver(resource: str, value: Any) -> None:
            got.append(value)

        joining = streams.Subscription("d0", "s", 0, deliver)
        rig.server.server.hub.subscribe(joining)
        sample = {**SAMPLE, "ts": 3}
        _session(rig.server).data_received(rig.frame(sample))  # as the transport would
        assert got == [sample]
        assert await rig.texts(1) == [_expected(sample)]
        rig.server.server.hub.unsubscribe(joining)


async def test_no_sample_after_the_subscriber_leaves(
    http: aiohttp.ClientSession, path: str
) -> None:
    """In the same tick as the unsubscribe, before the stream stops: nothing is sent."""
    async with _rig(http) as rig:
        await rig.send(rig.frame({**SAMPLE, "ts": 1}), rig.frame({**SAMPLE, "ts": 2}))
        assert len(await rig.texts(2)) == 2
        stream = rig.server.server.hub.stream("d0", "s")
        assert stream is not None
        rig.server.server.hub.unsubscribe(stream.subscribers[0])
        _session(rig.server).data_received(rig.frame({**SAMPLE, "ts": 3}))
        assert await rig.texts(1, wait=0.5) == []


async def test_a_device_that_hangs_up_after_routing_goes_offline(
    http: aiohttp.ClientSession, path: str
) -> None:
    """The connection's end still reaches the session through the compiled path's Front."""
    async with _rig(http) as rig:
        await rig.send(rig.frame({**SAMPLE, "ts": 1}), rig.frame({**SAMPLE, "ts": 2}))
        assert len(await rig.texts(2)) == 2
        session = _session(rig.server)
        protocol = session.transport._transport.get_protocol()
        assert type(protocol).__name__ == ("Front" if path == "compiled" else "ProtocolTransport")
        await rig.send(rig.frame({**SAMPLE, "ts": 3}), rig.frame({**SAMPLE, "ts": 4}))
        assert len(await rig.texts(2)) == 2
        assert session.transport.rx_bytes > 0
        rig.writer.close()
        await rig.server.wait_device_disconnected("d0")
        assert session.is_closed


async def test_frames_over_tls_are_the_same_both_ways(
    http: aiohttp.ClientSession, path: str
) -> None:
    """A TLS device connection: the Front sits before the TLS transport's protocol."""
    async with _rig(http, tls=True) as rig:
        await rig.send(*(rig.frame(p) for p in PAYLOADS))
        assert await rig.texts(len(PAYLOADS)) == [_expected(p) for p in PAYLOADS]
        protocol = _session(rig.server).transport._transport.get_protocol()
        assert type(protocol).__name__ == ("Front" if path == "compiled" else "ProtocolTransport")
        more = [{**SAMPLE, "ts": t} for t in range(10, 15)]
        await rig.send(*(rig.frame(p) for p in more))
        assert await rig.texts(5) == [_expected(p) for p in more]
        if path == "compiled":
            assert rig.routes()[0].taken >= 5


async def test_last_message_is_the_last_sample(http: aiohttp.ClientSession, path: str) -> None:
    async with _rig(http) as rig:
        payloads = [{**SAMPLE, "ts": t} for t in range(5)]
        await rig.send(*(rig.frame(p) for p in payloads))
        assert len(await rig.texts(5)) == 5
        session = _session(rig.server)
        handle = session._streams[rig.stream_id]
        assert handle.last_message is not None
        assert handle.last_message.fields[3] == payloads[-1]
        assert handle.last_message.stream_id == rig.stream_id
