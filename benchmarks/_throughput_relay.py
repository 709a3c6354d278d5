"""Child process of benchmarks/throughput.py: a plain asyncio relay (the floor).

A client's first 5 bytes say who it is: ``P`` or ``S`` and a 4-byte big-endian
index. Publisher *i* then sends frames (a type byte, a varint length, the body)
and each frame's bytes go, unparsed beyond the framing, to subscriber *i*'s
socket in one write. Prints its port as one JSON line; stops on EOF of stdin.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from typing import cast

from _frames import frame_at


class Relay:
    """Publisher index -> subscriber transport."""

    def __init__(self) -> None:
        self.subscribers: dict[int, asyncio.Transport] = {}


class RelayProtocol(asyncio.Protocol):
    """One client connection; framing only."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.role = b""
        self.index = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if self.index < 0:
            if len(buf) < 5:
                return
            self.role, self.index = bytes(buf[:1]), int.from_bytes(buf[1:5], "big")
            del buf[:5]
            if self.role == b"S":
                assert self.transport is not None
                self.relay.subscribers[self.index] = self.transport
                return
        target = self.relay.subscribers.get(self.index)
        pos, end = 0, len(buf)
        while (frame := frame_at(buf, pos, end)) is not None:
            _start, stop = frame
            if target is not None:
                target.write(bytes(buf[pos:stop]))
            pos = stop
        del buf[:pos]


async def serve() -> None:
    relay = Relay()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RelayProtocol(relay), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    server.close()


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if os.environ.get("IOTMP_BENCH_UVLOOP") == "1":
        import uvloop  # noqa: PLC0415

        uvloop.run(serve())
    else:
        asyncio.run(serve())


if __name__ == "__main__":
    main()
