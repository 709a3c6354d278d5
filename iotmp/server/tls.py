"""TLS listeners that see their handshake failures.

asyncio's own TLS servers drop a connection whose handshake fails without a
word (``wrong version number`` from a device speaking plain TCP, an
unsupported protocol, a client that rejects our certificate). Here the TCP
connection is accepted in the clear and the handshake is run explicitly
(``loop.start_tls``), so a failure is reported with the client's address
(``HandshakeLog.failed``) before the socket is closed.

* :class:`HttpsSite` -- an aiohttp site serving the API (REST, app WebSockets,
  ``wss://.../iotmp``) over TLS.
* :class:`TlsAcceptor` -- the protocol factory behind it, also used for the
  device TLS port.
"""

from __future__ import annotations

import asyncio
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


class TlsAcceptor:
    """The protocol factory of a listener whose connections start with a TLS handshake.

    Give it to ``loop.create_server``: each plain TCP connection is held (not
    read) while ``loop.start_tls`` runs the handshake in a task of its own; a
    failure is reported with the client's address and the socket aborted.
    Once secure, the connection goes to ``protocol_factory()`` (None: not
    serving any more, the connection is aborted).
    """

    __slots__ = ("_context", "_factory", "_report", "_timeout", "_what", "pending")

    def __init__(
        self,
        context: ssl.SSLContext,
        protocol_factory: Callable[[], asyncio.Protocol | None],
        *,
        report: FailureReport,
        what: str,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._context = context
        self._factory = protocol_factory
        self._report = report
        self._what = what  # what failed, for the report ("https", "tls")
        self._timeout = handshake_timeout
        self.pending: set[asyncio.Task[None]] = set()
        """Handshakes in progress."""

    def __call__(self) -> asyncio.Protocol:
        """Make the protocol of a new connection (the ``loop.create_server`` factory)."""
        return _Handshaking(self)

    def cancel(self) -> None:
        """Abandon the handshakes in progress (their sockets are aborted)."""
        for task in list(self.pending):
            task.cancel()

    def _start(self, transport: asyncio.Transport, first: _Handshaking) -> None:
        task = asyncio.get_running_loop().create_task(self.handshake(transport, first))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def handshake(self, transport: asyncio.Transport, first: _Handshaking) -> None:
        """Run the TLS handshake, then give the connection to the protocol factory's protocol."""
        if transport.is_closing():  # gone before the handshake could start
            return
        address = format_peer(transport.get_extra_info("peername"))
        relay = _Relay()
        loop = asyncio.get_running_loop()
        starting = loop.create_task(
            loop.start_tls(
                transport,
                relay,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout,
            )
        )
        try:
            # start_tls's first step (it takes the transport, and schedules the TLS
            # protocol's connection_made and resume_reading) runs before we resume here.
            await asyncio.sleep(0)
            early = first.take_early()
            if early:
                # Scheduled behind those two callbacks and before the next socket read:
                # the TLS layer gets the client's first bytes first.
                loop.call_soon(_deliver, transport, early)
            tls = await starting
        except asyncio.CancelledError:
            starting.cancel()
            transport.abort()
            raise
        except (OSError, TimeoutError, RuntimeError) as exc:  # RuntimeError: closed meanwhile
            self._report(address, self._what, tls_failure(exc))
            transport.abort()
            return
        target = self._factory() if tls is not None else None
        if tls is None or target is None:
            transport.abort()
            return
        relay.hand_over(target, tls)


def _deliver(transport: asyncio.Transport, data: bytes) -> None:
    """Give ``data`` to the transport's protocol the way a transport would."""
    if transport.is_closing():
        return
    protocol: Any = transport.get_protocol()
    get_buffer = getattr(protocol, "get_buffer", None)  # TLS protocols are buffered ones
    if get_buffer is None:
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buffer = memoryview(get_buffer(len(view))).cast("B")
        count = min(len(buffer), len(view))
        buffer[:count] = view[:count]
        protocol.buffer_updated(count)
        view = view[count:]


class _Handshaking(asyncio.Protocol):
    """A plain TCP connection whose first job is the TLS handshake."""

    __slots__ = ("_acceptor", "_early", "_transport")

    def __init__(self, acceptor: TlsAcceptor) -> None:
        self._acceptor = acceptor
        self._transport: asyncio.Transport | None = None
        self._early = b""

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not subclass asyncio.Transport, so no isinstance.
        transport = cast(asyncio.Transport, base)
        self._transport = transport
        transport.pause_reading()  # nothing should reach us: start_tls takes the bytes
        self._acceptor._start(transport, self)

    def data_received(self, data: bytes) -> None:
        # uvloop starts reading once connection_made returns, even when it paused:
        # keep what came (the ClientHello) for the TLS layer and pause again.
        self._early += data
        if self._transport is not None:
            self._transport.pause_reading()

    def take_early(self) -> bytes:
        """Return (and forget) the bytes that came before start_tls took the transport."""
        early, self._early = self._early, b""
        return early


class HttpsSite(web.BaseSite):
    """Serve an aiohttp runner over TLS on ``host:port``; failed handshakes are reported."""

    __slots__ = ("_acceptor", "_cls", "_host", "_port")

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
        self._acceptor = TlsAcceptor(
            context,
            self._make_handler,
            report=report,
            what="https",
            handshake_timeout=handshake_timeout,
        )

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
            self._acceptor, self._host, self._port, reuse_address=True
        )

    async def stop(self) -> None:
        """Stop listening; handshakes still running are abandoned."""
        self._acceptor.cancel()
        await super().stop()

    def _make_handler(self) -> asyncio.Protocol | None:
        if self._runner.server is None:  # stopped during the handshake
            return None
        return make_handler(self._runner, self._cls)


__all__ = ["HttpsSite", "TlsAcceptor", "format_peer", "tls_failure"]
