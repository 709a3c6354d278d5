"""Sending an endpoint's HTTP request: one shared session, bounded in time, size and number.

* TLS certificates are verified unless the endpoint says ``verify_ssl: false``.
* The whole call (connect, send, read) ends after its timeout.
* The response body is read up to ``endpoint_response_max_bytes``; a longer one
  ends the call with an error (nothing more is read or kept).
* At most ``endpoint_calls_in_flight`` calls per user run at once; another one
  is refused at once (:class:`EndpointBusyError`), not queued.
* Redirects are not followed (the 3xx is the answer): following one would send
  the endpoint's headers, credentials included, wherever the target points.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from iotmp.protocol.message import ABSENT

from .config import HttpRequest

_READ_CHUNK: Final = 65_536


class EndpointBusyError(Exception):
    """The user has as many endpoint calls in flight as allowed."""


@dataclass(frozen=True, slots=True)
class CallResult:
    """What a call got: the status and decoded body, or an error.

    ``status`` is 0 when no response came (timeout, connection failure);
    ``error`` is set then, and also when the response was too large.
    ``payload`` is the decoded JSON, else the text, ``ABSENT`` when empty.
    """

    status: int
    payload: Any = ABSENT
    error: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """A 2xx response, read completely."""
        return self.error is None and 200 <= self.status < 300


def decode_body(data: bytes, content_type: str) -> Any:
    """Decode a response body: JSON when it says so (and is), else text; ``ABSENT`` if empty."""
    if not data:
        return ABSENT
    text = data.decode("utf-8", errors="replace")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    return text


def _failure(exc: BaseException) -> str:
    """Say why no response came, without the URL (it may hold credentials)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake with the endpoint failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the endpoint closed the connection"
    return f"endpoint request failed ({type(exc).__name__})"


class EndpointCaller:
    """The HTTP side of endpoints (see the module docstring)."""

    def __init__(self, max_bytes: int, in_flight: int) -> None:
        self.max_bytes = max_bytes
        self.in_flight = in_flight
        self._session: aiohttp.ClientSession | None = None
        self._busy: dict[str, int] = {}

    async def start(self) -> None:
        """Open the shared session."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # an endpoint names its own headers; no proxy settings or cookies leak in
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )

    async def stop(self) -> None:
        """Close the shared session (safe when never started)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def calls_in_flight(self, user: str) -> int:
        """Return how many calls of ``user`` are running now."""
        return self._busy.get(user, 0)

    async def call(
        self, user: str, request: HttpRequest, *, seconds: float, verify_ssl: bool
    ) -> CallResult:
        """Send ``request`` for ``user``; raises :class:`EndpointBusyError` when over the cap."""
        if self._session is None:
            raise RuntimeError("endpoint caller not started")
        if self._busy.get(user, 0) >= self.in_flight:
            raise EndpointBusyError(f"at most {self.in_flight} endpoint calls at once per user")
        self._busy[user] = self._busy.get(user, 0) + 1
        try:
            async with asyncio.timeout(seconds):
                return await self._send(self._session, request, verify_ssl)
        except TimeoutError:
            return CallResult(
                0, error=f"endpoint did not answer within {seconds:g} s", timed_out=True
            )
        except aiohttp.ClientError as exc:
            return CallResult(0, error=_failure(exc))
        except ValueError as exc:  # a request aiohttp refuses to build; its text may hold the URL
            return CallResult(0, error=f"endpoint request could not be sent ({type(exc).__name__})")
        finally:
            left = self._busy[user] - 1
            if left:
                self._busy[user] = left
            else:
                del self._busy[user]

    async def _send(
        self, session: aiohttp.ClientSession, request: HttpRequest, verify_ssl: bool
    ) -> CallResult:
        async with session.request(
            request.method,
            request.url,
            headers=list(request.headers),
            data=request.body,
            ssl=verify_ssl,  # True: verify against the system CAs
            allow_redirects=False,
        ) as response:
            status = response.status
            too_large = CallResult(
                status, error=f"endpoint response larger than {self.max_bytes} bytes"
            )
            if response.content_length is not None and response.content_length > self.max_bytes:
                return too_large
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.content.iter_chunked(_READ_CHUNK):
                total += len(chunk)
                if total > self.max_bytes:
                    return too_large
                chunks.append(chunk)
            content_type = response.headers.get("Content-Type", "")
        return CallResult(status, decode_body(b"".join(chunks), content_type))


__all__ = ["CallResult", "EndpointBusyError", "EndpointCaller", "decode_body"]
