"""Bucket exports: CSV and JSON text of a range, and the export file names (pure).

Thinger makes an export file in the background and announces it with a
``bucket_export_completed`` event. Here an export "file" is virtual: its name
holds the range and the format, and reading it streams the records from the
database then. ``max_ts`` defaults to the time of the export request, so the
content is that range as it is when read (retention may have dropped old
records since).

CSV as Thinger writes it: ``;``-separated, a header of the sorted field names
(``ts`` among them), strings quoted with ``"`` (doubled inside), numbers and
booleans bare, nested values as JSON text. A record that is not an object is
one field, ``value``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

DATA_TYPES: Final = ("csv", "json")
TIMESTAMP_FORMATS: Final = ("iso", "seconds", "milliseconds")
MAX_COLUMNS: Final = 1024
FILE_RE: Final = re.compile(
    r"^(\d{8}T\d{6}Z)\.(\d{1,15})-(\d{1,15})\.(iso|seconds|milliseconds)\.(csv|json)$"
)


class ExportError(ValueError):
    """An export request or file name is invalid (400 / 404 with the message)."""


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """What an export holds: ``min_ts <= ts <= max_ts`` in ``data_type``."""

    min_ts: int
    max_ts: int
    data_type: str = "csv"
    timestamp_format: str = "iso"
    created: str = ""

    @property
    def file(self) -> str:
        """The export's file name (it encodes the whole spec)."""
        return (
            f"{self.created}.{self.min_ts}-{self.max_ts}.{self.timestamp_format}.{self.data_type}"
        )

    @property
    def content_type(self) -> str:
        """The HTTP content type of the file."""
        return "text/csv" if self.data_type == "csv" else "application/json"


def _stamp(now_ms: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ms / 1000))


def parse_export_request(body: Any, now_ms: int) -> ExportSpec:
    """Check a ``POST .../exports`` body (Thinger's ``Bucket_CreateExport``)."""
    if not isinstance(body, dict):
        raise ExportError("expected a JSON object")
    unknown = set(body) - {
        "data_type",
        "timestamp_format",
        "min_ts",
        "max_ts",
        "callback",
        "endpoint",
    }
    if unknown:
        raise ExportError(f"unknown keys {sorted(unknown)}")
    if body.get("callback") is not None:
        raise ExportError("callback: email and endpoint callbacks are not supported here")
    data_type = body.get("data_type", "csv")
    if data_type not in DATA_TYPES:
        raise ExportError(f"data_type: expected one of {', '.join(DATA_TYPES)}")
    ts_format = body.get("timestamp_format", "iso")
    if ts_format not in TIMESTAMP_FORMATS:
        raise ExportError(f"timestamp_format: expected one of {', '.join(TIMESTAMP_FORMATS)}")
    bounds: list[int] = []
    for key, default in (("min_ts", 0), ("max_ts", now_ms)):
        value = body.get(key) or default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ExportError(f"{key}: expected a timestamp in ms")
        bounds.append(min(int(value), 10**15 - 1))
    if bounds[0] > bounds[1]:
        raise ExportError("min_ts is after max_ts")
    return ExportSpec(bounds[0], bounds[1], data_type, ts_format, _stamp(now_ms))


def parse_export_file(name: str) -> ExportSpec:
    """Read an export file name back into its spec (ExportError when it is not one)."""
    match = FILE_RE.match(name)
    if match is None:
        raise ExportError("export not found")
    created, low, high, ts_format, data_type = match.groups()
    return ExportSpec(int(low), int(high), data_type, ts_format, created)


def format_ts(ts: int, ts_format: str) -> Any:
    """Render a record's ts (ms) as ``iso`` text, ``seconds`` or ``milliseconds``."""
    if ts_format == "milliseconds":
        return ts
    if ts_format == "seconds":
        return ts / 1000
    moment = datetime.fromtimestamp(ts / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts % 1000:03d}Z"


def fields_of(data: Any) -> Iterable[str]:
    """Return the CSV columns a record contributes."""
    return [str(key) for key in data] if isinstance(data, dict) else ["value"]


def csv_header(columns: Iterable[str]) -> str:
    """Return the header line of the sorted columns (with ``ts``)."""
    return ";".join(_csv_cell(c) for c in sorted({*columns, "ts"})) + "\n"


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return '"' + text.replace('"', '""') + '"'


def csv_line(columns: list[str], ts: int, data: Any, ts_format: str) -> str:
    """Return one record as a CSV line in the header's column order."""
    values: Mapping[str, Any] = data if isinstance(data, dict) else {"value": data}
    cells = [
        _csv_cell(format_ts(ts, ts_format)) if column == "ts" else _csv_cell(values.get(column))
        for column in columns
    ]
    return ";".join(cells) + "\n"


def json_item(ts: int, data: Any, ts_format: str) -> str:
    """Return one record of a JSON export: ``{"ts": ..., "val": data}``."""
    return json.dumps(
        {"ts": format_ts(ts, ts_format), "val": data}, separators=(",", ":"), ensure_ascii=False
    )


__all__ = [
    "DATA_TYPES",
    "MAX_COLUMNS",
    "ExportError",
    "ExportSpec",
    "csv_header",
    "csv_line",
    "fields_of",
    "format_ts",
    "json_item",
    "parse_export_file",
    "parse_export_request",
]
