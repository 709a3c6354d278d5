"""Byte-stream transports for IOTMP: TCP, TLS and WebSocket (spec section 1).

A :class:`Transport` is a reliable byte pipe. IOTMP framing is done by the
session on top of it, so every transport simply hands over bytes as they
arrive: over WebSocket, frame payloads are concatenated into one continuous
stream (a frame may hold several or partial IOTMP messages).

Client side:
    * :func:`open_tcp` -- plain TCP, or TLS when ``ssl_context`` is given.
    * :func:`open_websocket` -- ``ws://`` / ``wss://`` with subprotocol ``iotmp``.

Server side:
    * :func:`start_tcp_server` -- listen over TCP or TLS; one handler task per
      connection. :class:`ProtocolTransport` is also the protocol to give
      ``loop.create_server`` directly (the server's device listeners do).
    * :func:`accept_websocket` / :func:`websocket_handler` -- an aiohttp route
      handler for ``/iotmp``. Reference devices put IOTMP bytes into TEXT
      frames (reference-device observation 13), so text frames whose bytes are
      not valid UTF-8 are accepted and treated like binary frames.
"""

# ruff: noqa: ASYNC109  (per-call timeouts are part of the public API)
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import ssl
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar, cast

import aiohttp
from aiohttp import web

from .errors import ConnectionClosedError

if sys.version_info >= (3, 12):
    from typing import override
else:  # Python 3.11: the decorator only documents intent, so a no-op serves
    _F = TypeVar("_F")

    def override(method: _F) -> _F:
        return method


_LOGGER = logging.getLogger(__name__)

WEBSOCKET_PATH: Final = "/iotmp"
WEBSOCKET_PROTOCOL: Final = "iotmp"
DEFAULT_CONNECT_TIMEOUT: Final = 15.0
"""Seconds allowed for a transport to come up ([Linux] uses 15 s)."""
DEFAULT_WS_MAX_FRAME: Final = 1024 * 1024
"""Largest WebSocket message accepted; IOTMP limits are enforced by the session."""
READ_LIMIT: Final = 64 * 1024
"""Unread bytes a TCP/TLS transport queues before it stops reading its socket."""
_CLOSE_TIMEOUT: Final = 5.0


class Receiver(Protocol):
    """What a push transport calls (:meth:`Transport.attach_receiver`); never blocks."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived (any size, never empty)."""

    def eof_received(self) -> None:
        """Take note that the connection ended; nothing more will arrive."""


