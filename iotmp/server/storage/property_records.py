"""Plain records of device properties (no SQLAlchemy: the feature imports these eagerly)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredProperty:
    """One row of ``device_properties``."""

    device: str
    property: str
    name: str
    description: str
    type: str
    value: Any
    size: int
    """Bytes of the value's compact JSON."""
    extra: dict[str, Any] | None
    created: int
    modified: int


@dataclass(frozen=True, slots=True)
class DeviceTotals:
    """How many properties a device has and how many bytes their values take."""

    count: int
    size: int


Change = Callable[[StoredProperty | None], StoredProperty]
"""Given the current row (None when there is none), return the new one (or raise)."""

QuotaCheck = Callable[[DeviceTotals, DeviceTotals], None]
"""Called with the device's totals before and after a write (raise to refuse it)."""


class PropertyConflictError(Exception):
    """The write collided with another writer or the device row is missing; retry."""


__all__ = ["Change", "DeviceTotals", "PropertyConflictError", "QuotaCheck", "StoredProperty"]
