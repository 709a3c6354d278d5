"""The built-in broker: amqtt in process, logins and topic rights from the server.

Who may log in (username / password):

* the server's own bridge client: a random name and password made at start;
* a user: user name / the user's password or one of the user's access tokens;
  may use ``{prefix}/{user}/#``, ``{user}/#`` (Adafruit-style feeds) and read
  ``{discovery_prefix}/#`` and ``{prefix}/status``;
* a device: user name / the device credential; may use ``{user}/#`` (its feeds)
  and the topics of its topic map. What such a client publishes is the device's
  data (see :mod:`.mqtt_devices`).

Everything else is refused: anonymous logins, unknown users, wrong secrets, and
topics outside the rights above (subscribe, publish and delivery are checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.errors import BrokerError, NoDataError
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import ApplicationMessage, Session

from .authority import BrokerAuthority, Login
from .settings import MqttConfig

if TYPE_CHECKING:
    from iotmp.server.app import IotmpServer

_LOGGER = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 10.0
"""Seconds a new connection has to send its CONNECT."""

# amqtt finds its plugins by dotted name; they reach the server through this table.
_AUTHORITIES: Final[dict[str, BrokerAuthority]] = {}


class IotmpBrokerPlugin(BaseAuthPlugin, BaseTopicPlugin):  # type: ignore[misc]  # untyped amqtt
    """amqtt plugin: logins, topic rights and session events from a :class:`BrokerAuthority`."""

    @dataclass
    class Config:
        """Plugin settings: the key of the authority in ``_AUTHORITIES``."""

        authority: str = ""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.authority = _AUTHORITIES[self.config.authority]

    def _login(self, session: Session | None) -> Login | None:
        if session is None or session.client_id is None:
            return None
        return self.authority.logins.get(session.client_id)

    async def authenticate(self, *, session: Session) -> bool | None:
        """Check the CONNECT's username/password against the server."""
        login = self.authority.check_login(session.username, session.password)
        if session.client_id is None:
            return False
        if login is None:
            _LOGGER.info("mqtt: login refused for %r", session.username)
            return False
        self.authority.logins[session.client_id] = login
        return True

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        """Check a subscribe, publish or delivery against the login's rights."""
        login = self._login(session)
        if login is None or topic is None or action is None:
            return False
        return self.authority.allowed(login, topic, str(action.value))

    async def on_broker_client_connected(self, client_id: str, client_session: Session) -> None:
        """Pass the event on to the MQTT devices."""
        login = self.authority.logins.get(client_id)
        if login is not None and self.authority.on_connected is not None:
            self.authority.on_connected(client_id, login, client_session)

    async def on_broker_client_disconnected(self, client_id: str, client_session: Session) -> None:
        """Forget the login; tell the MQTT devices."""
        login = self.authority.logins.pop(client_id, None)
        if login is not None and self.authority.on_disconnected is not None:
            self.authority.on_disconnected(client_id, login, client_session)

    async def on_broker_client_subscribed(self, client_id: str, topic: str, qos: int) -> None:
        """Pass the event on to the MQTT devices."""
        login = self.authority.logins.get(client_id)
        if login is not None and self.authority.on_subscribed is not None:
            self.authority.on_subscribed(client_id, login, topic)

    async def on_broker_message_broadcast(
        self, client_id: str, message: ApplicationMessage
    ) -> None:
        """Pass the event on to the MQTT devices."""
        login = self.authority.logins.get(client_id)
        if login is not None and self.authority.on_message is not None:
            self.authority.on_message(client_id, login, message)


class _CappedReader(StreamReaderAdapter):  # type: ignore[misc]  # untyped amqtt
    """A connection's reader that refuses single reads over ``limit`` bytes.

    amqtt has no packet size limit: it reads a PUBLISH body of any announced length
    (up to 256 MB) into memory, before any check. A PUBLISH body and every CONNECT /
    SUBSCRIBE string are read in one piece, so capping each read caps each packet.
    """

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        super().__init__(reader)
        self._limit = limit
        self._refused = False

    async def read(self, n: int = -1) -> bytes:
        if not self._refused and n > self._limit:
            _LOGGER.info("mqtt: a client announced %d bytes (limit %d): closing", n, self._limit)
            self._refused = True
        if self._refused:
            # Every later read fails too: the rest of the stream is not parsed as packets.
            raise ConnectionResetError("packet too large")
        return bytes(await super().read(n))


