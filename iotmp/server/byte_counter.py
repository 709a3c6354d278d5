"""Byte counters of a device connection (``rx_bytes``/``tx_bytes`` in the stats routes)."""

from __future__ import annotations

from iotmp.protocol.transport import Transport


class CountingTransport(Transport):
    """Wraps a device transport and counts the IOTMP bytes read and written.

    Counts payload bytes as the session sees them (IOTMP messages, not TLS
    records or WebSocket frame headers), the way Thinger's stats count.
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.rx_bytes = 0
        self.tx_bytes = 0

    @property
    def peer(self) -> str:
        """The wrapped transport's peer."""
        return self.inner.peer

    @property
    def is_closing(self) -> bool:
        """Whether the wrapped transport is closing."""
        return self.inner.is_closing

    async def read(self) -> bytes:
        """Read (and count) the next chunk."""
        data = await self.inner.read()
        self.rx_bytes += len(data)
        return data

    async def write(self, data: bytes) -> None:
        """Write (and count) ``data``."""
        await self.inner.write(data)
        self.tx_bytes += len(data)

    async def close(self) -> None:
        """Close the wrapped transport."""
        await self.inner.close()


def byte_counts(transport: Transport | None) -> tuple[int, int]:
    """``(rx_bytes, tx_bytes)`` of a counted transport, ``(0, 0)`` otherwise."""
    if isinstance(transport, CountingTransport):
        return transport.rx_bytes, transport.tx_bytes
    return 0, 0
