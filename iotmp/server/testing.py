"""A local server for tests (the contract in ``docs/architecture.md``).

```python
from iotmp.server.testing import run_test_server, TestDevice

async with run_test_server(devices=[TestDevice("lamp", credential="pw", name="Desk lamp")],
                           user="alice", request_timeout=2.0, keep_alive=60) as server:
    server.http_url          # "http://127.0.0.1:<port>" (REST, app WebSockets, /iotmp)
    server.tcp_port          # IOTMP TCP listener on 127.0.0.1
    server.https_url         # "https://127.0.0.1:<port>" with tls_cert/tls_key, else None
    server.user, server.password, server.token
    server.issue_token(expires_in=None) -> str
    server.revoke_token(token)
    await server.stop(); await server.start()    # same ports
    server.add_device(TestDevice(...))
    await server.wait_device_connected("lamp", timeout=5)
    server.devices_online() -> list[str]
```

Everything binds to 127.0.0.1 on ports chosen by the system.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Final

from .app import IotmpServer
from .config import DeviceConfig, ServerConfig, UserConfig
from .limits import ServerLimits
from .registry import DeviceState


@dataclass(frozen=True, slots=True)
class TestDevice:
    """A device the test server accepts. ``user`` defaults to the server's user."""

    __test__ = False  # not a pytest test class

    id: str
    credential: str = "secret"
    name: str = ""
    description: str = ""
    type: str = "Generic"
    user: str | None = None
    enabled: bool = True

    def to_config(self, default_user: str) -> DeviceConfig:
        """Return the server-side device configuration."""
        return DeviceConfig(
            id=self.id,
            user=self.user or default_user,
            credential=self.credential,
            name=self.name,
            description=self.description,
            type=self.type,
            enabled=self.enabled,
        )


class TestServer:
    """Handle on a running test server (see the module docstring)."""

    __test__ = False

    def __init__(self, server: IotmpServer, user: str, password: str) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.token = server.issue_token(user)

    # -- addresses -----------------------------------------------------------

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self.server.http_url

    @property
    def https_url(self) -> str | None:
        """``https://127.0.0.1:<port>`` (when started with a certificate)."""
        return self.server.https_url

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>`` (app WebSockets)."""
        return "ws" + self.http_url.removeprefix("http")

    @property
    def device_ws_url(self) -> str:
        """WebSocket URL devices connect to (``ws://127.0.0.1:<port>/iotmp``)."""
        return self.ws_url + "/iotmp"

    @property
    def host(self) -> str:
        """Where the device listeners are (always 127.0.0.1)."""
        return "127.0.0.1"

    @property
    def tcp_port(self) -> int:
        """The device TCP port."""
        port = self.server.tcp_port
        assert port is not None
        return port

    @property
    def tls_port(self) -> int | None:
        """The device TLS port (when started with a certificate)."""
        return self.server.tls_port

    @property
    def config(self) -> ServerConfig:
        """The server configuration in force."""
        return self.server.config

    # -- tokens ----------------------------------------------------------------

    def issue_token(self, expires_in: float | None = None, *, user: str | None = None) -> str:
        """Issue a new access token (for ``user``, default the test user)."""
        return self.server.issue_token(user or self.user, expires_in=expires_in)

    def revoke_token(self, token: str) -> None:
        """Later API calls with ``token`` get 401."""
        self.server.revoke_token(token)

    # -- devices -------------------------------------------------------------

    def add_device(self, device: TestDevice | DeviceConfig) -> DeviceState:
        """Register a device at runtime."""
        config = device.to_config(self.user) if isinstance(device, TestDevice) else device
        return self.server.add_device(config)

    def add_user(self, name: str, password: str | None = None) -> None:
        """Add another account (e.g. to test 403)."""
        self.server.add_user(name, password)

    def device(self, device_id: str) -> DeviceState:
        """Server-side state of a device (connection, cached description)."""
        state = self.server.registry.get(device_id)
        if state is None:
            raise KeyError(device_id)
        return state

    def devices_online(self) -> list[str]:
        """Ids of the connected devices."""
        return self.server.devices_online()

    async def wait_device_connected(
        self,
        device_id: str,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until the device is connected and described."""
        await self.server.wait_device_connected(device_id, timeout)

    async def wait_device_disconnected(
        self,
        device_id: str,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until the device is offline."""
        await self.server.wait_device_disconnected(device_id, timeout)

    # -- lifecycle -------------------------------------------------------------

    async def stop(self) -> None:
        """Stop everything (devices and app sockets are disconnected)."""
        await self.server.stop()

    async def start(self) -> None:
        """Start again on the same ports."""
        await self.server.start()


TEST_LIMITS: Final = ServerLimits(min_stream_interval=0.01)
"""Limits of test servers: the defaults, but sub-second streams (tests run fast)."""


@asynccontextmanager
async def run_test_server(
    devices: Iterable[TestDevice | DeviceConfig] = (),
    *,
    user: str = "alice",
    password: str | None = None,
    request_timeout: float = 2.0,
    keep_alive: float = 60.0,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    **overrides: Any,
) -> AsyncIterator[TestServer]:
    """Run a server on 127.0.0.1 (ephemeral ports) for the duration of the block.

    ``overrides`` are further :class:`~iotmp.server.config.ServerConfig` fields
    (``websocket_frames="legacy"``, ``max_body_bytes=...``, ``login_delay=...``).
    ``limits`` defaults to :data:`TEST_LIMITS` (streams faster than 1 s allowed).
    With ``tls_cert``/``tls_key`` a TLS device listener and the HTTPS API run too.
    Without a ``data_dir``/``database`` override the database is a SQLite file in a
    temporary folder removed afterwards.
    """
    password = password or secrets.token_urlsafe(9)
    device_configs = tuple(d.to_config(user) if isinstance(d, TestDevice) else d for d in devices)
    extra_users = {d.user for d in device_configs} - {user}
    users = (UserConfig(user, password), *(UserConfig(u) for u in sorted(extra_users)))
    overrides.setdefault("limits", TEST_LIMITS)
    config = ServerConfig(
        host="127.0.0.1",
        http_port=0,
        tcp_port=0,
        tls_port=0 if tls_cert else None,
        https_port=0 if tls_cert else None,
        tls_cert=tls_cert,
        tls_key=tls_key,
        secret=secrets.token_urlsafe(32),
        request_timeout=request_timeout,
        keep_alive=keep_alive,
        users=users,
        devices=device_configs,
        **overrides,
    )
    with tempfile.TemporaryDirectory(prefix="iotmp-test-") as scratch:
        if config.data_dir is None and config.database is None:
            config = replace(config, data_dir=scratch)
        server = IotmpServer(config)
        await server.start()
        try:
            yield TestServer(server, user, password)
        finally:
            await server.stop()


__all__ = ["TEST_LIMITS", "TestDevice", "TestServer", "run_test_server"]
