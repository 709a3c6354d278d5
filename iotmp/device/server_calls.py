"""What a device asks of its server: properties, buckets, endpoints, other devices, syncs, events.

The numeric server resources of spec 11, as :class:`~.device.Device` methods::

    value = await device.get_property("config")
    await device.set_property("state", {"on": True})
    await device.write_bucket("environment", {"temperature": 21.5})
    answer = await device.call_endpoint("notify", {"text": "hi"})
    output = await device.call_device("lamp", "brightness", 80)
    await device.lock_sync("door", timeout=10)
    await device.unlock_sync("door")
    device.subscribe_event("bucket_write", on_event, filters={"bucket": "env*"})
    device.on_property_update("config", apply_config)

Requests are RUNs whose action code and target travel in one of two layouts
(``server_call_layout``): ``"embedded"`` (the default: PARAMETERS = code,
RESOURCE = target, as IOTMP-Embedded / IOTMP-Arduino send) or ``"linux"``
(RESOURCE = code, PARAMETERS = target, as IOTMP-Linux sends). Event
subscriptions are always START_STREAMs with RESOURCE = 8 and the filter map in
PARAMETERS: IOTMP-Linux is the only reference client that subscribes, and
that is its layout.

``confirm=False`` sends the RUN without STREAM_ID: the server does it and
does not answer. A server ERROR raises :class:`ServerCallError` whose text is
the server's message; a call while offline raises
:class:`~iotmp.protocol.errors.ConnectionClosedError`.

Subscriptions are kept by the device and opened again after every login.
"""

# ruff: noqa: ASYNC109  (per-call timeouts are part of the public API)
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any, Final, Literal

from ..protocol.errors import ConnectionClosedError, IotmpError, RemoteError
from ..protocol.message import ABSENT, MessageType
from ..protocol.server_resources import ServerResource
from ..protocol.session import Session, SessionConfig, StreamHandle

_LOGGER = logging.getLogger(__name__)

ServerCallLayout = Literal["embedded", "linux"]
SERVER_CALL_LAYOUTS: Final = ("embedded", "linux")

DEFAULT_SYNC_TIMEOUT: Final = 30.0
"""Seconds our server lets a LOCK_SYNC wait when the request names no timeout
(``limits.sync_lock_timeout``); the SDK waits that long plus the request timeout."""


class ServerCallError(RemoteError):
    """The server answered a device's call with ERROR; ``str(error)`` is the server's message.

    ``call`` names the request (``"WRITE_BUCKET 'env'"``); ``code`` and
    ``payload`` are the ERROR's PARAMETERS and PAYLOAD (None when absent).
    """

    def __init__(self, call: str, code: Any = None, payload: Any = None) -> None:
        text = error_text(payload)
        super().__init__(text or f"the server refused {call}", code, payload)
        self.call = call
        self.message = str(self)


def error_text(payload: Any) -> str:
    """Return the message of an ERROR's PAYLOAD (``{"error": text}``, a bare string) or ``""``."""
    if isinstance(payload, dict):
        inner = payload.get("error")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    if isinstance(payload, str):
        return payload
    return ""


def server_call_fields(
    code: ServerResource, target: Any, layout: ServerCallLayout
) -> tuple[Any, Any]:
    """``(RESOURCE, PARAMETERS)`` of a server-resource RUN in ``layout`` (spec 11)."""
    if layout == "linux":
        return int(code), target
    if layout == "embedded":
        return target, int(code)
    raise ValueError(f"server_call_layout must be one of {SERVER_CALL_LAYOUTS}, got {layout!r}")


def subscription_parameters(
    event: str, filters: dict[str, Any] | None, current: bool
) -> dict[str, Any]:
    """PARAMETERS of a SUBSCRIBE_EVENT START_STREAM (keys only when set, as [Linux] sends)."""
    parameters: dict[str, Any] = {"event": event}
    if filters:
        parameters["filters"] = dict(filters)
    if current:
        parameters["current"] = True
    return parameters


async def _call(callback: Callable[[Any], Any], value: Any) -> None:
    result = callback(value)
    if inspect.isawaitable(result):
        await result


