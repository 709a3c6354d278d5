"""Write server-to-client WebSocket TEXT frames straight to the connection.

aiohttp's ``send_str`` is a coroutine per frame, and the outbox behind it needs a
sender task switch per frame. For the common frame (uncompressed, unfragmented, the
socket not congested) that is more work than the frame: an unmasked server frame is
a 2-10 byte header and the UTF-8 text, written with one ``transport.write``. This
module does that, and writes a backlog of frames as ONE write.

It reaches into the response's writer for its transport and protocol
(``ws._writer.transport`` / ``.protocol._drain_helper``), the same in aiohttp 3.11
to 3.14; where they are missing, where permessage-deflate was negotiated or once the
socket is closing, :func:`frame_writer` returns None and the caller keeps using
``send_str`` (same frames, one at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, cast

from aiohttp import web

_FIN_TEXT: Final = 0x81
DIRECT_WRITE_LIMIT: Final = 64 * 1024
"""Bytes the transport may hold already and still take a frame at once (else it queues)."""


def _header(size: int) -> bytes:
    """Return the header of an unmasked FIN TEXT frame of ``size`` payload bytes."""
    if size < 126:
        return bytes((_FIN_TEXT, size))
    if size < 65536:
        return bytes((_FIN_TEXT, 126)) + size.to_bytes(2, "big")
    return bytes((_FIN_TEXT, 127)) + size.to_bytes(8, "big")


_HEADERS: Final = tuple(_header(size) for size in range(1024))
"""Headers of the frames of most samples, made once (building one costs more than the
frame's concatenation: a sample's frame is just over 125 bytes, the 4-byte header's)."""


def text_frame(data: bytes) -> bytes:
    """One unmasked FIN TEXT frame carrying ``data``."""
    size = len(data)
    return (_HEADERS[size] if size < 1024 else _header(size)) + data


class FrameWriter:
    """Direct frame writes on one prepared :class:`aiohttp.web.WebSocketResponse`."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        drain: Callable[[], Awaitable[None]],
    ) -> None:
        self.ws = ws
        self.transport = transport
        self._drain = drain

    def usable(self) -> bool:
        """Whether frames may go straight to the transport now."""
        return not self.ws.closed and not self.transport.is_closing()

    def try_write(self, text: bytes) -> bool:
        """Write one frame (UTF-8 ``text``) now if the connection takes it without waiting."""
        transport = self.transport
        if (
            self.ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return False
        transport.write(text_frame(text))
        return True

    async def write_many(self, texts: Iterable[bytes]) -> None:
        """Write frames in one go, then wait while the connection is congested."""
        if not self.usable():
            raise ConnectionResetError("websocket closing")
        self.transport.write(b"".join([text_frame(t) for t in texts]))
        if self.transport.get_write_buffer_size():
            await self._drain()


def frame_writer(ws: web.WebSocketResponse) -> FrameWriter | None:
    """Return a :class:`FrameWriter` for a prepared socket, or None where ``send_str`` must do."""
    writer: Any = getattr(ws, "_writer", None)
    transport = getattr(writer, "transport", None)
    drain = getattr(getattr(writer, "protocol", None), "_drain_helper", None)
    # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
    needed = ("write", "is_closing", "get_write_buffer_size")
    if ws.compress or not all(callable(getattr(transport, n, None)) for n in needed):
        return None
    if not callable(drain):
        return None
    return FrameWriter(ws, cast("asyncio.Transport", transport), drain)


__all__ = ["DIRECT_WRITE_LIMIT", "FrameWriter", "frame_writer", "text_frame"]
