"""Limits a client can push against, with their defaults (``limits:`` in the config).

Every field can be set in the configuration file under ``limits:``; the
meaning of each is documented in ``docs/server.md`` ("Limits").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from iotmp.protocol.limits import (
    DEFAULT_HANDSHAKE_MAX_DEPTH,
    DEFAULT_HANDSHAKE_MAX_SIZE,
    DEFAULT_MAX_DEPTH,
    Limits,
)


class LimitsError(ValueError):
    """A ``limits`` entry is invalid; the message names it."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Sizes, depths, rates, timeouts and connection caps (see docs/server.md)."""

    # Devices, before authentication
    handshake_max_size: int = DEFAULT_HANDSHAKE_MAX_SIZE
    handshake_max_depth: int = DEFAULT_HANDSHAKE_MAX_DEPTH
    handshake_timeout: float = 10.0
    unauthenticated_per_address: int = 32
    unauthenticated_total: int = 256
    # Devices, after authentication
    device_message_rate: float = 1000.0
    device_message_burst: int = 10_000
    value_max_depth: int = DEFAULT_MAX_DEPTH
    # HTTP listener
    http_max_connections: int = 512
    http_idle_timeout: float = 30.0
    http_header_timeout: float = 10.0
    # Application WebSockets
    min_stream_interval: float = 1.0
    max_subscriptions_per_socket: int = 256
    socket_queue_frames: int = 1024
    socket_queue_max_frames: int = 100_000
    filter_max_length: int = 256
    # Logins
    login_max_wait: float = 32.0
    login_distributed_addresses: int = 3
    # Server-side resources (issue 11): properties, buckets, endpoints, alarms
    property_max_bytes: int = 65_536
    properties_per_device: int = 256
    device_properties_max_bytes: int = 1_048_576
    bucket_record_max_bytes: int = 16_384
    buckets_per_user: int = 256
    bucket_read_max_items: int = 10_000
    bucket_write_queue_rows: int = 10_000
    bucket_write_batch_rows: int = 1_000
    endpoints_per_user: int = 256
    endpoint_timeout: float = 10.0
    endpoint_response_max_bytes: int = 1_048_576
    endpoint_calls_in_flight: int = 16
    alarm_rules_per_user: int = 256
    event_subscriptions_per_device: int = 32
    event_subscription_queue: int = 256
    sync_locks_per_device: int = 32
    sync_lock_timeout: float = 30.0
    sync_lock_max_timeout: float = 300.0
    sync_max_slots: int = 1024

    @property
    def value_limits(self) -> Limits:
        """The decoder limits of the devices (what a written value must fit)."""
        return Limits(max_depth=self.value_max_depth)

    @property
    def handshake_limits(self) -> Limits:
        """Decoder limits for a device's first message."""
        return Limits(max_message_size=self.handshake_max_size, max_depth=self.handshake_max_depth)


_FIELDS = {f.name for f in fields(ServerLimits)}
_INT_FIELDS = {f.name for f in fields(ServerLimits) if f.type in ("int", int)}


def parse_limits(raw: Any) -> ServerLimits:
    """Build :class:`ServerLimits` from the config file's ``limits`` mapping."""
    if raw is None:
        return ServerLimits()
    if not isinstance(raw, Mapping):
        raise LimitsError("limits: expected a mapping")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise LimitsError(f"limits: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        integral = name in _INT_FIELDS
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LimitsError(f"limits.{name}: expected a number, got {value!r}")
        if integral and not isinstance(value, int):
            raise LimitsError(f"limits.{name}: expected an integer, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise LimitsError(f"limits.{name}: must be a positive number, got {value!r}")
        values[name] = value if integral else float(value)
    return replace(ServerLimits(), **values)


class ConnectionCounter:
    """Counts open connections per address with a per-address and a total cap."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self._by_address: dict[str, int] = {}
        self._count = 0

    @property
    def count(self) -> int:
        """Connections counted now."""
        return self._count

    def try_enter(self, address: str) -> bool:
        """Count one more connection from ``address``; False (not counted) when over a cap."""
        current = self._by_address.get(address, 0)
        if current >= self.per_address or self._count >= self.total:
            return False
        self._by_address[address] = current + 1
        self._count += 1
        return True

    def leave(self, address: str) -> None:
        """Forget one connection counted by :meth:`try_enter`."""
        current = self._by_address.get(address, 0)
        if current <= 0:
            return
        self._count -= 1
        if current == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = current - 1


__all__ = ["ConnectionCounter", "LimitsError", "ServerLimits", "parse_limits"]