class EventSubscription:
    """A device's subscription to server events (made by :meth:`ServerCalls.subscribe_event`).

    ``on_event(payload)`` (sync or async) gets every event the server sends;
    the OK's payload (the current value, with ``current=True``) goes to
    ``on_current`` when given, else to ``on_event`` first. ``active`` is True
    while the stream is open on the current session; ``error`` is why the
    last attempt failed, if it did.
    """

    def __init__(
        self,
        owner: ServerCalls,
        event: str,
        on_event: Callable[[Any], Any],
        filters: dict[str, Any] | None,
        current: bool,
        *,
        on_current: Callable[[Any], Any] | None = None,
    ) -> None:
        self.owner = owner
        self.event = event
        self.filters = dict(filters) if filters else None
        self.current = current
        self.on_event = on_event
        self.on_current = on_current
        self.parameters = subscription_parameters(event, self.filters, current)
        self.handle: StreamHandle | None = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.session: Session | None = None
        """The session it was (or is being) opened on."""
        self._opened = asyncio.Event()

    @property
    def active(self) -> bool:
        """Whether the subscription's stream is open now."""
        return self.handle is not None and not self.handle.closed

    async def wait_active(self, timeout: float | None = None) -> None:
        """Wait until the stream is open (after a login); raises the open error, if any."""
        async with asyncio.timeout(timeout):
            while not self.active:
                if self.error is not None:
                    raise self.error
                self._opened.clear()
                await self._opened.wait()

    async def cancel(self) -> None:
        """Stop the subscription (STOP_STREAM if open) and forget it."""
        self.cancelled = True
        self.owner._forget(self)
        handle = self.handle
        self.handle = None
        if handle is not None and not handle.closed:
            try:
                await handle.stop()
            except IotmpError as exc:
                _LOGGER.debug("%s: stopping subscription failed: %s", self.event, exc)

    async def _open(self, session: Session, name: str) -> None:
        try:
            handle = await session.start_stream(
                int(ServerResource.SUBSCRIBE_EVENT),
                parameters=self.parameters,
                on_data=self._deliver,
            )
        except IotmpError as exc:
            if session.is_closed:
                return
            self.error = exc
            if isinstance(exc, RemoteError):
                exc = ServerCallError(f"SUBSCRIBE_EVENT {self.event!r}", exc.code, exc.payload)
                self.error = exc
            _LOGGER.warning("%s: subscription to %s refused: %s", name, self.event, exc)
            self._opened.set()
            return
        if self.cancelled or self.session is not session:
            await handle.stop()
            return
        self.handle = handle
        self.error = None
        self._opened.set()
        if handle.initial is not None:
            await self._deliver(handle.initial, self.on_current or self.on_event)

    async def _deliver(self, payload: Any, callback: Callable[[Any], Any] | None = None) -> None:
        try:
            await _call(callback or self.on_event, payload)
        except Exception:
            _LOGGER.exception("event callback for %s failed", self.event)


