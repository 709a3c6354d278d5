"""Byte counters of a device connection (``rx_bytes``/``tx_bytes`` in the stats routes)."""

from __future__ import annotations

from iotmp.protocol.transport import Transport


def byte_counts(transport: Transport | None) -> tuple[int, int]:
    """``(rx_bytes, tx_bytes)`` of a device transport, ``(0, 0)`` without one.

    Every transport counts the IOTMP bytes as the session sees them (IOTMP messages,
    not TLS records or WebSocket frame headers), the way Thinger's stats count.
    """
    if transport is None:
        return 0, 0
    return transport.rx_bytes, transport.tx_bytes
