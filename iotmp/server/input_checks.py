"""Checks of client-supplied values that the REST layer turns into 400 answers.

Each function returns the cleaned value or raises :class:`InputError` with a
message meant for the client.
"""

from __future__ import annotations

import math
from typing import Any, Final

from iotmp.protocol.limits import Limits, value_problem

MAX_TOKEN_LIFETIME: Final = 10 * 365 * 24 * 3600
"""Longest ``expires_in`` a token may ask for (seconds)."""


class InputError(ValueError):
    """A client value is unacceptable; ``str(exc)`` tells the client why."""


def expires_in(value: Any) -> float | None:
    """Check a token lifetime in seconds: None (no expiry) or a finite number in 1 .. 10 years."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError("expires_in must be a number of seconds")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError("expires_in must be a finite number of seconds")
    if not 1 <= value <= MAX_TOKEN_LIFETIME:
        raise InputError(f"expires_in must be between 1 and {MAX_TOKEN_LIFETIME} seconds")
    return float(value)


def device_value(value: Any, limits: Limits) -> Any:
    """Check a value to send to a device: refused when the device's decoder would refuse it."""
    problem = value_problem(value, limits)
    if problem is not None:
        raise InputError(f"value not accepted by the device protocol: {problem}")
    return value


__all__ = ["MAX_TOKEN_LIFETIME", "InputError", "device_value", "expires_in"]
