"""App WebSocket frames: order and completeness through direct writes, batches and back-pressure."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from server_helpers import WAIT, RawPeer

from iotmp.protocol.message import Message, MessageType
from iotmp.server.limits import ServerLimits
from iotmp.server.testing import TestDevice, TestServer, run_test_server
from iotmp.server.ws_frames import text_frame


class StreamingDevice:
    """A raw device with one output ``seq``; answers START/STOP_STREAM in the background."""

    def __init__(self, peer: RawPeer) -> None:
        self.peer = peer
        self.stream_id = 0
        self.starts = 0
        self._task = asyncio.get_running_loop().create_task(self._answer())

    @classmethod
    async def connect(cls, server: TestServer) -> StreamingDevice:
        peer = await RawPeer.open(server.tcp_port)
        await peer.send(
            Message.build(MessageType.CONNECT, stream_id=1, payload=["alice", "seq", "pw"])
        )
        assert (await peer.receive()).type == MessageType.OK
        describe = await peer.receive()
        assert describe.type == MessageType.DESCRIBE
        await peer.send(
            Message.build(MessageType.OK, stream_id=describe.stream_id, payload={"seq": {"fn": 3}})
        )
        await server.wait_device_connected("seq")
        return cls(peer)

    async def _answer(self) -> None:
        while True:
            msg = await self.peer.receive(limit=3600)
            if msg.type in (MessageType.START_STREAM, MessageType.STOP_STREAM):
                await self.peer.send(Message.build(MessageType.OK, stream_id=msg.stream_id))
                if msg.type == MessageType.START_STREAM:
                    self.stream_id = msg.stream_id
                    self.starts += 1

    async def started(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.starts < count:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the server has the OK

    async def send(self, values: list[Any]) -> None:
        for value in values:
            await self.peer.send(
                Message.build(MessageType.STREAM_DATA, stream_id=self.stream_id, payload=value)
            )

    async def close(self) -> None:
        self._task.cancel()
        await self.peer.close()


async def _receive(
    ws: aiohttp.ClientWebSocketResponse, count: int, *, pause_every: int = 0
) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(4 * WAIT):
        while len(got) < count:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            got.append(json.loads(msg.data)["payload"])
            if pause_every and len(got) % pause_every == 0:
                await asyncio.sleep(0.05)  # a slow reader: the server queues, then holds back
    return got


async def test_every_frame_in_order_fast_and_slow_reader(http: aiohttp.ClientSession) -> None:
    limits = ServerLimits(min_stream_interval=0.01, socket_queue_frames=8)
    async with run_test_server([TestDevice("seq", credential="pw")], limits=limits) as server:
        device = await StreamingDevice.connect(server)
        url = server.ws_url + "/v3/users/alice/devices/seq/resources/seq?interval=0"
        headers = {"Authorization": f"Bearer {server.token}"}
        async with http.ws_connect(url, headers=headers) as fast:
            await device.started(1)
            slow = await http.ws_connect(url, headers=headers)
            await device.started(2)
            # Frames long enough for the 16-bit length form, beside short ones.
            values: list[Any] = [
                i if i % 7 else {"n": i, "text": "x" * (300 + 40 * i)} for i in range(1, 1501)
            ]
            slow_got = asyncio.create_task(_receive(slow, len(values), pause_every=100))
            await asyncio.sleep(0.2)
            sender = asyncio.create_task(device.send(values))
            assert await _receive(fast, len(values)) == values
            assert await slow_got == values
            await sender
            await slow.close()
        await device.close()


async def test_frame_larger_than_64_kib(http: aiohttp.ClientSession) -> None:
    async with run_test_server([TestDevice("seq", credential="pw")]) as server:
        device = await StreamingDevice.connect(server)
        url = server.ws_url + "/v3/users/alice/devices/seq/resources/seq?interval=0"
        headers = {"Authorization": f"Bearer {server.token}"}
        async with http.ws_connect(url, headers=headers, max_msg_size=0) as ws:
            await device.started(1)
            big = "é" * 40_000  # 80,000 UTF-8 bytes: the 64-bit length form
            await device.send([big, 1])
            assert await _receive(ws, 2) == [big, 1]
        await device.close()


def test_text_frame_headers() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 125)[:2] == b"\x81\x7d"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 1023) == b"\x81\x7e\x03\xff" + b"x" * 1023
    assert text_frame(b"x" * 1024) == b"\x81\x7e\x04\x00" + b"x" * 1024
    assert text_frame(b"x" * 65535)[:4] == b"\x81\x7e\xff\xff"
    assert text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
