"""The server object: wires configuration, registry, auth, streams, listeners and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from iotmp.protocol.transport import server_ssl_context

from .access_log import ACCESS_LOGGER, AccessLog
from .accounts import Accounts
from .alarms import Alarms
from .app_websockets import AppSockets
from .auth import TokenAuthority
from .buckets import Buckets
from .config import DeviceConfig, ServerConfig, UserConfig, validate
from .device_calls import DeviceCalls
from .device_link import DeviceLink
from .device_requests import ServerResources
from .endpoints import Endpoints
from .event_subscriptions import EventSubscriptions
from .events import EventBus
from .feature import Feature
from .handshake_log import HandshakeLog
from .http_api import RestApi, error_middleware
from .http_devices import HttpDevices
from .http_errors import handler_class, make_handler
from .http_limits import (
    HttpConnectionGuard,
    install_log_filters,
    start_http_listener,
    stop_http_listener,
)
from .listeners import DeviceGateway
from .properties import Properties
from .registry import DeviceRegistry, DeviceState
from .routes_resources import ResourceRoutes
from .streams import StreamHub
from .throttle import LoginThrottle
from .tls import HttpsSite

if TYPE_CHECKING:
    from .mqtt.service import MqttService
    from .storage.repository import Storage

_LOGGER = logging.getLogger(__name__)


def url_host(host: str) -> str:
    """Host part for URLs: wildcard binds become loopback, IPv6 gets brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


