"""Helpers for the reference vectors in tests/data/vectors (JSON tags, exact comparison)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

VECTOR_DIR = Path(__file__).resolve().parents[1] / "data" / "vectors"

_INT64_MIN_F = -(2.0**63)
_INT64_END_F = 2.0**63


def load(name: str) -> list[dict[str, Any]]:
    """Load one vector file (``pson.json`` or ``frames.json``)."""
    with (VECTOR_DIR / name).open(encoding="utf-8") as fh:
        data: list[dict[str, Any]] = json.load(fh)
    return data


def from_json(value: Any) -> Any:
    """Turn the tagged JSON form (``$bytes`` / ``$float``) into Python values."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        if set(value) == {"$float"}:
            return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[value["$float"]]
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    """Exact equality: types must match (1 != 1.0, True != 1), NaN == NaN, -0.0 != 0.0.

    Dicts must also have the same key order.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _f32(d: float) -> float | None:
    try:
        return float(struct.unpack("<f", struct.pack("<f", d))[0])
    except OverflowError:
        return None


def shortest_f32(x: float) -> float:
    """The shortest decimal that reads back as float32 ``x`` (by definition: try 1..9 digits)."""
    if math.isnan(x) or math.isinf(x):
        return x
    for digits in range(1, 10):
        r = float(f"{x:.{digits}g}")
        if _f32(r) == x:
            return r
    raise AssertionError(f"{x!r} is not a float32")


def expect_new(value: Any) -> Any:
    """What new PSON gives back for ``value``: spec 5.2 (whole doubles within int64 -> int;
    float32 when exact) and a float32 decodes as its shortest decimal (21.6f -> 21.6).
    """
    if isinstance(value, float):
        if _INT64_MIN_F <= value < _INT64_END_F and value.is_integer():
            return int(value)
        if _f32(value) == value or math.isinf(value):
            return shortest_f32(value)
        return value
    if isinstance(value, (list, tuple)):
        return [expect_new(v) for v in value]
    if isinstance(value, dict):
        return {k: expect_new(v) for k, v in value.items()}
    return value


def expect_legacy(value: Any) -> Any:
    """What legacy PSON gives back (spec 6.2: lossy float32 demotion within 1e-5)."""
    if isinstance(value, float):
        if _INT64_MIN_F <= value < _INT64_END_F and value.is_integer():
            return int(value)
        f = _f32(value)
        if f is not None and abs(value - f) <= 0.00001:
            return shortest_f32(f)
        return value
    if isinstance(value, (list, tuple)):
        return [expect_legacy(v) for v in value]
    if isinstance(value, dict):
        return {k: expect_legacy(v) for k, v in value.items()}
    return value


def has_short_f32(value: Any) -> bool:
    """Whether ``value`` holds a double sent as float32 that decodes as a different
    (shorter) decimal, e.g. 21.600000381469727 -> 21.6, which re-encodes as float64."""
    if isinstance(value, float):
        return _f32(value) == value and shortest_f32(value) != value
    if isinstance(value, dict):
        return any(has_short_f32(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_short_f32(v) for v in value)
    return False
