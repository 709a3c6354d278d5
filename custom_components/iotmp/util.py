"""Small helpers shared by the platforms."""

from __future__ import annotations

from enum import StrEnum


def enum_or_none[E: StrEnum](enum: type[E], value: str | None) -> E | None:
    """``enum(value)``, or ``None`` when value is missing or not a member."""
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        return None
