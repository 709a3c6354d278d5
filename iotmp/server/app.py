"""The server object: wires configuration, registry, auth, streams, listeners and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from aiohttp import web

from .app_websockets import AppSockets
from .auth import TokenAuthority
from .config import DeviceConfig, ServerConfig, UserConfig, validate
from .device_link import DeviceLink
from .http_api import RestApi, error_middleware
from .http_limits import (
    HttpConnectionGuard,
    install_log_filters,
    start_http_listener,
    stop_http_listener,
)
from .listeners import DeviceGateway
from .registry import DeviceRegistry, DeviceState
from .streams import StreamHub
from .throttle import LoginThrottle

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
        self._users: dict[str, UserConfig] = {u.name: u for u in self.config.users}
        secret = self.config.secret
        if not secret:
            secret = secrets.token_urlsafe(32)
            _LOGGER.warning("no secret configured: tokens will not survive a restart")
        self.auth = TokenAuthority(
            secret,
            server_name=self.config.server_name or "",
            user_password=self._user_password,
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
        self.hub = StreamHub(self._link_of)
        self.app_sockets = AppSockets(self)
        self.gateway = DeviceGateway(self)
        self.registry.add_listener(self.app_sockets.device_state_changed)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self.running = False

    # -- users and devices -------------------------------------------------------

    def _user_password(self, name: str) -> str | None:
        return self._users[name].password

    def add_user(self, name: str, password: str | None = None) -> None:
        """Add (or update) a user at runtime."""
        user = UserConfig(name, password)
        self._users[name] = user
        users = (*(u for u in self.config.users if u.name != name), user)
        self.config = replace(self.config, users=users)

    def add_device(self, device: DeviceConfig) -> DeviceState:
        """Register a device at runtime (its user must exist)."""
        if device.user not in self._users:
            raise ValueError(f"unknown user {device.user!r}")
        devices = (*(d for d in self.config.devices if d.id != device.id), device)
        self.config = validate(replace(self.config, devices=devices))
        return self.registry.add(device)

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
        """Issue an access token for ``user`` (no expiry unless ``expires_in``)."""
        return self.auth.issue_access_token(user, expires_in=expires_in, jti=jti)

    def revoke_token(self, token_or_jti: str) -> None:
        """Make a token (or token id) unusable."""
        self.auth.revoke(token_or_jti)

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
        app.add_routes(RestApi(self).routes())
        app.add_routes(
            [
                web.get("/iotmp", self.gateway.websocket),
                web.get("/v1/users/{user}/events", self.app_sockets.events_handler(1)),
                web.get("/v2/users/{user}/events", self.app_sockets.events_handler(2)),
            ]
        )
        return app

    async def start(self) -> None:
        """Bind every listener."""
        if self.running:
            return
        config = self.config
        try:
            self._undo_log_filters = install_log_filters()
            if config.http_port is not None:
                runner = web.AppRunner(
                    self.build_app(),
                    access_log=None,
                    handle_signals=False,
                    shutdown_timeout=2.0,
                    keepalive_timeout=config.limits.http_idle_timeout,
                )
                await runner.setup()
                self._runner = runner
                self._http_listener = await start_http_listener(
                    runner, config.host, config.http_port, self.http_guard
                )
                self.http_port = int(self._http_listener.sockets[0].getsockname()[1])
            await self.gateway.start()
        except BaseException:
            await self._shutdown()
            raise
        # Keep the chosen ports for a restart on the same ports.
        self.config = replace(
            self.config,
            http_port=self.http_port if config.http_port is not None else None,
            tcp_port=self.gateway.tcp_port if config.tcp_port is not None else None,
            tls_port=self.gateway.tls_port if config.tls_enabled else config.tls_port,
        )
        if not self.auth.server_name:
            self.auth.server_name = f"{url_host(config.host)}:{self.http_port}"
        self.running = True
        _LOGGER.info(
            "iotmp server: http %s, device tcp %s, tls %s",
            self.http_url if self.http_port else "off",
            self.tcp_port or "off",
            self.tls_port or "off",
        )

    async def stop(self) -> None:
        """Close every connection and listener (state is kept for a restart)."""
        if not self.running:
            return
        self.running = False
        await self._shutdown()

    async def _shutdown(self) -> None:
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
