"""The server's per-message Python work, warm, against a plain relay's, same process.

:mod:`throughput` measures whole-process CPU per message over real sockets; it is the
figure users see, but on this machine it swings by +-25 % between runs, and most of it
is the kernel's (read, write, epoll) and the loop's, the same for every system. This
script isolates what the server's own code costs for one sample, from the bytes a
device sent to the WebSocket frame queued for the subscriber, with caches warm:

* ``iotmp``: a server (:func:`iotmp.server.testing.run_test_server`) with one raw
  IOTMP device streaming one resource and one application WebSocket subscribed to it;
  the ``data_received`` of the device connection's protocol (what the event loop
  calls) is called with STREAM_DATA frames of the sensor sample (a new ``ts`` each,
  so none is dropped as a repeat);
* ``relay``: the relay of :mod:`_throughput_relay` (framing only, one write per frame)
  given the same JSON body in its framing, its subscriber a TCP socket.

Both systems are up at once; each round times ``--messages`` calls per system (the
order alternating), in batches of 20, the loop running between batches to write the
frames and let the subscriber read them (every frame must arrive), after one warm-up
round. Printed: per system min / median µs per message over the rounds, and the ratio
iotmp / relay per round.
It measures this checkout's code, or with ``PYTHONPATH=/other/checkout`` that one's
(to compare versions; the header names the code measured).

``--stages`` splits ours into the stages of a sample, by cutting the chain at one
boundary after another (the callee replaced by a no-op, in this process only) and
timing what is left: the decoder's ``feed``; the session's decode with its receive
budget; its dispatch to the stream's ``on_data``; the stream hub (shared stream,
subscriber rules); the socket's frame (dict and JSON); the outbox; the frame write.
Each stage is the difference of two medians, so a stage of under 0.1 µs is noise.
The cuts name attributes of the server's objects (``StreamHandle.on_data``,
``Subscription._deliver``, ``Outbox.put`` / ``direct``): a refactor that renames one
makes ``--stages`` fail loudly, not measure the wrong thing. The stages are the Python
path's: ``--stages`` turns the compiled sample path off in this process (a sample it
took would pass every cut untouched).

    python benchmarks/hot_path.py
    python benchmarks/hot_path.py --rounds 9 --messages 8000
    python benchmarks/hot_path.py --uvloop --stages
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(1, str(ROOT))  # this checkout, not an installed copy

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from _throughput_clients import SAMPLE  # noqa: E402
from _throughput_relay import Relay, RelayProtocol  # noqa: E402

import iotmp  # noqa: E402
from iotmp.protocol.codec import MessageDecoder, encode_message  # noqa: E402
from iotmp.protocol.message import Message, MessageType  # noqa: E402
from iotmp.protocol.speedups import active  # noqa: E402
from iotmp.protocol.varint import encode_varint  # noqa: E402
from iotmp.server import streams  # noqa: E402
from iotmp.server.limits import ServerLimits  # noqa: E402
from iotmp.server.testing import TestDevice, run_test_server  # noqa: E402

BATCH = 20


async def _time_calls(
    receive: Callable[[bytes], object],
    frames: list[bytes],
    delivered: Callable[[], int] | None,
) -> float:
    """µs per call of ``receive`` over ``frames``, with the loop run between batches.

    ``delivered`` counts the frames the subscriber got; every frame must arrive
    (None: the chain was cut before the write, nothing arrives).
    """
    start = delivered() if delivered is not None else 0
    total = 0
    for first in range(0, len(frames), BATCH):
        batch = frames[first : first + BATCH]
        began = time.perf_counter_ns()
        for frame in batch:
            receive(frame)
        total += time.perf_counter_ns() - began
        await asyncio.sleep(0.0005)
    if delivered is not None:
        async with asyncio.timeout(10):
            while delivered() - start < len(frames):  # noqa: ASYNC110 -- polls a counter
                await asyncio.sleep(0.005)
    return total / len(frames) / 1000


async def _device(port: int, started: asyncio.Future[int]) -> None:
    """A raw IOTMP device: CONNECT, answer DESCRIBE and START_STREAM, then idle."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        encode_message(
            Message.build(MessageType.CONNECT, stream_id=1, payload=["bench", "d0", "pw"])
        )
    )
    decoder = MessageDecoder()
    while data := await reader.read(65536):
        for msg in decoder.feed(data):
            if msg.type == MessageType.DESCRIBE:
                reply = Message.build(
                    MessageType.OK, stream_id=msg.stream_id, payload={"bench": {"fn": 3}}
                )
                writer.write(encode_message(reply))
            elif msg.type in (MessageType.START_STREAM, MessageType.STOP_STREAM):
                writer.write(encode_message(Message.build(MessageType.OK, stream_id=msg.stream_id)))
                if msg.type == MessageType.START_STREAM and not started.done():
                    started.set_result(msg.stream_id)