class IotmpServer:
    """A local IOTMP server with a Thinger.io-compatible REST + WebSocket API.

    ``await start()`` binds the HTTP port (REST, app WebSockets, device
    WebSocket ``/iotmp``) and the device TCP/TLS ports; ports given as 0 are
    chosen by the system and then kept, so ``stop()`` + ``start()`` reuses
    them. Device and user state (registry, revoked tokens) survive a restart.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = validate(config)
        self.registry = DeviceRegistry(self.config.devices)
        self.accounts = Accounts(self)
        secret = self.config.secret
        if not secret:
            secret = secrets.token_urlsafe(32)
            _LOGGER.info("no secret configured: using one generated and kept in the database")
        self.auth = TokenAuthority(
            secret,
            server_name=self.config.server_name or "",
            known_user=self.accounts.known_user,
            check_password=self.accounts.check_password,
            use_refresh_token=self.accounts.use_refresh_token,
            access_token_ttl=self.config.access_token_ttl,
            refresh_token_ttl=self.config.refresh_token_ttl,
        )
        limits = self.config.limits
        self.throttle = LoginThrottle(
            self.config.login_delay,
            self.config.login_delay_max,
            max_wait=limits.login_max_wait,
            distributed_addresses=limits.login_distributed_addresses,
        )
        self.http_guard = HttpConnectionGuard(limits)
        self._http_listener: asyncio.Server | None = None
        self._undo_log_filters: Callable[[], None] | None = None
        self.handshake_log = HandshakeLog()
        self._handler_cls = handler_class(self.handshake_log)
        self.hub = StreamHub(self._link_of)
        self.events = EventBus()
        # What devices ask of the server (spec 11): each feature registers its codes.
        self.server_resources = ServerResources()
        self.properties = Properties(self)
        self.buckets = Buckets(self)
        self.endpoints = Endpoints(self)
        self.alarms = Alarms(self)
        self.device_calls = DeviceCalls(self)
        self.event_subscriptions = EventSubscriptions(self)
        self.app_sockets = AppSockets(self)
        self.gateway = DeviceGateway(self)
        self.http_devices = HttpDevices(self)
        self.registry.add_listener(self.app_sockets.device_state_changed)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self.https_port: int | None = None
        self.running = False
        self.mqtt: MqttService | None = None
        if self.config.mqtt is not None:
            from .mqtt import load_service  # noqa: PLC0415 - optional extra

            self.mqtt = load_service(self, self.config.mqtt)

    # -- users and devices -------------------------------------------------------

    def add_user(self, name: str, password: str | None = None) -> None:
        """Add (or update) a user at runtime (stored in the database)."""
        user = UserConfig(name, password)
        users = (*(u for u in self.config.users if u.name != name), user)
        self.config = replace(self.config, users=users)
        self.accounts.add_user(user)

    def add_device(self, device: DeviceConfig) -> DeviceState:
        """Register a device at runtime (its user must exist; stored in the database)."""
        if not self.accounts.known_user(device.user):
            raise ValueError(f"unknown user {device.user!r}")
        devices = (*(d for d in self.config.devices if d.id != device.id), device)
        self.config = validate(replace(self.config, devices=devices))
        return self.accounts.add_device(device)

    @property
    def storage(self) -> Storage:
        """The open database (raises RuntimeError before :meth:`start`)."""
        storage = self.accounts.storage
        if storage is None:
            raise RuntimeError("the server's storage is not open (start the server first)")
        return storage

    @property
    def features(self) -> tuple[Feature, ...]:
        """The server-resource features, in start order (stopped in reverse)."""
        return (
            self.properties,
            self.buckets,
            self.endpoints,
            self.alarms,
            self.device_calls,
            self.event_subscriptions,
        )

    def _link_of(self, device_id: str) -> DeviceLink | None:
        state = self.registry.get(device_id)
        return None if state is None else state.link

    def devices_online(self) -> list[str]:
        """Ids of the devices connected now."""
        return self.registry.online()

    async def wait_device_connected(
        self,
        device_id: str,
        timeout: float | None = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until ``device_id`` is online (described and attached)."""
        await self.registry.wait_connected(device_id, timeout)

    async def wait_device_disconnected(
        self,
        device_id: str,
        timeout: float | None = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until ``device_id`` is offline."""
        state = self.registry.get(device_id)
        if state is None:
            raise KeyError(device_id)
        async with asyncio.timeout(timeout):
            while state.connected:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    # -- tokens --------------------------------------------------------------

    def issue_token(
        self, user: str, *, expires_in: float | None = None, jti: str | None = None
    ) -> str:
        """Issue a full-access token for ``user`` (no expiry unless ``expires_in``)."""
        return self.accounts.issue_token(user, expires_in=expires_in, jti=jti)

    def revoke_token(self, token_or_jti: str) -> None:
        """Make a token (or token id) unusable (stored in the database)."""
        self.accounts.revoke(token_or_jti)

    # -- background tasks --------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in a task owned by the server (cancelled at stop)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("background task failed", exc_info=task.exception())

    # -- lifecycle -----------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """Base URL of the REST API (``http://host:port``)."""
        return f"http://{url_host(self.config.host)}:{self.http_port}"

    @property
    def https_url(self) -> str | None:
        """Base URL of the API over TLS (``https://host:port``), None without TLS."""
        if self.https_port is None:
            return None
        return f"https://{url_host(self.config.host)}:{self.https_port}"

    @property
    def tcp_port(self) -> int | None:
        """Bound device TCP port."""
        return self.gateway.tcp_port or self.config.tcp_port

    @property
    def tls_port(self) -> int | None:
        """Bound device TLS port (None without TLS)."""
        return self.gateway.tls_port if self.config.tls_enabled else None

    def build_app(self) -> web.Application:
        """Build the aiohttp application (REST, app WebSockets, device WebSocket)."""
        # Body size is checked by the handlers (413 with a JSON body); aiohttp's own
        # limit only has to be above it.
        app = web.Application(
            middlewares=[self.http_guard.middleware, error_middleware],
            client_max_size=self.config.max_body_bytes + 1024,
        )
        app.add_routes(self.http_devices.routes())
        api = RestApi(self)
        extra = ResourceRoutes(self, api)
        app.add_routes(extra.routes())
        for feature in self.features:
            app.add_routes(feature.routes())
        app.add_routes(api.routes())
        app.add_routes(
            [
                web.get("/iotmp", self.gateway.websocket),
                web.get("/v1/users/{user}/events", self.app_sockets.events_handler(1)),
                web.get("/v2/users/{user}/events", self.app_sockets.events_handler(2)),
            ]
        )
        app.add_routes(extra.fallback_routes())  # the v1 resource catch-all goes last
        return app

    async def start(self) -> None:
        """Bind every listener."""
        if self.running:
            return
        config = self.config
        try:
            await self.accounts.open()
            for feature in self.features:
                await feature.start()
            self._undo_log_filters = install_log_filters()
            if config.http_port is not None:
                runner = web.AppRunner(
                    self.build_app(),
                    access_log=ACCESS_LOGGER,
                    access_log_class=AccessLog,
                    handle_signals=False,
                    shutdown_timeout=2.0,
                    keepalive_timeout=config.limits.http_idle_timeout,
                )
                await runner.setup()
                self._runner = runner
                handler_cls = self._handler_cls
                self._http_listener = await start_http_listener(
                    runner,
                    config.host,
                    config.http_port,
                    self.http_guard,
                    handler_factory=lambda: make_handler(runner, handler_cls),
                )
                self.http_port = int(self._http_listener.sockets[0].getsockname()[1])
            if config.https_enabled and self._runner is not None:
                self.https_port = await self._start_https(self._runner)
            await self.gateway.start()
            if self.mqtt is not None:
                await self.mqtt.start()
        except BaseException:
            await self._shutdown()
            raise
        # Keep the chosen ports for a restart on the same ports.
        self.config = replace(
            self.config,
            http_port=self.http_port if config.http_port is not None else None,
            https_port=self.https_port if config.https_enabled else config.https_port,
            tcp_port=self.gateway.tcp_port if config.tcp_port is not None else None,
            tls_port=self.gateway.tls_port if config.tls_enabled else config.tls_port,
        )
        if not self.auth.server_name:
            self.auth.server_name = f"{url_host(config.host)}:{self.http_port}"
        self.running = True
        _LOGGER.info(
            "iotmp server: http %s, https %s, device tcp %s, tls %s",
            self.http_url if self.http_port else "off",
            self.https_url or "off",
            self.tcp_port or "off",
            self.tls_port or "off",
        )

    async def _start_https(self, runner: web.AppRunner) -> int:
        config = self.config
        assert config.tls_cert is not None and config.https_port is not None
        site = HttpsSite(
            runner,
            config.host,
            config.https_port,
            server_ssl_context(config.tls_cert, config.tls_key),
            report=self.handshake_log.failed,
            handler_cls=self._handler_cls,
        )
        await site.start()
        return site.port or config.https_port

    async def stop(self) -> None:
        """Close every connection and listener (state is kept for a restart)."""
        if not self.running:
            return
        self.running = False
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self.mqtt is not None:
            await self.mqtt.stop()
        self.http_devices.close()
        self.gateway.closing = True
        await self.gateway.stop()
        await self.app_sockets.close_all()
        await stop_http_listener(self._http_listener, self.http_guard)
        self._http_listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.hub.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for feature in reversed(self.features):
            await feature.stop()
        await self.accounts.close()
        if self._undo_log_filters is not None:
            self._undo_log_filters()
            self._undo_log_filters = None

    async def __aenter__(self) -> IotmpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start and run until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await self.stop()