class ServerCalls:
    """The server-resource calls of a :class:`~.device.Device` (mixed into it)."""

    session: Session | None
    config: SessionConfig
    name: str

    def _init_server_calls(self, layout: ServerCallLayout) -> None:
        server_call_fields(ServerResource.READ_DEVICE_PROPERTY, "", layout)  # checks the value
        self.server_call_layout: ServerCallLayout = layout
        self.subscriptions: list[EventSubscription] = []

    # -- requests --------------------------------------------------------------

    def _current_session(self) -> Session:
        session = self.session
        if session is None or not session.is_connected:
            raise ConnectionClosedError(f"{self.name}: not connected to a server")
        return session

    async def server_call(
        self,
        code: ServerResource,
        target: Any,
        payload: Any = ABSENT,
        *,
        confirm: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """RUN server resource ``code`` on ``target``; returns the OK's payload (None if none)."""
        session = self._current_session()
        resource, parameters = server_call_fields(code, target, self.server_call_layout)
        if not confirm:
            await session.run_no_reply(resource, payload, parameters=parameters)
            return None
        try:
            reply = await session.request(
                MessageType.RUN,
                resource=resource,
                parameters=parameters,
                payload=payload,
                timeout=timeout,
            )
        except RemoteError as exc:
            raise ServerCallError(f"{code.name} {target!r}", exc.code, exc.payload) from None
        return None if reply.payload is ABSENT else reply.payload

    async def get_property(self, prop: str, *, timeout: float | None = None) -> Any:
        """Read property ``prop`` of this device (READ_DEVICE_PROPERTY)."""
        return await self.server_call(ServerResource.READ_DEVICE_PROPERTY, prop, timeout=timeout)

    async def set_property(
        self, prop: str, value: Any, confirm: bool = True, *, timeout: float | None = None
    ) -> None:
        """Create or replace property ``prop`` of this device (SET_DEVICE_PROPERTY)."""
        await self.server_call(
            ServerResource.SET_DEVICE_PROPERTY, prop, value, confirm=confirm, timeout=timeout
        )

    async def write_bucket(
        self, bucket: str, record: Any, confirm: bool = True, *, timeout: float | None = None
    ) -> None:
        """Append ``record`` to data bucket ``bucket`` (WRITE_BUCKET)."""
        await self.server_call(
            ServerResource.WRITE_BUCKET, bucket, record, confirm=confirm, timeout=timeout
        )

    async def call_endpoint(
        self, name: str, payload: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Call endpoint ``name`` (CALL_ENDPOINT) with ``payload``; returns its answer."""
        return await self.server_call(
            ServerResource.CALL_ENDPOINT,
            name,
            ABSENT if payload is None else payload,
            timeout=timeout,
        )

    async def call_device(
        self, device: str, resource: str, payload: Any = None, *, timeout: float | None = None
    ) -> Any:
        """RUN ``resource`` on another device of the same user (CALL_DEVICE); returns its output.

        Do not call this device itself from one of its own resource handlers:
        the request would wait for the handler that is waiting for it.
        """
        return await self.server_call(
            ServerResource.CALL_DEVICE,
            [device, resource],
            ABSENT if payload is None else payload,
            timeout=timeout,
        )

    async def lock_sync(
        self,
        sync: str,
        *,
        lock: str | None = None,
        slots: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Wait until the server grants sync ``sync`` (LOCK_SYNC); ServerCallError on timeout.

        ``lock`` names this holder (several per device), ``slots`` how many
        holders the sync admits (default 1), ``timeout`` how long to wait (the
        server's default when None). Only the keys given are sent.
        """
        payload: dict[str, Any] = {}
        if lock is not None:
            payload["lock"] = lock
        if slots is not None:
            payload["slots"] = slots
        if timeout is not None:
            payload["timeout"] = timeout
        wait = (DEFAULT_SYNC_TIMEOUT if timeout is None else timeout) + (
            self.config.request_timeout or DEFAULT_SYNC_TIMEOUT
        )
        await self.server_call(
            ServerResource.LOCK_SYNC, sync, payload if payload else ABSENT, timeout=wait
        )

    async def unlock_sync(
        self,
        sync: str,
        *,
        lock: str | None = None,
        confirm: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Release this device's lock ``lock`` on sync ``sync`` (UNLOCK_SYNC)."""
        payload = ABSENT if lock is None else {"lock": lock}
        await self.server_call(
            ServerResource.UNLOCK_SYNC, sync, payload, confirm=confirm, timeout=timeout
        )

    # -- event subscriptions -----------------------------------------------------

    def subscribe_event(
        self,
        event: str,
        on_event: Callable[[Any], Any],
        filters: dict[str, Any] | None = None,
        current: bool = False,
        *,
        on_current: Callable[[Any], Any] | None = None,
    ) -> EventSubscription:
        """Receive server events ``event`` (globs in ``filters``) with ``on_event(event)``.

        Kept across reconnects: opened now when connected, and after every
        login. ``await subscription.wait_active()`` waits for the server's OK;
        ``await subscription.cancel()`` ends it.
        """
        subscription = EventSubscription(
            self, event, on_event, filters, current, on_current=on_current
        )
        self.subscriptions.append(subscription)
        session = self.session
        if session is not None and session.is_connected:
            self._open_subscription(session, subscription)
        return subscription

    def on_property_update(self, prop: str, callback: Callable[[Any], Any]) -> EventSubscription:
        """Call ``callback(value)`` with property ``prop``'s value now and after every update."""

        def on_event(event: Any) -> Any:
            value = event.get("value") if isinstance(event, dict) else event
            return callback(value)

        return self.subscribe_event(
            "device_property_update",
            on_event,
            filters={"property": prop},
            current=True,
            on_current=callback,
        )

    def _open_subscription(self, session: Session, subscription: EventSubscription) -> None:
        if subscription.session is session or subscription.cancelled:
            return  # already opened (or being opened) on this session
        subscription.session = session
        subscription.handle = None
        subscription.error = None
        with contextlib.suppress(ConnectionClosedError):  # closing: the next login reopens it
            session.spawn(subscription._open(session, self.name), f"subscribe {subscription.event}")

    def _logged_in(self, session: Session) -> None:
        """Open every subscription on a new session (called after each login)."""
        for subscription in list(self.subscriptions):
            self._open_subscription(session, subscription)

    def _forget(self, subscription: EventSubscription) -> None:
        if subscription in self.subscriptions:
            self.subscriptions.remove(subscription)


__all__ = [
    "DEFAULT_SYNC_TIMEOUT",
    "SERVER_CALL_LAYOUTS",
    "EventSubscription",
    "ServerCallError",
    "ServerCallLayout",
    "ServerCalls",
    "error_text",
    "server_call_fields",
    "subscription_parameters",
]
