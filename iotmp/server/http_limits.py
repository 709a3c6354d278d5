"""HTTP listener limits: connection cap, header and idle timeouts, quiet accept errors.

aiohttp closes a keep-alive connection after ``keepalive_timeout`` once a
response was sent, but a connection that never completes a request (idle
socket, slowloris) is never closed, and nothing caps the number of open
connections. :class:`HttpConnectionGuard` sits between the listening socket
and aiohttp's protocol:

* a connection that has not started a request within ``http_header_timeout``
  seconds of opening (or of its previous response) is closed; a request
  "starts" when aiohttp hands it to the handlers, i.e. once its headers are in;
* an idle keep-alive connection is closed after ``http_idle_timeout`` s;
* at ``http_max_connections`` open connections a new one closes the
  connection idle for longest (one not serving a request); if every
  connection is busy the new one is refused;
* handlers that run (REST calls, WebSockets) are never interrupted.

:func:`install_loop_error_filter` turns the event loop's "socket.accept() out
of system resource" error (EMFILE: one traceback per attempt) into one
rate-limited WARNING line, and :class:`QuietBadRequests` does the same for
aiohttp's traceback of every malformed request (oversized header, bad
request line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from iotmp.protocol.ratelimit import LogLimiter

from .limits import ServerLimits

_LOGGER = logging.getLogger(__name__)
_LOG_LIMITER: Final = LogLimiter()
_SWEEP_INTERVAL: Final = 0.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Connection:
    __slots__ = ("busy", "idle_since", "served", "transport")

    def __init__(self, transport: asyncio.Transport, now: float) -> None:
        self.transport = transport
        self.busy = 0
        self.served = 0
        self.idle_since = now


class _GuardedProtocol(asyncio.Protocol):
    """Forwards every protocol callback to aiohttp's handler; tells the guard."""

    def __init__(self, inner: asyncio.Protocol, guard: HttpConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._accepted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        stream = cast("asyncio.Transport", transport)
        self._transport = stream
        if not self._guard.opened(stream):
            stream.abort()
            return
        self._accepted = True
        self._inner.connection_made(stream)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard.closed(self._transport)
        if self._accepted:
            self._inner.connection_lost(exc)


class HttpConnectionGuard:
    """Tracks the HTTP connections of one listener and enforces the limits."""

    def __init__(self, limits: ServerLimits) -> None:
        self.max_connections = limits.http_max_connections
        self.idle_timeout = limits.http_idle_timeout
        self.header_timeout = limits.http_header_timeout
        self._connections: dict[asyncio.Transport, _Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.closed_idle = 0
        self.refused = 0

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def protocol_factory(self, server: Callable[[], asyncio.Protocol]) -> Callable[[], Any]:
        """Wrap aiohttp's protocol factory (``runner.server``)."""
        return lambda: _GuardedProtocol(server(), self)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Mark the connection busy while a request is handled."""
        transport = request.transport
        conn = self._connections.get(transport) if transport is not None else None
        if conn is None:
            return await handler(request)
        conn.busy += 1
        try:
            return await handler(request)
        finally:
            conn.busy -= 1
            conn.served += 1
            conn.idle_since = self._now()

    def start(self) -> None:
        """Start the sweeper (in the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.create_task(self._sweep(), name="iotmp-http-guard")

    async def stop(self) -> None:
        """Stop the sweeper (connections are closed by aiohttp's shutdown)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # -- protocol callbacks -----------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def opened(self, transport: asyncio.Transport) -> bool:
        """Register a new connection, making room if needed; False refuses it."""
        if len(self._connections) >= self.max_connections and not self._close_longest_idle():
            self.refused += 1
            _LOG_LIMITER.log(
                _LOGGER,
                logging.WARNING,
                "http cap",
                "HTTP: %d connections open, all busy; new connection refused",
                len(self._connections),
            )
            return False
        self._connections[transport] = _Connection(transport, self._now())
        return True

    def closed(self, transport: asyncio.Transport) -> None:
        """Forget a connection that ended."""
        self._connections.pop(transport, None)

    # -- enforcement ----------------------------------------------------------------

    def _close_longest_idle(self) -> bool:
        idle = [c for c in self._connections.values() if not c.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since)
        self._close(oldest, "connection cap")
        return True

    def _close(self, conn: _Connection, why: str) -> None:
        self.closed_idle += 1
        _LOG_LIMITER.log(
            _LOGGER, logging.INFO, "http " + why, "HTTP: closing idle connections (%s)", why
        )
        self._connections.pop(conn.transport, None)
        conn.transport.abort()  # aiohttp's handler hears of it in connection_lost

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL)
            now = self._now()
            for conn in list(self._connections.values()):
                if conn.busy:
                    continue
                limit = self.idle_timeout if conn.served else self.header_timeout
                if now - conn.idle_since >= limit:
                    self._close(conn, "idle timeout" if conn.served else "header timeout")


class QuietBadRequests(logging.Filter):
    """aiohttp's traceback for a malformed request becomes one rate-limited line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite (or drop, when over the rate) records of malformed requests."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        allowed, suppressed = _LOG_LIMITER.allow("bad http request")
        if not allowed:
            return False
        record.msg = "bad HTTP request: %s: %s" + (
            f" ({suppressed} similar lines suppressed)" if suppressed else ""
        )
        record.args = (type(exc).__name__, str(exc.message or exc).splitlines()[0][:200])
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = "WARNING"
        return True


_QUIET_BAD_REQUESTS: Final = QuietBadRequests()
_ACCEPT_ERROR: Final = "socket.accept() out of system resource"
_filter_users = [0]


def install_log_filters() -> Callable[[], None]:
    """Quiet aiohttp's bad-request tracebacks and the loop's accept errors.

    Returns a function that undoes it (call it at shutdown).
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    server_logger = logging.getLogger("aiohttp.server")
    server_logger.addFilter(_QUIET_BAD_REQUESTS)
    _filter_users[0] += 1  # several servers in one process share the filter

    def handler(the_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith(_ACCEPT_ERROR):
            # asyncio already stops accepting on that socket for a second
            _LOG_LIMITER.log(
                _LOGGER,
                logging.WARNING,
                "accept error",
                "cannot accept connections: %s (out of file descriptors?); retrying",
                context.get("exception"),
            )
            return
        if previous is not None:
            previous(the_loop, context)
        else:
            the_loop.default_exception_handler(context)

    loop.set_exception_handler(handler)

    def undo() -> None:
        _filter_users[0] -= 1
        if _filter_users[0] <= 0:
            server_logger.removeFilter(_QUIET_BAD_REQUESTS)
        if loop.get_exception_handler() is handler:
            loop.set_exception_handler(previous)

    return undo


async def start_http_listener(
    runner: web.BaseRunner,
    host: str,
    port: int,
    guard: HttpConnectionGuard,
    *,
    ssl: Any = None,
    handler_factory: Callable[[], asyncio.Protocol] | None = None,
) -> asyncio.Server:
    """Listen for HTTP on ``host:port`` with ``runner``'s aiohttp server behind ``guard``.

    ``handler_factory`` makes each connection's protocol (default: the runner's
    own, ``runner.server``), e.g. one that answers protocol errors in JSON.
    """
    server = handler_factory or runner.server
    if server is None:
        raise RuntimeError("call runner.setup() first")
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        guard.protocol_factory(server), host, port, ssl=ssl, reuse_address=True
    )
    guard.start()
    return listener


async def stop_http_listener(listener: asyncio.Server | None, guard: HttpConnectionGuard) -> None:
    """Stop accepting (connections are closed by ``runner.cleanup()``) and stop the guard."""
    await guard.stop()
    if listener is not None:
        listener.close()


__all__ = [
    "HttpConnectionGuard",
    "QuietBadRequests",
    "install_log_filters",
    "start_http_listener",
    "stop_http_listener",
]