class _SnapshotDict(dict[str, Any]):
    """A dict whose iteration works on a copy.

    amqtt 0.12.1 iterates its subscription table across ``await`` points (delivery
    of every message, retained messages on connect); a SUBSCRIBE meanwhile raised
    "dictionary changed size during iteration" and the message was lost for all.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))

    def items(self) -> Any:
        return list(super().items())


class _CheckedBroker(Broker):  # type: ignore[misc]  # untyped amqtt
    """amqtt's broker with retained messages sent only where they belong.

    amqtt 0.12.1, on every client connect, sends the retained messages matching
    *every* client's subscriptions to the new client, without the delivery
    check (another user's retained state would leak). Here a retained message
    goes out only for a subscription the session holds, and only if the topic
    rights allow the delivery.
    """

    read_limit = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subscriptions: dict[str, Any] = _SnapshotDict(self._subscriptions)

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        await self._client_connected(
            listener_name, _CappedReader(reader, self.read_limit), StreamWriterAdapter(writer)
        )

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: Any, remote_port: Any
    ) -> Any:
        # amqtt waits for the CONNECT without a time limit: a client that opens a
        # socket and sends nothing would hold it for ever.
        try:
            return await asyncio.wait_for(
                super()._initialize_client_session(reader, writer, remote_address, remote_port),
                CONNECT_TIMEOUT,
            )
        except TimeoutError:
            _LOGGER.info("mqtt: no CONNECT from %s within %g s", remote_address, CONNECT_TIMEOUT)
            with contextlib.suppress(Exception):
                await writer.close()
            raise NoDataError("no CONNECT in time") from None

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter = subscription[0]
        holders = self._subscriptions.get(topic_filter, [])
        if not any(holder is session for holder, _qos in holders):
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        qos = subscription[1]
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic, Action.RECEIVE):
                continue
            await handler.mqtt_publish(
                retained.topic, retained.data, min(qos, retained.qos or qos), retain=True
            )


class BuiltinBroker:
    """amqtt running in the server's event loop."""

    def __init__(self, server: IotmpServer, config: MqttConfig) -> None:
        self.server = server
        self.config = config
        self.authority = BrokerAuthority(server, config)
        self._broker: Broker | None = None
        self.host = config.host or server.config.host
        self.port: int | None = None
        self.tls_port: int | None = None

    def _listeners(self) -> dict[str, Any]:
        port = self.config.port or _free_port(self.host)
        self.port = port
        listeners: dict[str, Any] = {
            "default": {"type": "tcp", "bind": f"{self.host}:{port}", "max_connections": 0}
        }
        server_config = self.server.config
        if self.config.tls_port is not None and server_config.tls_cert and server_config.tls_key:
            tls_port = self.config.tls_port or _free_port(self.host)
            self.tls_port = tls_port
            listeners["tls"] = {
                "type": "tcp",
                "bind": f"{self.host}:{tls_port}",
                "ssl": True,
                "certfile": server_config.tls_cert,
                "keyfile": server_config.tls_key,
            }
        return listeners

    async def start(self) -> None:
        """Bind the broker's listeners."""
        _AUTHORITIES[self.authority.key] = self.authority
        plugin = f"{IotmpBrokerPlugin.__module__}.{IotmpBrokerPlugin.__qualname__}"
        config = {
            "listeners": self._listeners(),
            "timeout_disconnect_delay": 0,
            "plugins": {plugin: {"authority": self.authority.key}},
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            broker = _CheckedBroker(config, loop=asyncio.get_running_loop())
        # A PUBLISH body holds the topic too; strings of CONNECT/SUBSCRIBE are <= 64 KiB.
        broker.read_limit = max(self.config.max_payload + 1024, 65536)
        try:
            await broker.start()
        except BrokerError as exc:
            _AUTHORITIES.pop(self.authority.key, None)
            cause = exc.__cause__ or exc
            raise OSError(f"MQTT broker on {self.host}:{self.port}: {cause}") from exc
        self._broker = broker
        _LOGGER.info("mqtt: built-in broker on %s:%s (tls %s)", self.host, self.port, self.tls_port)

    async def stop(self) -> None:
        """Close the listeners and every client session."""
        broker, self._broker = self._broker, None
        if broker is not None:
            try:
                await asyncio.wait_for(broker.shutdown(), 5.0)
            except (TimeoutError, Exception) as exc:
                _LOGGER.debug("mqtt: broker shutdown: %r", exc)
        _AUTHORITIES.pop(self.authority.key, None)


def _free_port(host: str) -> int:
    import socket  # noqa: PLC0415

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
