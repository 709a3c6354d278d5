"""Child process of benchmarks/throughput.py: the publishers or the subscribers.

``--role pub``: N devices, each streaming the sensor sample (plus ``ts``, its send
time in µs of CLOCK_MONOTONIC, which is system-wide) on one resource/topic/channel.
``--role sub``: one subscriber per device. ``--system`` picks the wire:

* ``iotmp``: raw IOTMP over TCP (frames from :mod:`iotmp.protocol.codec`; the device
  answers CONNECT's DESCRIBE and START_STREAM itself), subscribers are aiohttp
  WebSockets on ``/v3/users/bench/devices/d{i}/resources/bench?interval=0``;
* ``mqtt``: raw MQTT 3.1.1 over TCP (QoS 0), topic ``bench/d{i}``;
* ``relay``: the relay's framing (type byte, varint length, the JSON body).

Same payload everywhere; the subscribers parse it with orjson to read ``ts``.
Commands on stdin (one JSON line each, one JSON line answered): ``stream`` (pub:
rate R per second over all devices, 0 = as fast as the sockets take it, for S
seconds), ``mark`` / ``report`` (sub: open / close the measuring window).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import struct
import sys
import time
from typing import Any

import aiohttp
import orjson
from _frames import frame_at

from iotmp.protocol.codec import MessageDecoder, encode_message
from iotmp.protocol.message import Message, MessageType

SAMPLE: dict[str, Any] = {"temperature": 23.5, "humidity": 60, "pressure": 1013, "label": "outdoor"}
CONNECT_CONCURRENCY = 25
HIGH_WATER = 16 * 1024  # bytes a publisher socket may hold before it is skipped (saturation)


def now_us() -> int:
    return time.monotonic_ns() // 1000


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _mqtt_str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _mqtt_packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def _mqtt_connect(client_id: str) -> bytes:
    # protocol "MQTT" level 4, clean session, keep-alive 0 (off: runs are short)
    return _mqtt_packet(0x10, _mqtt_str("MQTT") + b"\x04\x02\x00\x00" + _mqtt_str(client_id))


class Publisher:
    """One device: a TCP connection and a way to frame one sample."""

    def __init__(self, system: str, index: int) -> None:
        self.system = system
        self.index = index
        self.writer: asyncio.StreamWriter | None = None
        self.stream_id = 0
        self.topic = _mqtt_str(f"bench/d{index}")

    def frame(self) -> bytes:
        value = dict(SAMPLE, ts=now_us())
        if self.system == "iotmp":
            return encode_message(
                Message.build(MessageType.STREAM_DATA, stream_id=self.stream_id, payload=value)
            )
        body = orjson.dumps(value)
        if self.system == "mqtt":
            return _mqtt_packet(0x30, self.topic + body)
        return b"\x0a" + _varint(len(body)) + body


async def _iotmp_device(
    pub: Publisher, port: int, started: asyncio.Event, counter: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pub.writer = writer
    writer.write(
        encode_message(
            Message.build(
                MessageType.CONNECT, stream_id=1, payload=["bench", f"d{pub.index}", "pw"]
            )
        )
    )
    decoder = MessageDecoder()
    connected = False
    while data := await reader.read(65536):
        for msg in decoder.feed(data):
            kind = msg.type
            if kind == MessageType.OK and not connected:
                connected = True
            elif kind == MessageType.DESCRIBE:
                reply = Message.build(
                    MessageType.OK, stream_id=msg.stream_id, payload={"bench": {"fn": 3}}
                )
                writer.write(encode_message(reply))
            elif kind == MessageType.START_STREAM:
                pub.stream_id = msg.stream_id
                writer.write(encode_message(Message.build(MessageType.OK, stream_id=msg.stream_id)))
                counter[0] += 1
                if counter[0] >= counter[1]:
                    started.set()
            elif kind in (MessageType.STOP_STREAM, MessageType.RUN) and msg.stream_id:
                writer.write(encode_message(Message.build(MessageType.OK, stream_id=msg.stream_id)))


async def run_pub(args: argparse.Namespace, commands: asyncio.StreamReader) -> None:
    pubs = [Publisher(args.system, i) for i in range(args.devices)]
    started = asyncio.Event()
    counter = [0, args.devices]
    readers: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(pub: Publisher) -> None:
        async with gate:
            if args.system == "iotmp":
                readers.append(asyncio.create_task(_iotmp_device(pub, args.port, started, counter)))
                while pub.writer is None:  # noqa: ASYNC110 (set by the task just made)
                    await asyncio.sleep(0.005)
                return
            reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
            pub.writer = writer
            if args.system == "mqtt":
                writer.write(_mqtt_connect(f"pub{pub.index}"))
                await reader.readexactly(4)  # CONNACK
            else:
                writer.write(b"P" + pub.index.to_bytes(4, "big"))
            readers.append(asyncio.create_task(reader.read()))  # keep the reader drained

    await asyncio.gather(*(connect(p) for p in pubs))
    if args.system != "iotmp":
        started.set()
    _answer({"connected": len(pubs)})
    while line := await commands.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "wait_streams":
            await asyncio.wait_for(started.wait(), 60)
            _answer({"streams": counter[0]})
        elif cmd["cmd"] == "stream":
            sent = await _stream(pubs, float(cmd["rate"]), float(cmd["seconds"]))
            _answer({"sent": sent})


async def _stream(pubs: list[Publisher], rate: float, seconds: float) -> int:
    start = time.monotonic()
    end = start + seconds
    sent = 0
    turn = 0
    count = len(pubs)
    while (now := time.monotonic()) < end:
        if rate > 0:
            due = int(rate * (now - start)) - sent
            for _ in range(due):
                pub = pubs[turn]
                turn = (turn + 1) % count
                assert pub.writer is not None
                pub.writer.write(pub.frame())
                sent += 1
            await asyncio.sleep(0.002)
            continue
        wrote = 0
        for pub in pubs:
            assert pub.writer is not None
            if pub.writer.transport.get_write_buffer_size() < HIGH_WATER:
                pub.writer.write(pub.frame())
                wrote += 1
        sent += wrote
        await asyncio.sleep(0 if wrote else 0.001)
    return sent


class Window:
    """Deliveries and latencies (µs) between ``mark`` and ``report``."""

    def __init__(self) -> None:
        self.open = False
        self.count = 0
        self.total = 0
        self.latencies: list[int] = []

    def take(self, body: bytes) -> None:
        self.total += 1
        if self.open:
            self.count += 1
            self.latencies.append(now_us() - orjson.loads(body)["ts"])


async def _iotmp_subscriber(
    args: argparse.Namespace, index: int, session: Any, window: Window, ready: list[int]
) -> None:
    url = f"{args.url}/v3/users/bench/devices/d{index}/resources/bench?interval=0"
    headers = {"Authorization": f"Bearer {args.token}"}
    async with session.ws_connect(url, headers=headers, max_msg_size=0) as ws:
        ready[0] += 1
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = orjson.loads(msg.data)
                value = frame.get("payload", frame.get("out"))
                if isinstance(value, dict) and "ts" in value:
                    window.total += 1
                    if window.open:
                        window.count += 1
                        window.latencies.append(now_us() - value["ts"])


async def _tcp_subscriber(
    args: argparse.Namespace, index: int, window: Window, ready: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
    if args.system == "mqtt":
        writer.write(_mqtt_connect(f"sub{index}"))
        await reader.readexactly(4)  # CONNACK
        topic = _mqtt_str(f"bench/d{index}")
        writer.write(_mqtt_packet(0x82, b"\x00\x01" + topic + b"\x00"))
        await reader.readexactly(5)  # SUBACK
    else:
        writer.write(b"S" + index.to_bytes(4, "big"))
    ready[0] += 1
    buf = bytearray()
    while data := await reader.read(65536):
        buf += data
        pos, end = 0, len(buf)
        while (frame := frame_at(buf, pos, end)) is not None:
            start, pos = frame
            body = bytes(buf[start:pos])
            if args.system == "mqtt":
                body = body[2 + int.from_bytes(body[:2], "big") :]  # topic
            window.take(body)
        del buf[:pos]


async def run_sub(args: argparse.Namespace, commands: asyncio.StreamReader) -> None:
    window = Window()
    ready = [0]
    tasks: list[asyncio.Task[None]] = []
    session: Any = None
    if args.system == "iotmp":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(index: int) -> None:
        async with gate:
            before = ready[0]
            if args.system == "iotmp":
                tasks.append(
                    asyncio.create_task(_iotmp_subscriber(args, index, session, window, ready))
                )
            else:
                tasks.append(asyncio.create_task(_tcp_subscriber(args, index, window, ready)))
            while ready[0] == before:  # noqa: ASYNC110 (one connect at a time per slot)
                await asyncio.sleep(0.002)

    await asyncio.gather(*(connect(i) for i in range(args.devices)))
    _answer({"subscribed": ready[0]})
    try:
        await _serve_sub(commands, window)
    finally:
        if session is not None:
            await session.close()


async def _serve_sub(commands: asyncio.StreamReader, window: Window) -> None:
    while line := await commands.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "mark":
            window.count, window.latencies, window.open = 0, [], True
            _answer({"marked": True})
        elif cmd["cmd"] == "report":
            window.open = False
            lat = sorted(window.latencies)
            _answer(
                {
                    "count": window.count,
                    "total": window.total,
                    "p50_ms": _quantile(lat, 0.5),
                    "p99_ms": _quantile(lat, 0.99),
                    "max_ms": lat[-1] / 1000.0 if lat else float("nan"),
                }
            )
        elif cmd["cmd"] == "total":
            _answer({"total": window.total})


def _quantile(ordered: list[int], q: float) -> float:
    """The q-quantile of sorted µs values, in ms (NaN when empty)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def _answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    if args.role == "pub":
        await run_pub(args, commands)
    else:
        await run_sub(args, commands)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=("pub", "sub"), required=True)
    parser.add_argument("--system", choices=("iotmp", "mqtt", "relay"), required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--url", default="")
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop  # noqa: PLC0415  (clients are not measured: the cheaper the better)

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
