"""The server's own MQTT client (aiomqtt): one session to the broker, kept up.

Used with both brokers: the built-in one (a random internal login) and an
external one (``mqtt.username``/``password``/``tls``). The session has a last
will: ``{prefix}/status`` = ``offline`` (retained); ``online`` is published
after every connect. A lost connection is retried with exponential backoff
(``reconnect_min`` .. ``reconnect_max`` seconds, with jitter); after each
connect the subscriptions are made again and ``on_connect`` republishes the
retained state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import aiomqtt

from .settings import MqttConfig

_LOGGER = logging.getLogger(__name__)

QUEUE_SIZE: Final = 20_000
SEND_WINDOW: Final = 64
ONLINE: Final = b"online"
OFFLINE: Final = b"offline"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message waiting to be published."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


MessageHandler = Callable[[str, bytes], None]


class BrokerConnection:
    """Publishes from a queue and hands received messages to ``on_message``."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        tls_context: ssl.SSLContext | None,
        on_message: MessageHandler,
        on_connect: Callable[[], Awaitable[None]],
        subscriptions: list[str],
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.tls_context = tls_context
        self.on_message = on_message
        self.on_connect = on_connect
        self.subscriptions = subscriptions
        # A random client id: amqtt lets a new session with the same id take over.
        self.client_id = f"iotmp-server-{secrets.token_hex(8)}"
        self.status_topic = f"{config.prefix}/status"
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.accepting = False
        self.connects = 0
        self.dropped = 0
        self._client: aiomqtt.Client | None = None

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int | None = None) -> None:
        """Queue a message (never blocks; counted and dropped when the queue is full)."""
        if not self.accepting:
            return  # state is republished in full after the next connect
        try:
            self._queue.put_nowait(
                Outgoing(topic, payload, retain, self.config.qos if qos is None else qos)
            )
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _LOGGER.warning("mqtt: publish queue full, %d messages dropped", self.dropped)

    async def publish_now(self, topic: str, payload: bytes, *, retain: bool) -> None:
        """Publish directly (used while (re)publishing state after a connect)."""
        client = self._client
        if client is not None:
            await client.publish(topic, payload, qos=self.config.qos, retain=retain)

    def start(self) -> None:
        """Run the connect/reconnect loop in a task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Publish ``offline`` and disconnect."""
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(
                    client.publish(self.status_topic, OFFLINE, qos=1, retain=True), 2.0
                )
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.connected.clear()

    async def _run(self) -> None:
        delay = self.config.reconnect_min
        while True:
            try:
                await self._session()
                delay = self.config.reconnect_min
            except aiomqtt.MqttError as exc:
                if self.connected.is_set():
                    delay = self.config.reconnect_min
                _LOGGER.warning(
                    "mqtt: broker %s:%s: %s; retrying in %.1f s", self.host, self.port, exc, delay
                )
            finally:
                self.connected.clear()
                self.accepting = False
                self._client = None
                _drain(self._queue)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.reconnect_max)

    async def _session(self) -> None:
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.client_id,
            tls_context=self.tls_context,
            will=aiomqtt.Will(self.status_topic, OFFLINE, qos=1, retain=True),
            keepalive=30,
            max_queued_incoming_messages=QUEUE_SIZE,
        )
        client.pending_calls_threshold = SEND_WINDOW + 16  # our window, not a problem
        async with client:
            self._client = client
            for topic in self.subscriptions:
                await client.subscribe(topic, qos=self.config.qos)
            await client.publish(self.status_topic, ONLINE, qos=1, retain=True)
            self.connects += 1
            self.accepting = True  # publish() queues from here on
            _LOGGER.info("mqtt: connected to %s:%s", self.host, self.port)
            await self.on_connect()
            self.connected.set()  # connected = the retained state is out again
            sender = asyncio.get_running_loop().create_task(self._send_loop(client))
            try:
                async for message in client.messages:
                    payload = message.payload
                    data = payload if isinstance(payload, bytes) else str(payload).encode()
                    try:
                        self.on_message(message.topic.value, data)
                    except Exception:
                        _LOGGER.exception("mqtt: handling %s failed", message.topic.value)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        # aiomqtt's publish waits until paho has written the message; awaiting each in
        # turn would cap the rate at one message per loop turn. Up to SEND_WINDOW are in
        # flight; they start (and reach paho) in queue order.
        window = asyncio.Semaphore(SEND_WINDOW)
        in_flight: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await self._queue.get()
                await window.acquire()
                task = loop.create_task(self._send(client, item, window))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            for task in list(in_flight):
                task.cancel()

    @staticmethod
    async def _send(client: aiomqtt.Client, item: Outgoing, window: asyncio.Semaphore) -> None:
        try:
            await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
        except aiomqtt.MqttError as exc:
            _LOGGER.debug("mqtt: publish %s failed: %s", item.topic, exc)
        finally:
            window.release()


def _drain(queue: asyncio.Queue[Outgoing]) -> None:
    while not queue.empty():
        queue.get_nowait()


def client_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """TLS context for connecting to a broker (system CAs, or ``ca_file``)."""
    return ssl.create_default_context(cafile=ca_file)
