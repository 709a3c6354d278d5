"""aiohttp's own protocol errors as ``{"error": {"message": ...}}``, and the plain HTTP site.

Requests aiohttp cannot even parse (headers over its 8190-byte limit, a bad
request line, TLS sent to the plain port) never reach the application or its
middlewares: aiohttp answers them itself, in plain text, and logs a stack
trace at ERROR for each. :class:`JsonErrorHandler` answers them with the
API's JSON error body instead and logs one DEBUG line (client input is not a
server error); TLS on the plain port is reported as a failed device
handshake, since that is what a ``wss://`` device pointed at ``http_port``
looks like.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestHandler

if TYPE_CHECKING:
    from .handshake_log import HandshakeLog

_LOGGER = logging.getLogger(__name__)


def _looks_like_tls(exc: BaseException | None) -> bool:
    """Whether aiohttp choked on a TLS record (0x16 0x03: handshake, TLS 1.x)."""
    if not isinstance(exc, BadHttpMessage):
        return False
    text = str(exc)  # 3.14: "Received HTTPS traffic..."; 3.11: "... b'\x16\x03\x01'"
    return "HTTPS traffic" in text or "\\x16\\x03" in text or "\x16\x03" in text


class JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler with JSON error answers (see the module docstring)."""

    __slots__ = ()

    handshake_log: HandshakeLog | None = None  # set per server by make_handler's caller

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a request aiohttp could not handle with a JSON error body."""
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            text = "internal server error"
        else:
            text = message or (str(exc) if exc else "") or HTTPStatus(status).phrase
            _LOGGER.debug("bad request from %s: %s", request.remote, text)
            if _looks_like_tls(exc):
                text = "TLS sent to the plain HTTP port (use https_port)"
                log = type(self).handshake_log
                if log is not None:
                    log.failed(request.remote or "?", "http", text)
        if request.writer.output_size > 0:
            raise ConnectionError("response already sent, cannot send an error")
        response = web.Response(
            status=status,
            text=json.dumps({"error": {"message": text}}),
            content_type="application/json",
        )
        response.force_close()
        return response


def handler_class(handshake_log: HandshakeLog) -> type[JsonErrorHandler]:
    """Make a :class:`JsonErrorHandler` class reporting TLS-on-HTTP to ``handshake_log``."""
    return type(
        "ServerJsonErrorHandler",
        (JsonErrorHandler,),
        {"__slots__": (), "handshake_log": handshake_log},
    )


def make_handler(runner: web.BaseRunner, cls: type[JsonErrorHandler]) -> RequestHandler:
    """Create a connection handler of ``runner`` that answers protocol errors in JSON."""
    server = runner.server
    assert server is not None
    handler = server()
    # Same layout (no new slots): only handle_error changes.
    handler.__class__ = cls
    return handler


class HttpSite(web.BaseSite):
    """Like :class:`aiohttp.web.TCPSite`, with :class:`JsonErrorHandler` connections."""

    __slots__ = ("_cls", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, cls: type[JsonErrorHandler]
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._cls = cls

    @property
    def name(self) -> str:
        """The site's URL."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Listen on ``host:port``."""
        await super().start()
        loop = asyncio.get_running_loop()
        runner, cls = self._runner, self._cls
        self._server = await loop.create_server(
            lambda: make_handler(runner, cls), self._host, self._port, reuse_address=True
        )
