"""One connected device: its IOTMP session and the calls the server makes on it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from iotmp.protocol.errors import ConnectionClosedError, IotmpError
from iotmp.protocol.message import ABSENT, MessageType
from iotmp.protocol.session import Session, StreamHandle

_LOGGER = logging.getLogger(__name__)


def peer_host(peer: str) -> str:
    """``"1.2.3.4:5"`` -> ``"1.2.3.4"``, ``"[::1]:5"`` -> ``"::1"`` (else unchanged)."""
    if peer.startswith("["):
        end = peer.find("]")
        if end > 0:
            return peer[1:end]
    if peer.count(":") == 1:
        return peer.rsplit(":", 1)[0]
    return peer


class DeviceLink:
    """The server's handle on an authenticated device session.

    Every call is bounded by ``request_timeout`` and raises the protocol
    library's errors: :class:`RequestTimeoutError` (no answer),
    :class:`RemoteError` (the device answered ERROR) and
    :class:`ConnectionClosedError` (the device went away).
    """

    def __init__(
        self,
        device_id: str,
        session: Session,
        request_timeout: float,
        peer_address: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.session = session
        self.request_timeout = request_timeout
        self.peer_address = (
            peer_host(session.transport.peer) if peer_address is None else peer_address
        )
        self.transport_kind = session.transport.kind

    @property
    def closed(self) -> bool:
        """Whether the session ended (or is ending)."""
        return self.session.is_closed

    async def describe(self) -> Any:
        """DESCRIBE the whole device: ``{name: {"fn": n, ...}}``."""
        reply = await self.session.request(MessageType.DESCRIBE, timeout=self.request_timeout)
        return {} if reply.payload is ABSENT else reply.payload

    async def describe_resource(self, resource: str) -> Any:
        """DESCRIBE one resource: its current sample ``{"in"?, "out"?}``."""
        reply = await self.session.request(
            MessageType.DESCRIBE, resource=resource, timeout=self.request_timeout
        )
        return ABSENT if reply.payload is ABSENT else reply.payload

    async def run(self, resource: str, payload: Any = ABSENT) -> Any:
        """RUN a resource; returns the output, or ``ABSENT`` when the reply has none."""
        reply = await self.session.request(
            MessageType.RUN, resource=resource, payload=payload, timeout=self.request_timeout
        )
        return reply.payload

    async def start_stream(
        self, resource: str, interval_ms: int, on_data: Callable[[Any], Any]
    ) -> object:
        """START_STREAM (``{"interval": ms}``, or no PARAMETERS for push-only)."""
        return await self.session.start_stream(
            resource,
            interval_ms=interval_ms or None,
            on_data=on_data,
            timeout=self.request_timeout,
        )

    async def stop_stream(self, handle: object) -> None:
        """STOP_STREAM a stream opened by :meth:`start_stream`."""
        if isinstance(handle, StreamHandle) and not handle.closed and not self.closed:
            await handle.stop(timeout=self.request_timeout)

    async def close(self, reason: str) -> None:
        """Close the session (never raises)."""
        with contextlib.suppress(IotmpError, ConnectionClosedError):
            await self.session.close(reason)

    def __repr__(self) -> str:
        return f"<DeviceLink {self.device_id} {self.transport_kind} {self.peer_address}>"
