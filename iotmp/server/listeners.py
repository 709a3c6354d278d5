"""Device listeners (TCP, TLS, WebSocket ``/iotmp``) and the life of a device connection.

For every accepted connection: IOTMP CONNECT (credentials from the config;
failed logins from one address are answered progressively later, and the
server closes the socket itself after an ERROR), then DESCRIBE of the whole
device, then the device is marked online until its session ends (peer close,
garbage, oversized frame, keep-alive timeout after ``ka * 1.15`` s of
silence -- at least 75 s for a device that declared no ``ka`` -- or
replacement by a newer connection of the same device).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from iotmp.protocol.errors import (
    AuthenticationError,
    IotmpError,
)
from iotmp.protocol.limits import Limits
from iotmp.protocol.ratelimit import LogLimiter
from iotmp.protocol.session import KEEP_ALIVE_TIMEOUT_FACTOR, Role, Session, SessionConfig
from iotmp.protocol.transport import (
    WEBSOCKET_PROTOCOL,
    ProtocolTransport,
    Transport,
    accept_websocket,
    server_ssl_context,
)

from .device_link import DeviceLink, peer_host
from .limits import ConnectionCounter
from .registry import DeviceState
from .throttle import TooManyAttempts
from .tls import TlsAcceptor, format_peer

if TYPE_CHECKING:
    from .app import IotmpServer
    from .config import ServerConfig
    from .device_requests import DeviceRequests

_LOGGER = logging.getLogger(__name__)

REFERENCE_KEEP_ALIVE = 60.0
"""Seconds between the KEEP_ALIVEs of reference devices (hard-coded, never declared)."""
KEEP_ALIVE_MARGIN = 6.0
"""Slack on top of ``60 x 1.15`` for a late reference device (scheduling, network)."""
_QUIET_REASONS = ("protocol error", "keep-alive timeout")  # the session logged these
_LOG_LIMITER = LogLimiter()  # lines any client can cause are rate-limited per cause


class DeviceGateway:
    """Accepts device connections on every transport and runs their lifecycle."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        self._sessions: set[Session] = set()
        self._transports: set[Transport] = set()
        self._tcp: asyncio.Server | None = None
        self._tls: asyncio.Server | None = None
        self._generation: dict[str, int] = {}
        self._pending: dict[str, Session] = {}
        self._session_configs: tuple[ServerConfig, SessionConfig] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()  # connections not yet attached
        self._tls_acceptor: TlsAcceptor | None = None
        limits = server.config.limits
        self._unauthenticated = ConnectionCounter(
            limits.unauthenticated_per_address, limits.unauthenticated_total
        )
        self.closing = False
        # A TLS context made beforehand (an embedding event loop loads certificates
        # in an executor); None: built from tls_cert/tls_key at start.
        self.ssl_context: ssl.SSLContext | None = None

    # -- listeners -------------------------------------------------------------

    async def start(self) -> None:
        """Open the TCP (and TLS) listeners."""
        config = self.server.config
        self.closing = False
        loop = asyncio.get_running_loop()
        if config.tcp_port is not None:
            self._tcp = await loop.create_server(
                self._new_transport, config.host, config.tcp_port, reuse_address=True
            )
        if config.tls_enabled:
            assert config.tls_cert is not None and config.tls_port is not None
            context = self.ssl_context or server_ssl_context(config.tls_cert, config.tls_key)
            # Accepted in the clear, then the TLS handshake: failures get logged.
            self._tls_acceptor = TlsAcceptor(
                context,
                self._new_transport,
                report=self._tls_failed,
                what="tls",
                handshake_timeout=config.limits.handshake_timeout,
            )
            self._tls = await loop.create_server(
                self._tls_acceptor, config.host, config.tls_port, reuse_address=True
            )

    @staticmethod
    def _port(server: asyncio.Server | None) -> int | None:
        if server is None or not server.sockets:
            return None
        return int(server.sockets[0].getsockname()[1])

    @property
    def tcp_port(self) -> int | None:
        """Bound TCP port (None when not listening)."""
        return self._port(self._tcp)

    @property
    def tls_port(self) -> int | None:
        """Bound TLS port (None when not listening)."""
        return self._port(self._tls)

    async def stop(self) -> None:
        """Stop listening and close every device connection."""
        self.closing = True
        for listener in (self._tcp, self._tls):
            if listener is not None:
                listener.close()
        if self._tls_acceptor is not None:
            self._tls_acceptor.cancel()
        sessions = list(self._sessions)
        await asyncio.gather(
            *(s.close("server shutting down") for s in sessions), return_exceptions=True
        )
        transports = list(self._transports)
        await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)
        for listener in (self._tcp, self._tls):
            if listener is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await listener.wait_closed()
        self._tcp = self._tls = None

    # Each device connection is one ProtocolTransport (its own asyncio protocol). Once
    # connected it starts a handshake task of ours, which ends when the device is
    # attached: an idle TCP/TLS device then holds no task or coroutine at all (its
    # transport pushes what arrives to the session).

    def _tls_failed(self, address: str, what: str, detail: object) -> None:
        # Looked up per failure: the server's handshake log may be replaced.
        self.server.handshake_log.failed(address, what, detail)

    def _new_transport(self) -> ProtocolTransport:
        return ProtocolTransport(self._on_connection)

    def _on_connection(self, transport: ProtocolTransport) -> None:
        task = asyncio.get_running_loop().create_task(self._open_connection(transport))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _open_connection(self, transport: ProtocolTransport) -> None:
        try:
            session = await self.open(transport)
        except Exception:
            _LOGGER.exception("%s: device connection failed", transport.peer)
            session = None
        if session is None:
            await transport.close()
        # Else the session runs on in its own tasks and cleans up when it closes.

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """Serve ``/iotmp`` (devices over WebSocket)."""
        if not web.WebSocketResponse(protocols=(WEBSOCKET_PROTOCOL,)).can_prepare(request).ok:
            self.server.handshake_log.failed(
                format_peer(request.transport.get_extra_info("peername"))
                if request.transport
                else request.remote or "?",
                "websocket",
                f"{request.method} {request.path} without a WebSocket upgrade",
            )
            raise web.HTTPBadRequest(reason="a WebSocket upgrade is required")
        transport = await accept_websocket(
            request, max_msg_size=self.server.config.max_message_size + 64
        )
        try:
            await self.serve(transport)
        except Exception:
            _LOGGER.exception("%s: device websocket failed", transport.peer)
        finally:
            await transport.close()
        ws = transport.ws
        assert isinstance(ws, web.WebSocketResponse)
        return ws

    # -- one connection ------------------------------------------------------------

    def _session_config(self) -> SessionConfig:
        config = self.server.config
        cached = self._session_configs
        if cached is not None and cached[0] is config:
            return cached[1]  # one shared (never mutated) config for every session
        limits = config.limits
        session_config = SessionConfig(
            keep_alive=config.keep_alive,
            # A device that declares no ka may be a reference device keeping to its 60 s.
            min_timeout_without_ka=REFERENCE_KEEP_ALIVE * KEEP_ALIVE_TIMEOUT_FACTOR
            + KEEP_ALIVE_MARGIN,
            request_timeout=config.request_timeout,
            handshake_timeout=limits.handshake_timeout,
            limits=Limits(max_message_size=config.max_message_size),
            concurrent_requests=True,
            handshake_limits=limits.handshake_limits,
            max_message_rate=limits.device_message_rate,
            message_burst=limits.device_message_burst,
        )
        self._session_configs = (config, session_config)
        return session_config

    async def serve(self, transport: Transport) -> None:
        """Run one device connection from CONNECT to close."""
        session = await self.open(transport)
        if session is not None:
            await session.wait_closed()  # (its cleanup runs before this returns)

    async def open(self, transport: Transport) -> Session | None:
        """CONNECT, DESCRIBE and attach a device; returns its running session.

        The session cleans up after itself when it closes (``on_closed``). None
        when the device was refused or went away first (everything is cleaned up
        then; closing ``transport`` is the caller's job).
        """
        if self.closing:
            await transport.close()
            return None
        address = peer_host(transport.peer)
        if not self._unauthenticated.try_enter(address):
            _LOG_LIMITER.log(
                _LOGGER,
                logging.WARNING,
                "unauthenticated cap",
                "%s: too many unauthenticated device connections (%d open); refused",
                address,
                self._unauthenticated.count,
            )
            await transport.close()
            return None
        self._transports.add(transport)
        session = Session(
            transport,  # counts rx/tx bytes itself, for the stats routes
            Role.SERVER,
            config=self._session_config(),
            name=f"device {transport.peer}",
        )
        self._sessions.add(session)
        counted = [True]

        def authenticated() -> None:
            if counted[0]:
                counted[0] = False
                self._unauthenticated.leave(address)

        attached = False
        try:
            attached = await self._serve_session(session, transport, address, authenticated)
        finally:
            authenticated()
            if not attached:
                self._sessions.discard(session)
                self._transports.discard(transport)
                if not session.is_closed:
                    await session.close("connection handler ended")
        return session if attached else None

    async def _serve_session(
        self,
        session: Session,
        transport: Transport,
        address: str,
        authenticated: Callable[[], None],
    ) -> bool:
        """Authenticate and attach; True once the device is online (see :meth:`open`)."""
        accepted: list[DeviceState] = []
        throttle = self.server.throttle
        registry = self.server.registry

        async def authenticate(user: str, device: str, credential: str, _params: Any) -> bool:
            who = f"device:{user}/{device}"
            try:
                delay = throttle.reserve(who, address)
            except TooManyAttempts:
                _LOG_LIMITER.log(
                    _LOGGER,
                    logging.INFO,
                    "device login throttled",
                    "device login of %r/%r from %s refused unchecked: too many failures",
                    user,
                    device,
                    address,
                )
                return False
            if delay > 0:
                await asyncio.sleep(delay)
            state = await registry.authenticate(user, device, credential)
            if state is None:
                throttle.failure(who, address)
                # The handshake log says it once per address per minute.
                self.server.handshake_log.failed(
                    address,
                    "login refused",
                    f"user {user!r} device {device!r} ({throttle.failures(address)} failures)",
                )
                return False
            throttle.success(who, address)
            accepted.append(state)
            return True

        try:
            await session.accept(authenticate, timeout=self.server.config.limits.handshake_timeout)
        except AuthenticationError:
            return False  # answered ERROR and closed by the session
        except IotmpError as exc:
            self.server.handshake_log.failed(address, "connect", exc)
            return False
        authenticated()
        state = accepted[0]
        requests = self.server.server_resources.handler_for(state)
        session.handler = requests  # the device may call server resources from now on
        link: DeviceLink | None = None
        try:
            link = await self._describe_and_attach(session, state, address)
        finally:
            if link is None:
                requests.session_closed()
        if link is None:
            return False
        # An object with slots, not a closure: closure cells cost more per idle device.
        session.on_closed = _AttachedDevice(self, state, link, requests, transport).closed
        return True

    async def _describe_and_attach(
        self, session: Session, state: DeviceState, address: str
    ) -> DeviceLink | None:
        """DESCRIBE the authenticated device and mark it online; None if it went away first."""
        registry = self.server.registry
        device_id = state.id
        generation = self._generation.get(device_id, 0) + 1
        self._generation[device_id] = generation

        # A newer connection replaces the old one (and any still describing).
        pending = self._pending.pop(device_id, None)
        if pending is not None:
            self.server.spawn(pending.close("replaced by a newer connection"))
        old = state.link
        if old is not None:
            if registry.detach(state, old):
                self.server.hub.device_disconnected(device_id)
                _LOGGER.info("device %s: replaced by a new connection from %s", device_id, address)
            self.server.spawn(old.close("replaced by a newer connection"))

        link = DeviceLink(device_id, session, self.server.config.request_timeout, address)
        self._pending[device_id] = session
        try:
            description = await link.describe()
        except IotmpError as exc:
            if session.is_closed:
                return None
            _LOG_LIMITER.log(
                _LOGGER,
                logging.WARNING,
                "describe failed",
                "device %s: DESCRIBE failed (%s); resources unknown",
                device_id,
                exc,
            )
            state.clear_description()
        else:
            state.set_description(description)
        finally:
            if self._pending.get(device_id) is session:
                del self._pending[device_id]
        if session.is_closed or self._generation.get(device_id) != generation or self.closing:
            return None
        registry.attach(state, link)
        self.server.hub.device_connected(device_id)
        _LOGGER.info(
            "device %s (%s) connected from %s over %s",
            device_id,
            state.user,
            address,
            session.transport.kind,
        )
        return link

    def _forget(self, session: Session, transport: Transport) -> None:
        self._sessions.discard(session)
        self._transports.discard(transport)

    def _detached(self, state: DeviceState, link: DeviceLink, reason: str) -> None:
        """Mark an attached device offline once its session closed (if still its link)."""
        if self.server.registry.detach(state, link):
            device_id = state.id
            self.server.hub.device_disconnected(device_id)
            if any(reason.startswith(q) for q in _QUIET_REASONS):
                _LOGGER.debug("device %s disconnected: %s", device_id, reason)
            else:
                _LOGGER.info("device %s disconnected: %s", device_id, reason)


class _AttachedDevice:
    """What the gateway cleans up when the session of an online device closes."""

    __slots__ = ("gateway", "link", "requests", "state", "transport")

    def __init__(
        self,
        gateway: DeviceGateway,
        state: DeviceState,
        link: DeviceLink,
        requests: DeviceRequests,
        transport: Transport,
    ) -> None:
        self.gateway = gateway
        self.state = state
        self.link = link
        self.requests = requests
        self.transport = transport

    async def closed(self, reason: str) -> None:
        """Mark the device offline and forget the connection (the session's ``on_closed``)."""
        try:
            self.gateway._detached(self.state, self.link, reason)
        finally:
            self.requests.session_closed()
            self.gateway._forget(self.link.session, self.transport)
            await self.transport.close()
