"""Everything MQTT of one server, started and stopped with the server.

Broker (built in) or connection (external), bridge, discovery, MQTT devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from ..config import ConfigError
from .bridge import Bridge
from .connection import BrokerConnection, client_tls_context
from .discovery import Discovery
from .mqtt_devices import MqttDevices
from .settings import MqttConfig

if TYPE_CHECKING:
    from ..app import IotmpServer
    from .broker import BuiltinBroker

_LOGGER = logging.getLogger(__name__)

RECONCILE_PERIOD = 30.0


class MqttService:
    """The ``mqtt:`` feature of an :class:`~iotmp.server.app.IotmpServer`."""

    def __init__(self, server: IotmpServer, config: MqttConfig) -> None:
        self.server = server
        self.config = config
        self.broker: BuiltinBroker | None = None
        self.connection: BrokerConnection | None = None
        self.bridge = Bridge(server, config, self._publish)
        self.discovery = Discovery(server, config, self.bridge, self._publish)
        self.devices = MqttDevices(server, config, self._publish)
        self.bridge.on_resources = self.discovery.device_changed
        self._reconcile: asyncio.Task[None] | None = None

    @property
    def port(self) -> int | None:
        """The built-in broker's port (None with an external broker)."""
        return self.broker.port if self.broker is not None else None

    @property
    def tls_port(self) -> int | None:
        """The built-in broker's TLS port, when it has one."""
        return self.broker.tls_port if self.broker is not None else None

    def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if self.connection is not None:
            self.connection.publish(topic, payload, retain=retain)

    def _on_message(self, topic: str, data: bytes) -> None:
        if self.bridge.handle(topic, data):
            return
        self.devices.handle_external(topic, data)

    async def _on_connect(self) -> None:
        connection = self.connection
        assert connection is not None
        for topic, payload in self.bridge.publish_all():
            await connection.publish_now(topic, payload, retain=True)
        for topic, payload in self.discovery.publish_all():
            await connection.publish_now(topic, payload, retain=True)

    async def start(self) -> None:
        """Start the broker (built in) and the server's client session."""
        config = self.config
        if config.builtin:
            try:
                from .broker import BuiltinBroker  # noqa: PLC0415 - amqtt only for this
            except ImportError as exc:
                raise ConfigError("the built-in MQTT broker needs amqtt (iotmp[mqtt])") from exc
            self.broker = BuiltinBroker(self.server, config)
            self.devices.attach_broker(self.broker.authority)
            self.discovery.owners = self.broker.authority.discovery_owners
            await self.broker.start()
            assert self.broker.port is not None
            # Ports chosen by the system are kept: a restart listens on the same ones.
            config = replace(config, port=self.broker.port, tls_port=self.broker.tls_port)
            self.config = config
            self.broker.config = config
            host, port = self.broker.host, self.broker.port
            username: str | None = self.broker.authority.server_username
            password: str | None = self.broker.authority.server_password
            tls = None
        else:
            problem = self.devices.claim_conflicts()
            if problem:
                raise ConfigError(problem)
            assert config.host is not None
            host, port = config.host, config.port
            username, password = config.username, config.password
            tls = client_tls_context(config.ca_file) if config.tls else None
        subscriptions = self.bridge.command_filters() + self.devices.external_filters()
        self.connection = BrokerConnection(
            config,
            host=host if host not in ("0.0.0.0", "::", "") else "127.0.0.1",
            port=port,
            username=username,
            password=password,
            tls_context=tls,
            on_message=self._on_message,
            on_connect=self._on_connect,
            subscriptions=subscriptions,
        )
        self.devices.start()
        self.bridge.start()
        self.connection.start()
        self._reconcile = asyncio.get_running_loop().create_task(self._reconcile_loop())

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the server's own client is connected to the broker."""
        assert self.connection is not None
        await asyncio.wait_for(self.connection.connected.wait(), timeout)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_PERIOD)
            self.reconcile()

    def reconcile(self) -> None:
        """Clear the topics of devices that were deleted."""
        self.bridge.reconcile()
        self.discovery.reconcile()

    async def stop(self) -> None:
        """Publish ``offline``, disconnect, stop the broker."""
        if self._reconcile is not None:
            self._reconcile.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconcile
            self._reconcile = None
        self.bridge.close()
        self.devices.stop()
        if self.connection is not None:
            await self.connection.stop()
            self.connection = None
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None
