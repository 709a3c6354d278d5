"""``--log-format json``: one JSON object per log line, for log shippers.

Each line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``,
``logger`` and ``message``, then ``exception`` when there is one, then the
structured fields a record carries: the access log's ``access`` dict is
spread into the object (``client``, ``user``, ``method``, ``path``,
``status``, ``bytes``, ``duration_ms``, ``event``), and any other ``extra=``
field is added under its own name.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Final

LOG_FORMATS: Final = ("text", "json")

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD: Final = frozenset(
    set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "", None, None))) | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """Format each record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON object on one line."""
        when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        data: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key in _STANDARD or key in data:
                continue
            if key == "access" and isinstance(value, dict):
                data.update({k: v for k, v in value.items() if k not in data})
            else:
                data[key] = value
        return json.dumps(data, default=str, ensure_ascii=False)