RoundRunner = Callable[[int], Awaitable[float]]
"""Runs round ``n`` (fresh ``ts`` values) and returns µs per message."""


class Ours:
    """The running server's pieces that ``--stages`` cuts the chain at."""

    def __init__(self, session: Any, subscription: Any, outbox: Any) -> None:
        self.session = session
        self.handle = next(iter(session._streams.values()))  # the one device stream
        self.subscription = subscription
        self.outbox = outbox
        self.frames: Callable[[int], list[bytes]] = lambda rnd: []
        self.timed: Callable[[Callable[[bytes], object], list[bytes], bool], Awaitable[float]]


@contextlib.asynccontextmanager
async def iotmp_system(messages: int, want: list[Ours] | None = None) -> AsyncIterator[RoundRunner]:
    limits = ServerLimits(
        min_stream_interval=0.01, device_message_rate=1e9, device_message_burst=10**9
    )
    fleet = [TestDevice("d0", credential="pw")]
    async with (
        run_test_server(fleet, user="bench", limits=limits, keep_alive=600) as server,
        aiohttp.ClientSession() as http,
    ):
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        device = asyncio.create_task(_device(server.tcp_port, started))
        await server.wait_device_connected("d0")
        url = f"{server.ws_url}/v3/users/bench/devices/d0/resources/bench?interval=0"
        ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {server.token}"})
        stream_id = await asyncio.wait_for(started, 10)
        link = server.device("d0").link
        assert link is not None
        session = link.session
        got = [0]

        async def read() -> None:
            async for msg in ws:
                orjson.loads(msg.data)
                got[0] += 1

        def frames(rnd: int) -> list[bytes]:
            return [
                encode_message(
                    Message.build(
                        MessageType.STREAM_DATA,
                        stream_id=stream_id,
                        payload=dict(SAMPLE, ts=rnd * messages + i),
                    )
                )
                for i in range(messages)
            ]

        async def run_round(rnd: int) -> float:
            # What the event loop calls: the connection's protocol (the compiled path's
            # Front once a stream is routed, else the session's ProtocolTransport).
            protocol = session.transport._transport.get_protocol()
            return await _time_calls(protocol.data_received, frames(rnd), lambda: got[0])

        async def timed(
            receive: Callable[[bytes], object], batch: list[bytes], delivered: bool
        ) -> float:
            return await _time_calls(receive, batch, (lambda: got[0]) if delivered else None)

        reader = asyncio.create_task(read())
        try:
            if want is not None:
                stream = server.server.hub.stream("d0", "bench")
                assert stream is not None and len(stream.subscribers) == 1
                subscription = stream.subscribers[0]
                socket: Any = cast("Any", subscription._deliver).__self__
                want.append(Ours(session, subscription, socket.outbox))
                want[0].frames = frames
                want[0].timed = timed
            yield run_round
        finally:
            reader.cancel()
            device.cancel()
            await ws.close()


@contextlib.asynccontextmanager
async def relay_system(messages: int) -> AsyncIterator[RoundRunner]:
    loop = asyncio.get_running_loop()
    relay = Relay()
    protocols: list[RelayProtocol] = []

    def accept() -> RelayProtocol:
        protocols.append(RelayProtocol(relay))
        return protocols[-1]

    server = await loop.create_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sub_reader, sub_writer = await asyncio.open_connection("127.0.0.1", port)
    sub_writer.write(b"S" + (0).to_bytes(4, "big"))
    _pub_reader, pub_writer = await asyncio.open_connection("127.0.0.1", port)
    pub_writer.write(b"P" + (0).to_bytes(4, "big"))
    await asyncio.sleep(0.1)
    publisher = next(p for p in protocols if p.role == b"P")  # the server side of ours
    got = [0]
    size = [0]
    frame_size = [1]

    async def read() -> None:
        while data := await sub_reader.read(65536):
            size[0] += len(data)
            got[0] = size[0] // frame_size[0]

    async def run_round(rnd: int) -> float:
        frames = []
        for i in range(messages):
            body = orjson.dumps(
                {
                    "resource": "bench",
                    "signal": "data",
                    "payload": dict(SAMPLE, ts=rnd * messages + i),
                }
            )
            frames.append(b"\x0a" + encode_varint(len(body)) + body)
        # Equal-length frames (ts of one width) let the reader count frames by bytes.
        frames = [f for f in frames if len(f) == len(frames[-1])]
        frame_size[0] = len(frames[-1])
        size[0] = got[0] = 0
        return await _time_calls(publisher.data_received, frames, lambda: got[0])

    reader = asyncio.create_task(read())
    try:
        yield run_round
    finally:
        reader.cancel()
        sub_writer.close()
        pub_writer.close()
        server.close()


