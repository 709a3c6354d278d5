"""Outgoing frames of one application WebSocket, with back-pressure instead of drops.

Frames are queued without limit up to ``high_water``; from there on
:meth:`Outbox.put` returns an event that is set once the queue has drained
below ``high_water`` again, and the producer (a device stream) waits for it.
A client that stays congested for ``stall_timeout`` seconds gets no more
back-pressure (one stalled client must not hold a shared device stream back
forever), and one with ``max_frames`` queued is given up: ``on_overflow`` is
called once (with one log line) and later frames are dropped.

With a ``direct`` writer, a frame that finds nothing queued and nothing being
sent is written at once, in the producer's call (no queue entry, no task switch);
the sender task then only serves a backlog, and writes it in batches
(``send_many``) when it can.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from iotmp.protocol.ratelimit import LogLimiter

_LOGGER = logging.getLogger(__name__)
_LOG_LIMITER: Final = LogLimiter()

STALL_TIMEOUT: Final = 5.0
BATCH_FRAMES: Final = 256
"""Most frames the sender hands to ``send_many`` at once."""


class Outbox:
    """A frame queue between producers and one sender coroutine (:meth:`run`)."""

    def __init__(
        self,
        name: str,
        *,
        high_water: int,
        max_frames: int,
        on_overflow: Callable[[], object],
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self.name = name
        self.high_water = high_water
        self.max_frames = max_frames
        self.stall_timeout = stall_timeout
        self._on_overflow = on_overflow
        self._frames: deque[bytes] = deque()  # UTF-8 JSON, one TEXT frame each
        self._queued = asyncio.Event()  # frames are waiting for the sender
        self._writable = asyncio.Event()
        self._writable.set()
        self._congested_since: float | None = None
        self._sending = False
        self.direct: Callable[[bytes], bool] | None = None
        """Writes a frame at once and returns True, or returns False (then it queues)."""
        self.overflowed = False

    def empty(self) -> bool:
        """Whether every queued frame has been handed to the sender."""
        return not self._frames

    def put(self, text: bytes) -> asyncio.Event | None:
        """Queue ``text`` (UTF-8); returns an event to wait for when the client is behind."""
        if self.overflowed:
            return None
        frames = self._frames
        if not frames and not self._sending and self.direct is not None and self.direct(text):
            return None
        frames.append(text)
        self._queued.set()
        size = len(frames)
        if size > self.max_frames:
            self.overflowed = True
            _LOG_LIMITER.log(
                _LOGGER,
                logging.WARNING,
                "slow client",
                "%s: client too slow (%d frames queued); closing",
                self.name,
                size,
            )
            self._on_overflow()
            return None
        if size < self.high_water:
            return None
        now = asyncio.get_running_loop().time()
        if self._congested_since is None:
            self._congested_since = now
        elif now - self._congested_since > self.stall_timeout:
            return None  # stalled: stop holding the device stream back
        self._writable.clear()
        return self._writable

    def _taken(self) -> None:
        if len(self._frames) < self.high_water:
            self._congested_since = None
            self._writable.set()

    async def run(
        self,
        send: Callable[[bytes], Awaitable[None]],
        send_many: Callable[[list[bytes]], Awaitable[None]] | None = None,
    ) -> None:
        """Send queued frames until sending raises (the socket is gone).

        ``send`` sends one frame; ``send_many``, when given, several in one write.
        """
        frames = self._frames
        try:
            while True:
                if not frames:
                    self._queued.clear()
                    await self._queued.wait()
                    continue
                self._sending = True
                try:
                    if send_many is not None and len(frames) > 1:
                        batch = [frames.popleft() for _ in range(min(len(frames), BATCH_FRAMES))]
                        self._taken()
                        await send_many(batch)
                    else:
                        text = frames.popleft()
                        self._taken()
                        await send(text)
                except (ConnectionError, RuntimeError) as exc:
                    _LOGGER.debug("%s: send failed: %r", self.name, exc)
                    return
                finally:
                    self._sending = False
        finally:
            self._writable.set()  # never leave a producer waiting on a dead socket


__all__ = ["BATCH_FRAMES", "STALL_TIMEOUT", "Outbox"]
