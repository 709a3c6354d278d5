"""A raw IOTMP peer for attacks: exact bytes out, decoded messages in."""

from __future__ import annotations

import asyncio
import contextlib

from iotmp.protocol.codec import MessageDecoder, encode_message
from iotmp.protocol.message import Message, MessageType


class RawDevice:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = MessageDecoder()
        self.inbox: list[Message] = []

    @classmethod
    async def open(cls, port: int, source: str | None = None) -> RawDevice:
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local)
        return cls(reader, writer)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, message: Message) -> None:
        await self.write(encode_message(message))

    async def receive(self, timeout: float = 5.0) -> Message:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not self.inbox:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("closed by the server")
                self.inbox.extend(self.decoder.feed(data))
        return self.inbox.pop(0)

    async def closed_by_server(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Whether the server closes the connection within ``timeout`` (data is skipped)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    async def login(self, user: str, device: str, credential: str) -> None:
        """CONNECT, expect OK, answer the server's DESCRIBE with an empty API."""
        await self.send(
            Message.build(MessageType.CONNECT, stream_id=1, payload=[user, device, credential])
        )
        reply = await self.receive()
        assert reply.type == MessageType.OK, reply
        describe = await self.receive()
        assert describe.type == MessageType.DESCRIBE
        await self.send(Message.build(MessageType.OK, stream_id=describe.stream_id, payload={}))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
