"""The device SDK: declare resources, connect to an IOTMP server, stream values.

Stands on :mod:`iotmp.protocol` only. A :class:`Device` keeps its connection
alive (reconnecting every ``reconnect_delay`` seconds, as the reference
clients do) and answers the server's requests for its resources.
"""

from __future__ import annotations

from .device import (
    DEFAULT_RECONNECT_DELAY,
    Device,
    Resource,
    ResourceError,
    ResourceKind,
    TransportKind,
    resource_path,
    stream_interval_ms,
)

__all__ = [
    "DEFAULT_RECONNECT_DELAY",
    "Device",
    "Resource",
    "ResourceError",
    "ResourceKind",
    "TransportKind",
    "resource_path",
    "stream_interval_ms",
]