class Transport(ABC):
    """A bidirectional byte stream carrying IOTMP messages.

    ``read`` returns the next chunk of bytes (any size) and ``b""`` once the
    peer closed or the connection broke; it never raises for connection
    loss. ``write`` sends all bytes or raises :class:`ConnectionClosedError`.
    ``close`` is idempotent and never raises.
    """

    __slots__ = ()  # (subclasses may use slots; the defaults below are class attributes)

    kind: str = "?"
    """``"tcp"``, ``"tls"`` or ``"ws"`` (``"wss"`` for WebSocket over TLS)."""
    pushes: bool = False
    """Whether :meth:`attach_receiver` is supported: the transport then calls the
    receiver as bytes arrive, and nobody needs to wait in :meth:`read`."""
    rx_bytes: int = 0
    """Bytes returned by :meth:`read` so far (IOTMP bytes: no TLS or WebSocket framing)."""
    tx_bytes: int = 0
    """Bytes :meth:`write` sent so far (likewise)."""

    @property
    @abstractmethod
    def peer(self) -> str:
        """Readable remote address, for logs (e.g. ``"127.0.0.1:50432"``)."""

    @property
    @abstractmethod
    def is_closing(self) -> bool:
        """True once the transport is closed or closing."""

    @abstractmethod
    def read(self) -> Awaitable[bytes]:
        """Next chunk of received bytes; ``b""`` at end of stream.

        Await the result at once (one read at a time); a subclass may return a
        future instead of a coroutine.
        """

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Send ``data``; raises :class:`ConnectionClosedError` if that is impossible."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection (idempotent, never raises)."""

    def attach_receiver(self, receiver: Receiver) -> None:
        """From now on hand every chunk to ``receiver`` as it arrives (``pushes`` only).

        Chunks held already are delivered at once, in order; the end of the
        connection (EOF, reset or close) is reported once with ``eof_received``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not push")

    def pause_reading(self) -> None:
        """Stop taking bytes from the peer until :meth:`resume_reading` (``pushes`` only)."""
        raise NotImplementedError(f"{type(self).__name__} does not push")

    def resume_reading(self) -> None:
        """Take bytes from the peer again after :meth:`pause_reading`."""
        raise NotImplementedError(f"{type(self).__name__} does not push")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.peer}>"


# ---------------------------------------------------------------------------
# TCP / TLS: the transport is its own asyncio protocol
# ---------------------------------------------------------------------------


def _format_peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        if ":" in host:
            return f"[{host}]:{address[1]}"
        return f"{host}:{address[1]}"
    return str(address) if address else "?"


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    # IOTMP sends many tiny messages (an OK followed at once by a stream echo);
    # with Nagle they arrive ~40 ms apart (observation 12). asyncio usually
    # sets this already; doing it again is harmless.
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ProtocolTransport(Transport, asyncio.Protocol):
    """TCP or TLS transport that is itself the connection's :class:`asyncio.Protocol`.

    One small object per connection instead of a ``StreamReader``,
    ``StreamWriter`` and their protocol: a received chunk is kept as the
    ``bytes`` object the event loop made (no copy) and handed to the one
    pending :meth:`read`, whose future it completes. While more than
    :data:`READ_LIMIT` bytes are waiting unread, the socket is not read (the
    peer then waits on TCP flow control); :meth:`read` resumes it. :meth:`write`
    hands bytes to the event loop and waits only while the loop has paused
    writing (its buffer above the high-water mark).

    Made by the event loop's protocol factory (``loop.create_server`` /
    ``loop.create_connection``), or handed a TLS connection by
    :class:`iotmp.server.tls.TlsAcceptor`. ``on_connected(self)`` is called
    once the connection is made. Works on uvloop (whose transports are not
    :class:`asyncio.Transport` subclasses).
    """

    # Slots: a server holds one of these per idle device.
    __slots__ = (
        "_chunks",
        "_close_waiter",
        "_closed",
        "_drain_waiters",
        "_eof",
        "_loop",
        "_lost",
        "_on_connected",
        "_peer",
        "_queued",
        "_read_paused",
        "_reader",
        "_receiver",
        "_transport",
        "_write_paused",
        "kind",
        "rx_bytes",
        "tx_bytes",
    )

    def __init__(self, on_connected: Callable[[ProtocolTransport], object] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_connected = on_connected
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self.kind = "tcp"
        self.rx_bytes = 0
        self.tx_bytes = 0
        self._chunks: list[bytes] = []  # received, not yet read
        self._queued = 0  # bytes in _chunks
        self._reader: asyncio.Future[bytes] | None = None  # the pending read
        self._receiver: Receiver | None = None  # attach_receiver: bytes pushed, not read
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._close_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self._eof = False  # no more bytes will arrive
        self._lost = False  # connection_lost was called
        self._closed = False  # close() was called

    # -- asyncio.Protocol ------------------------------------------------------------

    @override
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not subclass asyncio.Transport, so no isinstance.
        self._transport = cast(asyncio.Transport, transport)
        self.kind = "tls" if transport.get_extra_info("ssl_object") is not None else "tcp"
        self._peer = _format_peer(transport.get_extra_info("peername"))
        _set_nodelay(transport)
        callback = self._on_connected
        if callback is not None:
            self._on_connected = None  # nothing kept for the life of the connection
            callback(self)

    @override
    def data_received(self, data: bytes) -> None:
        if self._closed:
            return  # nobody will read it
        receiver = self._receiver
        if receiver is not None:
            self.rx_bytes += len(data)
            receiver.data_received(data)
            return
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():  # (cancelled: its task gave up waiting)
                self.rx_bytes += len(data)
                reader.set_result(data)
                return
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued > READ_LIMIT:
            # A peer that sends faster than the session reads waits on TCP instead
            # of filling our memory.
            self.pause_reading()

    @override
    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake_reader()
        self._report_eof()
        # Like asyncio streams: over TCP the sending side stays open until close();
        # over TLS the return value is ignored (and warned about when true).
        return self.kind == "tcp"

    @override
    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            # A reset or TLS failure is just "the stream ended" for the session.
            _LOGGER.debug("%s: connection lost: %r", self._peer, exc)
        self._eof = self._lost = True
        self._read_paused = False
        self._wake_reader()
        self._report_eof()
        self._wake_writers()
        waiter = self._close_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @override
    def pause_writing(self) -> None:
        self._write_paused = True

    @override
    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(b"")  # (a waiting reader means nothing is queued)

    def _report_eof(self) -> None:
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None  # once; and the session is not kept by a dead transport
            receiver.eof_received()

    def _wake_writers(self) -> None:
        waiters = self._drain_waiters
        if waiters is not None:
            self._drain_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- Transport ---------------------------------------------------------------------

    @property
    @override
    def peer(self) -> str:
        return self._peer

    @property
    @override
    def is_closing(self) -> bool:
        transport = self._transport
        return self._closed or self._lost or transport is None or transport.is_closing()

    pushes = True  # (a class attribute: see attach_receiver)

    @override
    def attach_receiver(self, receiver: Receiver) -> None:
        """Push every chunk to ``receiver`` from now on (the session's idle path: no reader).

        What was queued unread is delivered first; an end already seen is
        reported at once. :meth:`read` must not be used any more.
        """
        if self._chunks:
            data = self._take()
            if self._closed:
                return
            receiver.data_received(data)
        if self._closed:
            return
        if self._eof:
            receiver.eof_received()
            return
        self._receiver = receiver

    @override
    def pause_reading(self) -> None:
        transport = self._transport
        if not self._read_paused and transport is not None and not self._lost:
            self._read_paused = True
            transport.pause_reading()

    @override
    def resume_reading(self) -> None:
        transport = self._transport
        if self._read_paused and transport is not None and not self._lost:
            self._read_paused = False
            transport.resume_reading()

    @property
    def queued_bytes(self) -> int:
        """Bytes received and not read yet (bounded: reading pauses above :data:`READ_LIMIT`)."""
        return self._queued

    @override
    def read(self) -> asyncio.Future[bytes]:
        """Next chunk of received bytes (``b""`` at end of stream), as a future to await.

        A future rather than a coroutine: an idle connection's reader then waits
        on one future, with no coroutine frame of ours. One read at a time.
        """
        future: asyncio.Future[bytes] = self._loop.create_future()
        if self._chunks:
            future.set_result(self._take())
        elif self._eof or self._closed:
            future.set_result(b"")
        elif self._reader is not None and not self._reader.done():
            raise RuntimeError(f"{self._peer}: read() while another read is waiting")
        else:
            self._reader = future
        return future

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._queued = 0
        self.rx_bytes += len(data)
        self.resume_reading()
        return data

    @override
    async def write(self, data: bytes) -> None:
        transport = self._transport
        if self._closed or self._lost or transport is None or transport.is_closing():
            raise ConnectionClosedError(f"{self._peer}: transport is closed")
        try:
            transport.write(data)
        except (OSError, ssl.SSLError, RuntimeError) as exc:
            raise ConnectionClosedError(f"{self._peer}: write failed: {exc!r}") from exc
        if self._write_paused:
            await self._writable()
        self.tx_bytes += len(data)

    async def _writable(self) -> None:
        """Wait until the event loop resumes writing; raises if the connection ends first."""
        while self._write_paused and not (self._closed or self._lost):
            waiter: asyncio.Future[None] = self._loop.create_future()
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                waiters = self._drain_waiters
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)  # (cancelled: do not keep it)
        if self._closed or self._lost:
            raise ConnectionClosedError(f"{self._peer}: connection closed while writing")

    @override
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        self._queued = 0
        self._wake_reader()
        self._report_eof()
        self._wake_writers()
        transport = self._transport
        if transport is None or self._lost:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._close_waiter = waiter
        try:
            if self._read_paused:
                # Unread bytes are dropped from now on; a TLS shutdown needs to read.
                self._read_paused = False
                transport.resume_reading()
            transport.close()
            # A peer that never reads (or never answers the TLS shutdown) must not
            # hold us: abort after _CLOSE_TIMEOUT.
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await waiter
        except (TimeoutError, OSError, ssl.SSLError, RuntimeError):
            with contextlib.suppress(Exception):
                transport.abort()
        finally:
            self._close_waiter = None


async def start_tcp_server(
    on_connection: Callable[[ProtocolTransport], Awaitable[None]],
    host: str | None,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **kwargs: Any,
) -> asyncio.Server:
    """Listen for IOTMP over TCP (TLS when ``ssl_context`` is given).

    ``on_connection(transport)`` runs as a task for each accepted connection;
    the transport is closed when it returns or raises. ``kwargs`` go to
    ``loop.create_server``. (The server's device listeners use
    :class:`ProtocolTransport` directly, so that an idle device holds no task.)
    """
    tasks: set[asyncio.Task[None]] = set()

    async def run(transport: ProtocolTransport) -> None:
        try:
            await on_connection(transport)
        except Exception:
            _LOGGER.exception("%s: connection handler failed", transport.peer)
        finally:
            await transport.close()

    def connected(transport: ProtocolTransport) -> None:
        task = asyncio.get_running_loop().create_task(run(transport))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: ProtocolTransport(connected), host, port, ssl=ssl_context, **kwargs
    )


async def open_tcp(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> ProtocolTransport:
    """Connect to an IOTMP server over TCP, or TLS when ``ssl_context`` is given.

    ``server_hostname`` overrides the name checked against the certificate
    (TLS only). Raises :class:`ConnectionClosedError` when the connection
    cannot be made within ``timeout`` seconds.
    """
    kwargs: dict[str, Any] = {}
    if ssl_context is not None:
        kwargs["ssl"] = ssl_context
        if server_hostname is not None:
            kwargs["server_hostname"] = server_hostname
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            _, transport = await loop.create_connection(ProtocolTransport, host, port, **kwargs)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        raise ConnectionClosedError(f"cannot connect to {host}:{port}: {exc!r}") from exc
    return transport


def client_ssl_context(*, verify: bool = True, cafile: str | None = None) -> ssl.SSLContext:
    """Make a TLS client context (TLS >= 1.2).

    Verification is on by default; ``verify=False`` behaves like the reference
    clients, which accept any certificate (spec section 1).
    """
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def server_ssl_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """Make a TLS server context accepting TLS 1.2 and 1.3 (reference devices use both)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


# ---------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------

_WSResponse = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class WebSocketTransport(Transport):
    """IOTMP over a WebSocket (client or server end).

    Outgoing bytes go in BINARY frames (one frame per ``write``). Incoming
    BINARY and TEXT frames are both accepted; their payloads are returned as
    one continuous byte stream.
    """

    def __init__(
        self,
        ws: _WSResponse,
        *,
        peer: str,
        secure: bool = False,
        client_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.ws = ws
        """The underlying aiohttp WebSocket object."""
        self.kind = "wss" if secure else "ws"
        self._peer = peer
        self._client_session = client_session  # owned: closed with the transport
        self._closed = False

    @property
    @override
    def peer(self) -> str:
        return self._peer

    @property
    @override
    def is_closing(self) -> bool:
        return self._closed or self.ws.closed

    @override
    async def read(self) -> bytes:
        while not self._closed:
            try:
                msg = await self.ws.receive()
            except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
                _LOGGER.debug("%s: websocket receive failed: %r", self._peer, exc)
                return b""
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                data = msg.data
                if isinstance(data, str):  # TEXT frame decoded by aiohttp
                    data = data.encode("utf-8")
                if data:  # an empty frame must not look like end of stream
                    self.rx_bytes += len(data)
                    return bytes(data)
                continue
            if msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue  # autoping answers pings already
            if msg.type == aiohttp.WSMsgType.ERROR:
                _LOGGER.debug("%s: websocket error: %r", self._peer, msg.data)
            return b""  # CLOSE, CLOSING, CLOSED, ERROR
        return b""

    @override
    async def write(self, data: bytes) -> None:
        if self.is_closing:
            raise ConnectionClosedError(f"{self._peer}: websocket is closed")
        try:
            await self.ws.send_bytes(data)
        except (OSError, RuntimeError, aiohttp.ClientError) as exc:
            raise ConnectionClosedError(f"{self._peer}: write failed: {exc!r}") from exc
        self.tx_bytes += len(data)

    @override
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self.ws.close()
        except Exception as exc:
            _LOGGER.debug("%s: websocket close failed: %r", self._peer, exc)
        if self._client_session is not None:
            with contextlib.suppress(Exception):
                await self._client_session.close()


async def open_websocket(
    url: str,
    *,
    session: aiohttp.ClientSession | None = None,
    ssl: ssl.SSLContext | bool = True,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_msg_size: int = DEFAULT_WS_MAX_FRAME,
) -> WebSocketTransport:
    """Connect to ``url`` (``ws://host:port/iotmp`` or ``wss://...``) with subprotocol ``iotmp``.

    ``session`` is the caller's :class:`aiohttp.ClientSession` (not closed by
    the transport); without one a private session is created and closed with
    the transport. ``ssl`` is passed to aiohttp: ``True`` verifies, ``False``
    accepts any certificate (like the reference clients), or an SSLContext.
    Raises :class:`ConnectionClosedError` on failure.
    """
    own_session = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        async with asyncio.timeout(timeout):
            ws = await client.ws_connect(
                url,
                protocols=(WEBSOCKET_PROTOCOL,),
                ssl=ssl,
                autoping=True,
                max_msg_size=max_msg_size,
            )
    except (OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
        if own_session:
            await client.close()
        raise ConnectionClosedError(f"cannot open websocket {url}: {exc!r}") from exc
    except BaseException:
        if own_session:
            await client.close()
        raise
    if ws.protocol != WEBSOCKET_PROTOCOL:
        _LOGGER.debug("%s: server did not confirm subprotocol %r", url, WEBSOCKET_PROTOCOL)
    return WebSocketTransport(
        ws,
        peer=url,
        secure=url.lower().startswith("wss:"),
        client_session=client if own_session else None,
    )


# --- accepting non-UTF-8 TEXT frames on the server side ----------------------
#
# aiohttp closes the connection (1007) when a TEXT frame is not valid UTF-8.
# Recent aiohttp has ``decode_text=False`` to deliver TEXT frames as bytes; we
# use it when the installed version has it. Older versions (3.11, shipped by
# Home Assistant 2025.4) get a byte-level shim instead: it sits in front of
# aiohttp's frame parser and rewrites the opcode of TEXT frames to BINARY
# before aiohttp sees them. Only the opcode nibble of the first header byte
# changes (masking covers the payload, not the header), so lengths, masks and
# control frames are untouched and aiohttp's parser does everything else.

_SUPPORTS_DECODE_TEXT: Final = (
    "decode_text" in inspect.signature(web.WebSocketResponse.__init__).parameters
)

_OPCODE_TEXT: Final = 0x1
_OPCODE_BINARY: Final = 0x2


class _TextAsBinaryShim:
    """Wraps aiohttp's WebSocket frame parser; turns TEXT frames into BINARY ones.

    Tracks frame boundaries in the raw byte stream with a tiny state machine
    (header bytes are parsed one at a time, payload bytes are skipped), so it
    works whatever way the bytes are split across ``feed_data`` calls.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._header = bytearray()  # header bytes of the current frame so far
        self._header_len = 2  # grows once the length byte is known
        self._skip = 0  # payload bytes left in the current frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def feed_eof(self) -> Any:
        return self._inner.feed_eof()

    def feed_data(self, data: bytes) -> Any:
        buf = bytearray(data)
        pos = 0
        end = len(buf)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            byte = buf[pos]
            if not self._header and byte & 0x0F == _OPCODE_TEXT:
                byte = (byte & 0xF0) | _OPCODE_BINARY
                buf[pos] = byte
            self._header.append(byte)
            pos += 1
            if len(self._header) == 2:
                length7 = self._header[1] & 0x7F
                masked = bool(self._header[1] & 0x80)
                extra = 2 if length7 == 126 else 8 if length7 == 127 else 0
                self._header_len = 2 + extra + (4 if masked else 0)
            if len(self._header) >= 2 and len(self._header) == self._header_len:
                length7 = self._header[1] & 0x7F
                if length7 == 126:
                    self._skip = int.from_bytes(self._header[2:4], "big")
                elif length7 == 127:
                    self._skip = int.from_bytes(self._header[2:10], "big")
                else:
                    self._skip = length7
                self._header.clear()
                self._header_len = 2
        return self._inner.feed_data(bytes(buf))


class _LegacyWebSocketResponse(web.WebSocketResponse):
    """WebSocketResponse for aiohttp without ``decode_text``: installs the shim.

    Relies on aiohttp 3.11 internals (``RequestHandler._payload_parser`` and
    ``_message_tail``); newer versions take the ``decode_text`` path instead.
    """

    def _post_start(self, request: web.BaseRequest, *args: Any, **kwargs: Any) -> Any:
        protocol: Any = request.protocol
        # Bytes that arrived right behind the upgrade request would be fed to
        # aiohttp's parser inside _post_start; hold them back for the shim.
        tail = getattr(protocol, "_message_tail", b"")
        if tail:
            protocol._message_tail = b""
        result = super()._post_start(request, *args, **kwargs)
        parser = getattr(protocol, "_payload_parser", None)
        if parser is None:
            _LOGGER.warning("cannot accept non-UTF-8 TEXT frames with this aiohttp version")
            if tail:
                protocol._message_tail = tail
            return result
        shim = _TextAsBinaryShim(parser)
        protocol._payload_parser = shim
        if tail:
            shim.feed_data(tail)
        return result


def create_websocket_response(*, max_msg_size: int = DEFAULT_WS_MAX_FRAME) -> web.WebSocketResponse:
    """Make a server-side WebSocketResponse (subprotocol ``iotmp``, raw TEXT frames)."""
    kwargs: dict[str, Any] = {
        "protocols": (WEBSOCKET_PROTOCOL,),
        "compress": False,
        "max_msg_size": max_msg_size,
        "autoping": True,
    }
    if _SUPPORTS_DECODE_TEXT:
        kwargs["decode_text"] = False
        return web.WebSocketResponse(**kwargs)
    return _LegacyWebSocketResponse(**kwargs)


async def accept_websocket(
    request: web.Request, *, max_msg_size: int = DEFAULT_WS_MAX_FRAME
) -> WebSocketTransport:
    """Complete the WebSocket handshake for ``request`` and return the transport.

    The caller must keep its aiohttp handler running until the transport is
    closed, then return ``transport.ws`` (see :func:`websocket_handler`).
    """
    ws = create_websocket_response(max_msg_size=max_msg_size)
    await ws.prepare(request)
    remote = request.remote or "?"
    peername = request.transport.get_extra_info("peername") if request.transport else None
    peer = _format_peer(peername) if peername else remote
    return WebSocketTransport(ws, peer=peer, secure=request.secure)


def websocket_handler(
    on_connection: Callable[[WebSocketTransport], Awaitable[None]],
    *,
    max_msg_size: int = DEFAULT_WS_MAX_FRAME,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Build an aiohttp handler to mount at :data:`WEBSOCKET_PATH`.

    ``on_connection(transport)`` runs for the whole life of the connection
    (typically: create a server :class:`~.session.Session`, ``accept``, then
    ``wait_closed``). The transport is closed when it returns or raises.

    Example::

        app.router.add_get(WEBSOCKET_PATH, websocket_handler(serve_device))
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        transport = await accept_websocket(request, max_msg_size=max_msg_size)
        try:
            await on_connection(transport)
        except Exception:
            _LOGGER.exception("%s: websocket connection handler failed", transport.peer)
        finally:
            await transport.close()
        assert isinstance(transport.ws, web.WebSocketResponse)
        return transport.ws

    return handle


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "READ_LIMIT",
    "WEBSOCKET_PATH",
    "WEBSOCKET_PROTOCOL",
    "ProtocolTransport",
    "Receiver",
    "Transport",
    "WebSocketTransport",
    "accept_websocket",
    "client_ssl_context",
    "create_websocket_response",
    "open_tcp",
    "open_websocket",
    "server_ssl_context",
    "start_tcp_server",
    "websocket_handler",
]
