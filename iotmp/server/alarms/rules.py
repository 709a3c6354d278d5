"""An alarm rule's parts: checking them, reading the watched value, the comparison.

Pure functions, no I/O. A rule is ``{rule, name, description, enabled,
severity, source, condition, endpoint}`` where

* ``source`` is one of
  ``{"type": "device_resource", "device", "resource", "interval"?, "field"?}``,
  ``{"type": "device_property", "device", "property", "field"?}``,
  ``{"type": "bucket", "bucket", "field"?}``; ``field`` is a dotted path into
  the value (``"celsius"``, ``"limits.max"``, ``"items.0"``);
* ``condition`` is ``{"operator": ">"|">="|"<"|"<="|"=="|"!=", "threshold": v,
  "duration": seconds}`` (duration 0: at once).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from iotmp.protocol.message import ABSENT

RULE_ID_RE: Final = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
_NAME_RE: Final = re.compile(r"^[^\x00-\x1f]{1,255}$")
SOURCE_TYPES: Final = ("device_resource", "device_property", "bucket")
OPERATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
DEFAULT_INTERVAL: Final = 10.0
MAX_INTERVAL: Final = 86_400.0
MAX_DURATION: Final = 7 * 86_400.0
_SOURCE_KEYS: Final = {
    "device_resource": ({"device", "resource"}, {"interval", "field"}),
    "device_property": ({"device", "property"}, {"field"}),
    "bucket": ({"bucket"}, {"field"}),
}


class RuleError(ValueError):
    """A rule is unacceptable; ``str(exc)`` says why."""


def check_rule_id(value: Any) -> str:
    """Return ``value`` if it is a rule id (1-32 of A-Z a-z 0-9 _ -)."""
    if not isinstance(value, str) or not RULE_ID_RE.match(value):
        raise RuleError("rule must be an id (1-32 of A-Z a-z 0-9 _ -)")
    return value


def _number(value: Any, what: str, low: float, high: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise RuleError(f"{what} must be a number of seconds from {low:g} to {high:g}")
    return float(value)


def parse_source(raw: Any) -> dict[str, Any]:
    """Check a rule's ``source`` and return its stored form."""
    if not isinstance(raw, Mapping) or raw.get("type") not in SOURCE_TYPES:
        raise RuleError(f"source must be an object with type {' | '.join(SOURCE_TYPES)}")
    kind = str(raw["type"])
    required, optional = _SOURCE_KEYS[kind]
    unknown = sorted(set(raw) - required - optional - {"type"})
    if unknown:
        raise RuleError(f"source ({kind}): unknown fields {', '.join(unknown)}")
    source: dict[str, Any] = {"type": kind}
    for key in sorted(required):
        value = raw.get(key)
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise RuleError(f"source.{key} is required (a text of 1 to 255 characters)")
        source[key] = value
    field = raw.get("field")
    if field is not None:
        if not isinstance(field, str) or not _NAME_RE.match(field):
            raise RuleError("source.field must be a dotted path (a text of 1 to 255 characters)")
        source["field"] = field
    if kind == "device_resource":
        source["interval"] = _number(
            raw.get("interval", DEFAULT_INTERVAL), "source.interval", 0.001, MAX_INTERVAL
        )
    return source


def parse_condition(raw: Any) -> dict[str, Any]:
    """Check a rule's ``condition`` and return its stored form."""
    if not isinstance(raw, Mapping):
        raise RuleError("condition must be an object {operator, threshold, duration}")
    unknown = sorted(set(raw) - {"operator", "threshold", "duration"})
    if unknown:
        raise RuleError(f"condition: unknown fields {', '.join(unknown)}")
    op = raw.get("operator")
    if op not in OPERATORS:
        raise RuleError(f"condition.operator must be one of {' '.join(OPERATORS)}")
    if "threshold" not in raw:
        raise RuleError("condition.threshold is required")
    threshold = raw["threshold"]
    if op not in ("==", "!=") and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
    ):
        raise RuleError(f"condition.threshold must be a number for {op}")
    duration = _number(raw.get("duration", 0), "condition.duration", 0, MAX_DURATION)
    return {"operator": op, "threshold": threshold, "duration": duration}


def field_value(value: Any, path: str | None) -> Any:
    """Return the part of ``value`` at the dotted ``path`` (``ABSENT`` when missing)."""
    if path is None:
        return value
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return ABSENT
    return value


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def holds(condition: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` meets the condition (a non-number never meets ``>`` and co)."""
    op = condition["operator"]
    threshold = condition["threshold"]
    if value is ABSENT:
        return False
    if op in ("==", "!="):
        return OPERATORS[op](value, threshold)
    if not _numeric(value) or (isinstance(value, float) and math.isnan(value)):
        return False
    return OPERATORS[op](value, threshold)


__all__ = [
    "OPERATORS",
    "RULE_ID_RE",
    "SOURCE_TYPES",
    "RuleError",
    "check_rule_id",
    "field_value",
    "holds",
    "parse_condition",
    "parse_source",
]
