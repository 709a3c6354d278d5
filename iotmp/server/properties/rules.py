"""What a property may be: ids, request bodies, merge patches, sizes (pure functions).

Every check raises :class:`PropertyError` with the HTTP status a REST client
gets and a message a device gets in its ERROR ``{"error": message}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from iotmp.protocol.limits import Limits, value_problem

from ..feature import FeatureError
from ..http_api import jsonable
from ..storage.property_records import StoredProperty

PROPERTY_ID_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""Property ids: 1-64 of ``A-Z a-z 0-9 _ . -`` (Thinger's own ids, ``[A-Za-z0-9_-]{1,32}``, fit)."""
MAX_TEXT: Final = 255
PROPERTY_TYPES: Final = ("", "configuration")
"""Thinger's ``type`` enum."""
TEXT_KEYS: Final = ("name", "description", "type")
EXTRA_KEYS: Final = ("perm", "form")
"""Thinger's optional members kept as sent (objects)."""
READ_ONLY_KEYS: Final = ("created", "modified")
"""Members of a property object a client may send back unchanged; they are ignored."""
BODY_KEYS: Final = frozenset({"property", "value", *TEXT_KEYS, *EXTRA_KEYS, *READ_ONLY_KEYS})


class PropertyError(FeatureError):
    """A property request that cannot be served: ``status`` for REST, ``message`` for all."""


class PropertyNotFoundError(PropertyError, KeyError):
    """The device has no such property (404; a KeyError for in-process callers)."""

    def __init__(self, prop: str) -> None:
        super().__init__(404, "property not found")
        self.prop = prop

    def __str__(self) -> str:
        return self.message


MISSING: Final[Any] = object()
"""A member the request did not send (unlike JSON null)."""


@dataclass(frozen=True, slots=True)
class PropertyFields:
    """What a request sets: the value and the members it names (``MISSING`` when not named)."""

    value: Any = MISSING
    name: str | None = None
    description: str | None = None
    type: str | None = None
    extra: dict[str, Any] | None = None
    """``perm``/``form`` members sent (replace the stored ones when not None)."""


def check_id(prop: Any) -> str:
    """Return ``prop`` when it is a valid property id (400 otherwise)."""
    if not isinstance(prop, str) or not PROPERTY_ID_RE.match(prop):
        raise PropertyError(400, "property id must be 1-64 of A-Z a-z 0-9 _ . -")
    return prop


def to_json_value(value: Any) -> Any:
    """Make a value JSON: bytes (PSON binary) -> base64 text, NaN/inf -> null."""
    return jsonable(value)


def json_size(value: Any) -> int:
    """Bytes of the compact UTF-8 JSON of ``value`` (what the size limits count)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def check_value(value: Any, max_bytes: int, limits: Limits) -> int:
    """Check a (JSON) value against the size and decoder limits; return its size."""
    problem = value_problem(value, limits)
    if problem is not None:
        raise PropertyError(400, f"property value not accepted: {problem}")
    size = json_size(value)
    if size > max_bytes:
        raise PropertyError(413, f"property value larger than {max_bytes} bytes ({size})")
    return size


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise PropertyError(400, f"{key} must be a string of at most {MAX_TEXT} characters")
    if key == "type" and value not in PROPERTY_TYPES:
        raise PropertyError(400, 'type must be "" or "configuration"')
    return value


def parse_fields(body: Any, *, require_value: bool) -> PropertyFields:
    """Read a property object sent by a client (POST item, PUT body, PATCH fragment)."""
    if not isinstance(body, dict):
        raise PropertyError(400, "expected a JSON object (a property)")
    unknown = sorted(set(body) - BODY_KEYS)
    if unknown:
        raise PropertyError(400, f"unknown fields: {', '.join(unknown)}")
    if require_value and "value" not in body:
        raise PropertyError(400, 'missing "value"')
    extra: dict[str, Any] = {}
    for key in EXTRA_KEYS:
        member = body.get(key)
        if member is None:
            continue
        if not isinstance(member, dict):
            raise PropertyError(400, f"{key} must be an object")
        extra[key] = member
    return PropertyFields(
        value=body.get("value", MISSING),
        name=_text(body, "name"),
        description=_text(body, "description"),
        type=_text(body, "type"),
        extra=extra or None,
    )


def body_id(body: Mapping[str, Any], path_id: str | None) -> str:
    """Return the property id of a body: its ``property``, which must match the path's."""
    named = body.get("property")
    if path_id is None:
        if named is None:
            raise PropertyError(400, 'missing "property" (the property id)')
        return check_id(named)
    if named is not None and named != path_id:
        raise PropertyError(400, f"property {named!r} in the body does not match the path")
    return path_id


def parse_create(body: Any) -> list[tuple[str, PropertyFields]]:
    """Read a POST body: one property object or an array of them (ids unique)."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise PropertyError(400, "expected a property or a non-empty array of properties")
    result: list[tuple[str, PropertyFields]] = []
    seen: set[str] = set()
    for item in items:
        fields = parse_fields(item, require_value=True)
        prop = body_id(item, None)
        if prop in seen:
            raise PropertyError(400, f"property {prop!r} appears twice")
        seen.add(prop)
        result.append((prop, fields))
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch to ``target`` (neither is modified).

    Objects merge member by member, a null member deletes, anything else replaces.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, member in patch.items():
        if member is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), member)
    return result


def property_json(stored: StoredProperty) -> dict[str, Any]:
    """Return the API's property object (Thinger's shape plus ``created``/``modified``)."""
    record: dict[str, Any] = {
        "property": stored.property,
        "name": stored.name,
        "description": stored.description,
        "type": stored.type,
        "value": stored.value,
    }
    if stored.extra:
        record.update(stored.extra)
    record["created"] = stored.created
    record["modified"] = stored.modified
    return record


def same_value(a: Any, b: Any) -> bool:
    """Whether two JSON values are equal as JSON (``1`` is not ``true``; member order aside)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


__all__ = [
    "MISSING",
    "PROPERTY_ID_RE",
    "PropertyError",
    "PropertyFields",
    "PropertyNotFoundError",
    "body_id",
    "check_id",
    "check_value",
    "json_size",
    "merge_patch",
    "parse_create",
    "parse_fields",
    "property_json",
    "same_value",
    "to_json_value",
]
