"""TLS listeners that see their handshake failures.

asyncio's own TLS servers drop a connection whose handshake fails without a
word (``wrong version number`` from a device speaking plain TCP, an
unsupported protocol, a client that rejects our certificate). Here the TCP
connection is accepted in the clear and the handshake is run explicitly
(``loop.start_tls``), so a failure is reported with the client's address
(``HandshakeLog.failed``) before the socket is closed.

* :class:`HttpsSite` -- an aiohttp site serving the API (REST, app WebSockets,
  ``wss://.../iotmp``) over TLS.
* :func:`start_tls_stream` -- the same for an :func:`asyncio.start_server`
  connection (the device TLS port).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from .device_link import peer_host
from .http_errors import JsonErrorHandler, make_handler

HANDSHAKE_TIMEOUT = 15.0

FailureReport = Callable[[str, str, object], object]
"""(client address, what failed, detail) -> anything (e.g. ``HandshakeLog.failed``)."""


def format_peer(peername: Any) -> str:
    """``("1.2.3.4", 5)`` -> ``"1.2.3.4"`` (address only: the rate limit is per host)."""
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return peer_host(str(peername)) if peername else "?"


def tls_failure(exc: BaseException) -> str:
    """Say briefly why a handshake failed (``TLS error: WRONG_VERSION_NUMBER``)."""
    if isinstance(exc, TimeoutError):
        return "TLS handshake timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    return f"TLS handshake failed: {exc!r}"


class _Relay(asyncio.Protocol):
    """Holds what arrives over TLS until the real protocol takes over."""

    def __init__(self) -> None:
        self.target: asyncio.Protocol | None = None
        self._data: list[bytes] = []
        self._eof = False
        self._lost: tuple[bool, Exception | None] = (False, None)

    def data_received(self, data: bytes) -> None:
        if self.target is not None:
            self.target.data_received(data)
        else:
            self._data.append(bytes(data))

    def eof_received(self) -> bool | None:
        if self.target is not None:
            return self.target.eof_received()
        self._eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.target is not None:
            self.target.connection_lost(exc)
        else:
            self._lost = (True, exc)

    def hand_over(self, target: asyncio.Protocol, transport: asyncio.Transport) -> None:
        """Make ``target`` the protocol of ``transport`` and replay what came first."""
        target.connection_made(transport)
        transport.set_protocol(target)
        self.target = target
        for chunk in self._data:
            target.data_received(chunk)
        self._data.clear()
        if self._eof:
            target.eof_received()
        lost, exc = self._lost
        if lost:
            target.connection_lost(exc)


class _TlsAcceptor(asyncio.Protocol):
    """A plain TCP connection whose first job is the TLS handshake."""

    def __init__(self, site: HttpsSite) -> None:
        self._site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        transport = cast("asyncio.Transport", transport)
        transport.pause_reading()  # nothing may reach us: start_tls takes the bytes
        task = asyncio.get_running_loop().create_task(self._site.handshake(transport))
        self._site.pending.add(task)
        task.add_done_callback(self._site.pending.discard)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused
        pass


class HttpsSite(web.BaseSite):
    """Serve an aiohttp runner over TLS on ``host:port``; failed handshakes are reported."""

    __slots__ = ("_cls", "_context", "_host", "_port", "_report", "_timeout", "pending")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        context: ssl.SSLContext,
        *,
        report: FailureReport,
        handler_cls: type[JsonErrorHandler] = JsonErrorHandler,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        super().__init__(runner)
        self._cls = handler_cls
        self._host = host
        self._port = port
        self._context = context
        self._report = report
        self._timeout = handshake_timeout
        self.pending: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        """The site's URL."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self._port}"

    @property
    def port(self) -> int | None:
        """The bound port (None before :meth:`start`)."""
        sockets = getattr(self._server, "sockets", None)
        return int(sockets[0].getsockname()[1]) if sockets else None

    async def start(self) -> None:
        """Listen (plain TCP; each connection starts with the TLS handshake)."""
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TlsAcceptor(self), self._host, self._port, reuse_address=True
        )

    async def stop(self) -> None:
        """Stop listening; handshakes still running are abandoned."""
        for task in list(self.pending):
            task.cancel()
        await super().stop()

    async def handshake(self, transport: asyncio.Transport) -> None:
        """Run the TLS handshake, then give the connection to aiohttp."""
        address = format_peer(transport.get_extra_info("peername"))
        if transport.is_closing():  # gone before the handshake could start
            return
        relay = _Relay()
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                relay,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout,
            )
        except asyncio.CancelledError:
            transport.abort()
            raise
        except (OSError, TimeoutError, RuntimeError) as exc:  # RuntimeError: closed meanwhile
            self._report(address, "https", tls_failure(exc))
            transport.abort()
            return
        if tls is None or self._runner.server is None:
            transport.abort()
            return
        relay.hand_over(make_handler(self._runner, self._cls), tls)


async def start_tls_stream(
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    report: FailureReport,
    *,
    timeout: float = HANDSHAKE_TIMEOUT,  # noqa: ASYNC109
) -> bool:
    """Upgrade an accepted plain connection to TLS; False (reported, closed) on failure."""
    address = format_peer(writer.get_extra_info("peername"))
    try:
        await writer.start_tls(context, ssl_handshake_timeout=timeout)
    except (OSError, TimeoutError, RuntimeError) as exc:
        report(address, "tls", tls_failure(exc))
        with contextlib.suppress(Exception):
            writer.transport.abort()
        return False
    return True


__all__ = ["HttpsSite", "format_peer", "start_tls_stream", "tls_failure"]
