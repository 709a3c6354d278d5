"""The device SDK: declare resources, connect to an IOTMP server, stream values.

Stands on :mod:`iotmp.protocol` only. A :class:`Device` keeps its connection
alive (reconnecting every ``reconnect_delay`` seconds, as the reference
clients do) and answers the server's requests for its resources; it also
calls the server's resources (properties, buckets, endpoints, other devices,
syncs, event subscriptions: :mod:`.server_calls`).
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
from .server_calls import (
    DEFAULT_SYNC_TIMEOUT,
    EventSubscription,
    ServerCallError,
    ServerCallLayout,
    server_call_fields,
)

__all__ = [
    "DEFAULT_RECONNECT_DELAY",
    "DEFAULT_SYNC_TIMEOUT",
    "Device",
    "EventSubscription",
    "Resource",
    "ResourceError",
    "ResourceKind",
    "ServerCallError",
    "ServerCallLayout",
    "TransportKind",
    "resource_path",
    "server_call_fields",
    "stream_interval_ms",
]
