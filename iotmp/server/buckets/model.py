"""Bucket objects in Thinger's shape, and the checks of what clients send (pure functions).

A bucket as the API shows it (Thinger's OpenAPI ``Bucket_ReadConfig``)::

    {"bucket": "id", "name": "...", "description": "...", "enabled": true,
     "config": {"source": "api" | "write" | "device" | "mqtt", ...},
     "retention": {"period": 30, "unit": "days"},     # only when set
     "created": ms, "modified": ms}

``config`` for a device-resource bucket: ``{"source": "device", "device": id,
"resource": name, "update": "interval", "interval": seconds}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from ..storage.buckets import StoredBucket

ID_RE: Final = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
SOURCES: Final = ("api", "write", "device", "mqtt")
UPDATES: Final = ("interval", "events", "none")
RETENTION_UNITS_MS: Final = {
    "hours": 3_600_000,
    "days": 86_400_000,
    "weeks": 7 * 86_400_000,
    # calendar lengths vary; retention uses 30- and 365-day approximations
    "months": 30 * 86_400_000,
    "years": 365 * 86_400_000,
}
CREATE_KEYS: Final = frozenset(
    {
        "bucket",
        "name",
        "description",
        "enabled",
        "config",
        "retention",
        "backend",
        "asset_group",
        "asset_type",
        "product",
    }
)
UPDATE_KEYS: Final = CREATE_KEYS - {"bucket"}
CONFIG_KEYS: Final = frozenset(
    {"source", "device", "resource", "update", "interval", "tags", "user", "topic"}
)
MAX_TEXT: Final = 255


class BucketInputError(ValueError):
    """A bucket body is invalid (answered 400 with the message)."""


def check_id(value: Any, what: str = "bucket") -> str:
    """Return ``value`` if it is a valid id (``[a-zA-Z0-9_-]{1,32}``)."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise BucketInputError(f"invalid {what} id: {value!r}")
    return value


