"""The access log: one INFO line per REST request and per app WebSocket open and close.

Logger ``iotmp.server.access``. A line reads::

    127.0.0.1 alice "GET /v3/users/alice/devices/lamp?authorization=REDACTED" 200 57 B 3.1 ms

(client address, authenticated user or ``-``, method, path with every token
redacted, status, response bytes, duration). WebSockets get a line when the
upgrade succeeds (``websocket open``) and one when they close (status 101,
duration = the socket's lifetime). Each record also carries the fields as
``record.access`` (a dict) for the JSON log format.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

ACCESS_LOGGER: Final = logging.getLogger("iotmp.server.access")
# aiohttp >= 3.13 wants typed request keys (and warns about strings); 3.11 has none.
USER_KEY: Final[Any] = (
    web.RequestKey("iotmp_user", str) if hasattr(web, "RequestKey") else "iotmp_user"
)
"""Request key under which :func:`~.http_api.authorize` leaves the token's user."""

_SECRET_QUERY = re.compile(
    r"(?i)(^|[?&])(authorization|access_token|refresh_token|token|password)=[^&]*"
)


def redact(path: str) -> str:
    """``/x?authorization=eyJ...&a=1`` -> ``/x?authorization=REDACTED&a=1``."""
    if "?" not in path:
        return path
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{m.group(2)}=REDACTED", path)


def _client(request: Any) -> str:
    try:
        return str(request.remote or "-")
    except Exception:  # a request aiohttp could not parse may lack a transport
        return "-"


def _fields(request: Any) -> dict[str, Any]:
    try:
        path = redact(str(request.raw_path))
        method = str(request.method)
    except Exception:
        path, method = "-", "-"
    user = request.get(USER_KEY) if hasattr(request, "get") else None
    return {"client": _client(request), "user": user or "-", "method": method, "path": path}


def websocket_opened(request: web.BaseRequest) -> None:
    """Log that an app WebSocket was accepted."""
    if not ACCESS_LOGGER.isEnabledFor(logging.INFO):
        return
    fields = {**_fields(request), "event": "websocket open", "status": 101}
    ACCESS_LOGGER.info(
        '%s %s "%s %s" websocket open',
        fields["client"],
        fields["user"],
        fields["method"],
        fields["path"],
        extra={"access": fields},
    )


class AccessLog(AbstractAccessLogger):
    """aiohttp access logger writing the lines described in the module docstring."""

    @property
    def enabled(self) -> bool:
        """Whether a line would be written (skips the work otherwise)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write one line for a finished request (or a closed WebSocket)."""
        fields = _fields(request)
        size = response.body_length
        websocket = isinstance(response, web.WebSocketResponse)
        fields.update(
            status=response.status,
            bytes=size,
            duration_ms=round(time * 1000, 1),
        )
        if websocket:
            fields["event"] = "websocket closed"
        self.logger.info(
            '%s %s "%s %s" %s %d B %.1f ms%s',
            fields["client"],
            fields["user"],
            fields["method"],
            fields["path"],
            fields["status"],
            size,
            fields["duration_ms"],
            " websocket closed" if websocket else "",
            extra={"access": fields},
        )