async def measure(rounds: int, messages: int) -> tuple[list[float], list[float]]:
    """Both systems up at once; per round relay and iotmp, the order alternating."""
    ours: list[float] = []
    relay: list[float] = []
    async with iotmp_system(messages) as run_ours, relay_system(messages) as run_relay:
        await run_ours(rounds)  # warm-up (caches, the stream's first sample: the echo)
        await run_relay(rounds)
        for rnd in range(rounds):
            if rnd % 2:
                ours.append(await run_ours(rnd))
                relay.append(await run_relay(rnd))
            else:
                relay.append(await run_relay(rnd))
                ours.append(await run_ours(rnd))
    return ours, relay


STAGES = (
    "decoder feed",
    "decode: budget, checks",
    "session: dispatch to on_data",
    "stream hub: subscriber rules",
    "socket: frame dict, JSON",
    "outbox",
    "frame write",
)


async def _cut_rounds(ours: Ours, rnd: int) -> list[float]:
    """One round of each cut, shortest chain first: µs per sample up to each boundary."""
    session, handle, sub, outbox = ours.session, ours.handle, ours.subscription, ours.outbox
    frames = ours.frames(rnd)
    decoder = MessageDecoder(session._decoder.limits)
    on_data, deliver, put, direct = handle.on_data, sub._deliver, outbox.put, outbox.direct
    if direct is None:
        raise SystemExit("--stages needs the direct frame writer (no compression)")
    cuts: list[float] = [
        await ours.timed(decoder.feed, frames, False),
        await ours.timed(session._decode, ours.frames(rnd), False),
    ]
    try:
        handle.on_data = lambda value: None
        cuts.append(await ours.timed(session.data_received, ours.frames(rnd), False))
        handle.on_data = on_data
        sub._deliver = lambda resource, value: None
        cuts.append(await ours.timed(session.data_received, ours.frames(rnd), False))
        sub._deliver = deliver
        outbox.put = lambda text: None
        cuts.append(await ours.timed(session.data_received, ours.frames(rnd), False))
        outbox.put = put
        outbox.direct = lambda text: True
        cuts.append(await ours.timed(session.data_received, ours.frames(rnd), False))
        outbox.direct = direct
    finally:
        handle.on_data, sub._deliver, outbox.put, outbox.direct = on_data, deliver, put, direct
    cuts.append(await ours.timed(session.data_received, ours.frames(rnd), True))
    return cuts


async def measure_stages(rounds: int, messages: int) -> list[list[float]]:
    """Per round, µs per sample up to each boundary (see the module docstring)."""
    want: list[Ours] = []
    async with iotmp_system(messages, want) as run_ours:
        await run_ours(rounds)  # warm-up, and the stream echo
        return [await _cut_rounds(want[0], rounds + 1 + rnd) for rnd in range(rounds)]


def print_stages(rows: list[list[float]]) -> None:
    medians = [statistics.median(col) for col in zip(*rows, strict=True)]
    print("stage                            µs/sample (median)  cumulative")
    previous = 0.0
    for name, cumulative in zip(STAGES, medians, strict=True):
        print(f"{name:32s} {cumulative - previous:8.2f}          {cumulative:8.2f}")
        previous = cumulative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--stages", action="store_true", help="split ours into its stages")
    args = parser.parse_args()
    run: Callable[[Any], Any] = asyncio.run
    if args.uvloop:
        import uvloop  # noqa: PLC0415

        run = uvloop.run
    header = (
        f"# rounds={args.rounds} messages={args.messages} uvloop={args.uvloop} "
        f"codec={active()} python={sys.version.split()[0]} "
        f"code={Path(iotmp.__file__).parents[1]}"
    )
    if args.stages:
        streams._SamplePath = None  # the Python path's stages (see the module docstring)
        rows = run(measure_stages(args.rounds, args.messages))
        print(header + " sample_path=off")
        print_stages(rows)
        return
    ours, relay = run(measure(args.rounds, args.messages))
    ratios = [o / r for o, r in zip(ours, relay, strict=True)]
    print(header)
    print("system  µs/msg min / median")
    print(f"iotmp   {min(ours):.2f} / {statistics.median(ours):.2f}")
    print(f"relay   {min(relay):.2f} / {statistics.median(relay):.2f}")
    print(f"iotmp / relay  {min(ratios):.2f} / {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