def _text(body: Mapping[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise BucketInputError(f"{key}: expected a string of at most {MAX_TEXT} characters")
    return value


def parse_config(raw: Any) -> dict[str, Any]:
    """Check a bucket ``config`` and return it."""
    if not isinstance(raw, dict):
        raise BucketInputError("config: expected an object")
    unknown = set(raw) - CONFIG_KEYS
    if unknown:
        raise BucketInputError(f"config: unknown keys {sorted(unknown)}")
    source = raw.get("source")
    if source not in SOURCES:
        raise BucketInputError(f"config.source: expected one of {', '.join(SOURCES)}")
    config = dict(raw)
    tags = config.get("tags")
    if tags is not None and (
        not isinstance(tags, list) or len(tags) > 5 or not all(isinstance(t, str) for t in tags)
    ):
        raise BucketInputError("config.tags: expected at most 5 strings")
    if source == "device":
        check_id(config.get("device"), "config.device")
        resource = config.get("resource")
        if not isinstance(resource, str) or not resource or len(resource) > MAX_TEXT:
            raise BucketInputError("config.resource: expected a resource name")
        update = config.setdefault("update", "interval")
        if update not in UPDATES:
            raise BucketInputError(f"config.update: expected one of {', '.join(UPDATES)}")
        if update == "interval":
            interval = config.get("interval")
            if (
                isinstance(interval, bool)
                or not isinstance(interval, int | float)
                or not 0 < interval <= 86_400 * 366
            ):
                raise BucketInputError("config.interval: expected seconds (a positive number)")
    elif source == "mqtt":
        topic = config.get("topic")
        if not isinstance(topic, str) or not topic or len(topic) > 512:
            raise BucketInputError("config.topic: expected an MQTT topic")
    return config


def parse_retention(raw: Any) -> dict[str, Any] | None:
    """Check a bucket ``retention`` (None or ``{}`` = keep everything) and return it.

    ``{"period": n, "unit": "hours|days|weeks|months|years"}`` drops records
    older than that (``period`` 0 = unlimited); ``{"max_records": n}`` keeps
    the newest ``n`` records; both may be combined.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BucketInputError("retention: expected an object")
    unknown = set(raw) - {"period", "unit", "max_records"}
    if unknown:
        raise BucketInputError(f"retention: unknown keys {sorted(unknown)}")
    retention: dict[str, Any] = {}
    if "period" in raw or "unit" in raw:
        period = raw.get("period", 0)
        if isinstance(period, bool) or not isinstance(period, int) or period < 0:
            raise BucketInputError("retention.period: expected a whole number >= 0")
        unit = raw.get("unit", "days")
        if unit not in RETENTION_UNITS_MS:
            raise BucketInputError(
                f"retention.unit: expected one of {', '.join(RETENTION_UNITS_MS)}"
            )
        retention.update(period=period, unit=unit)
    if "max_records" in raw:
        keep = raw["max_records"]
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise BucketInputError("retention.max_records: expected a whole number >= 0")
        retention["max_records"] = keep
    return retention or None


def max_age_ms(retention: Mapping[str, Any] | None) -> int | None:
    """Return the retention's maximum record age in ms (None: no age limit)."""
    if not retention or not retention.get("period"):
        return None
    return int(retention["period"]) * RETENTION_UNITS_MS[str(retention.get("unit", "days"))]


def max_records(retention: Mapping[str, Any] | None) -> int | None:
    """Return how many records the retention keeps (None: no count limit; 0 = unlimited)."""
    if not retention or not retention.get("max_records"):
        return None
    return int(retention["max_records"])


def _check_keys(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise BucketInputError(f"unknown keys {sorted(unknown)}")


def new_bucket(user: str, body: Any, now: int) -> StoredBucket:
    """Build a bucket from a ``POST .../buckets`` body."""
    if not isinstance(body, dict):
        raise BucketInputError("expected a JSON object")
    _check_keys(body, CREATE_KEYS)
    bucket = check_id(body.get("bucket"))
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise BucketInputError("enabled: expected true or false")
    return StoredBucket(
        user=user,
        bucket=bucket,
        name=_text(body, "name", bucket),
        description=_text(body, "description", ""),
        enabled=enabled,
        config=parse_config(body.get("config", {"source": "api"})),
        retention=parse_retention(body.get("retention")),
        created=now,
        modified=now,
    )


def updated_bucket(current: StoredBucket, body: Any, now: int) -> StoredBucket:
    """Apply a ``PUT .../buckets/{b}`` body (only the keys it names change)."""
    if not isinstance(body, dict):
        raise BucketInputError("expected a JSON object")
    if "bucket" in body and body["bucket"] != current.bucket:
        raise BucketInputError("bucket: the id cannot change")
    _check_keys(body, UPDATE_KEYS | {"bucket"})
    changes: dict[str, Any] = {"modified": now}
    if "name" in body:
        changes["name"] = _text(body, "name", "")
    if "description" in body:
        changes["description"] = _text(body, "description", "")
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise BucketInputError("enabled: expected true or false")
        changes["enabled"] = body["enabled"]
    if "config" in body:
        changes["config"] = parse_config(body["config"])
    if "retention" in body:
        changes["retention"] = parse_retention(body["retention"])
    return replace(current, **changes)


def bucket_json(bucket: StoredBucket) -> dict[str, Any]:
    """Return the bucket in Thinger's shape (see the module docstring)."""
    out: dict[str, Any] = {
        "bucket": bucket.bucket,
        "name": bucket.name,
        "description": bucket.description,
        "enabled": bucket.enabled,
        "config": bucket.config,
        "created": bucket.created,
        "modified": bucket.modified,
    }
    if bucket.retention:
        out["retention"] = bucket.retention
    return out


def is_sampled(bucket: StoredBucket) -> bool:
    """Whether the server samples a device resource into this bucket."""
    config = bucket.config
    return (
        bucket.enabled
        and config.get("source") == "device"
        and config.get("update", "interval") == "interval"
    )


__all__ = [
    "BucketInputError",
    "bucket_json",
    "check_id",
    "is_sampled",
    "max_age_ms",
    "max_records",
    "new_bucket",
    "parse_config",
    "parse_retention",
    "updated_bucket",
]
