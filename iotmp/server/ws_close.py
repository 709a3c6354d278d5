"""Close codes of the resource WebSockets, and the per-socket frame style.

A single-resource socket (``/v3/users/{u}/devices/{d}/resources/{r}``) that
cannot stream is closed by the server -- never left open -- with a code in the
private range 4000-4999 that mirrors the REST status of the same failure, and
a reason saying what happened:

| code | when |
|---|---|
| 4404 | the device's DESCRIBE does not list the resource |
| 4503 | the device is not connected (at open, or it disconnected) |
| 4400-4599 | the device answered START_STREAM with an error (4000 + its code, else 4500) |
| 4504 | the device did not answer START_STREAM in time |
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .config import FRAME_STYLES

CLOSE_UNKNOWN_RESOURCE: Final = 4404
CLOSE_DEVICE_OFFLINE: Final = 4503
FRAMES_QUERY: Final = "frames"
"""Query parameter choosing the data-frame style of one socket (``signal`` / ``legacy``)."""
_MAX_REASON: Final = 123  # bytes a close frame's reason may hold


def close_code(status: int) -> int:
    """Return the close code of a failure with HTTP-like ``status``."""
    return 4000 + status if 400 <= status <= 599 else 4500


def close_reason(message: str) -> bytes:
    """``message`` cut to what a close frame can carry (UTF-8, whole characters)."""
    data = message.encode("utf-8")
    if len(data) <= _MAX_REASON:
        return data
    return data[:_MAX_REASON].decode("utf-8", "ignore").encode("utf-8")


def frame_style(request: web.Request, default: str) -> str:
    """Return the socket's frame style: ``?frames=`` if given, else ``default``."""
    value = request.query.get(FRAMES_QUERY)
    if value is None or value == "":
        return default
    if value not in FRAME_STYLES:
        raise web.HTTPBadRequest(reason=f"frames must be one of {', '.join(FRAME_STYLES)}")
    return value
