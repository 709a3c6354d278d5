"""Devices subscribed to server events (SUBSCRIBE_EVENT, a START_STREAM on resource 8).

A device opens a stream on server resource 8 ([Linux] ``client.hpp``): RESOURCE
= 8 and PARAMETERS = ``{"event": name, "filters": {field: glob}?, "current":
bool?}``, or the flat form with the filter fields beside ``"event"`` (as the
v1 events socket takes them). The [Embedded]-style layout (PARAMETERS = 8)
carries the event name in RESOURCE and the rest, if any, as a map in PAYLOAD.
The server answers OK and then sends every matching event of the device's own
user as STREAM_DATA on that stream id, the payload being the event itself
(``{"event", "user", "ts", ...}``). Filters are globs matched in linear time
(:mod:`.event_filters`).

* ``device_property_*`` subscriptions without a ``device`` filter see the
  subscribing device's own properties only.
* ``"current": true`` on a ``device_property_update`` subscription whose
  ``property`` filter is a plain name puts the property's current value in
  the OK's PAYLOAD (no PAYLOAD when the property does not exist).
* ``device_topic_publish`` (MQTT topics through the server) is not supported:
  ERROR.
* A device has at most ``limits.event_subscriptions_per_device``
  subscriptions. Each has a queue of ``limits.event_subscription_queue``
  events: a device that reads slower than its events arrive gets its
  subscription closed (STOP_STREAM from the server, one rate-limited log
  line) instead of silently missing events or making the server hold more.
* STOP_STREAM from the device, or its disconnect, ends a subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from iotmp.protocol.errors import IotmpError
from iotmp.protocol.message import ABSENT
from iotmp.protocol.ratelimit import LogLimiter
from iotmp.protocol.server_resources import (
    ServerResource,
    ServerResourceCall,
    parse_server_resource,
)
from iotmp.protocol.session import IncomingStream, Request

from .device_requests import ServerResourceError
from .event_filters import EventFilter, FilterError

if TYPE_CHECKING:
    from .app import IotmpServer
    from .events import Event
    from .registry import DeviceState

_LOGGER = logging.getLogger(__name__)
_LOG_LIMITER: Final = LogLimiter()

MAX_FILTERS: Final = 16
"""Filter fields one subscription may have."""
_CONTROL_KEYS: Final = frozenset({"event", "filters", "current"})
_GLOB_CHARS: Final = frozenset(".*?\\")
UNSUPPORTED_EVENTS: Final = frozenset({"device_topic_publish"})


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """What a device subscribed to."""

    event: str
    filters: dict[str, str]
    current: bool

    @property
    def current_property(self) -> str | None:
        """The property whose value the OK carries, if ``current`` applies."""
        prop = self.filters.get("property")
        if (
            self.current
            and self.event == "device_property_update"
            and prop is not None
            and not any(char in _GLOB_CHARS for char in prop)
        ):
            return prop
        return None


def glob_escape(text: str) -> str:
    r"""``text`` as a filter that matches exactly it (``a.b`` -> ``a\.b``)."""
    return "".join(f"\\{char}" if char in _GLOB_CHARS else char for char in text)


def _filter_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ServerResourceError(f"filter {key!r} must be a string or a number")


def subscription_fields(call: ServerResourceCall) -> dict[str, Any]:
    """Return the subscription map of a SUBSCRIBE_EVENT in either layout (module docstring)."""
    target, payload = call.target, call.payload
    if isinstance(target, dict):
        return target
    extra = payload if isinstance(payload, dict) else {}
    if isinstance(target, str):
        return {**extra, "event": target}
    if target is None and extra:
        return extra
    raise ServerResourceError('SUBSCRIBE_EVENT needs {"event": name, "filters": {...}}')


def parse_subscription(fields: dict[str, Any], device_id: str) -> SubscriptionSpec:
    """Validate a subscription map; raises :class:`ServerResourceError` with the reason."""
    event = fields.get("event")
    if not isinstance(event, str) or not event:
        raise ServerResourceError('SUBSCRIBE_EVENT needs "event": a non-empty string')
    if event in UNSUPPORTED_EVENTS:
        raise ServerResourceError(f"{event} subscriptions (MQTT topics) are not supported")
    raw_filters = fields.get("filters")
    if raw_filters is None:
        raw_filters = {}
    if not isinstance(raw_filters, dict):
        raise ServerResourceError('"filters" must be an object')
    merged = {k: v for k, v in fields.items() if k not in _CONTROL_KEYS}
    merged.update(raw_filters)
    if len(merged) > MAX_FILTERS:
        raise ServerResourceError(f"at most {MAX_FILTERS} filter fields")
    filters = {str(key): _filter_value(str(key), value) for key, value in merged.items()}
    if event.startswith("device_property") and "device" not in filters:
        filters["device"] = glob_escape(device_id)
    current = fields.get("current", False)
    if not isinstance(current, bool):
        raise ServerResourceError('"current" must be true or false')
    return SubscriptionSpec(event, filters, current)


class _Subscription:
    """One open subscription: a bus listener, a bounded queue and a sender task."""

    def __init__(
        self,
        owner: EventSubscriptions,
        device: DeviceState,
        stream: IncomingStream,
        matcher: EventFilter,
        queue_size: int,
    ) -> None:
        self.owner = owner
        self.device_id = device.id
        self.stream = stream
        self.matcher = matcher
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=queue_size)
        self.closed = False
        self._unsubscribe = owner.server.events.subscribe(device.user, self.offer)
        self._sender = stream.session.spawn(
            self._send_loop(), f"event subscription {stream.stream_id}"
        )

    def offer(self, event: Event) -> None:
        """Bus listener: queue a matching event; close the subscription when full."""
        if self.closed or not self.matcher.matches(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.owner.overflowed(self)

    async def _send_loop(self) -> None:
        stream = self.stream
        while True:
            event = await self.queue.get()
            await stream.send(event)  # waits while the device's socket is full

    def close(self) -> None:
        """Stop listening and sending (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.stream.is_open = False
        self._unsubscribe()
        self._sender.cancel()


class EventSubscriptions:
    """Delivers bus events to the devices that subscribed to them."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        self._subscriptions: dict[IncomingStream, _Subscription] = {}
        server.server_resources.register_stream(
            ServerResource.SUBSCRIBE_EVENT, self.open, self.started, self.stopped
        )

    def routes(self) -> list[web.RouteDef]:
        """REST routes (none: subscriptions are made by devices)."""
        return []

    async def start(self) -> None:
        """Nothing to load: subscriptions live as long as device sessions."""

    async def stop(self) -> None:
        """End every subscription."""
        for subscription in list(self._subscriptions.values()):
            subscription.close()
        self._subscriptions.clear()

    def count(self, device_id: str) -> int:
        """Open subscriptions of ``device_id``."""
        return sum(1 for s in self._subscriptions.values() if s.device_id == device_id)

    def _spec(
        self, device: DeviceState, call: ServerResourceCall
    ) -> tuple[SubscriptionSpec, EventFilter]:
        spec = parse_subscription(subscription_fields(call), device.id)
        try:
            matcher = EventFilter(
                spec.event,
                dict(spec.filters),
                {"event": spec.event, "filters": spec.filters},
                self.server.config.limits.filter_max_length,
            )
        except FilterError as exc:
            raise ServerResourceError(str(exc)) from None
        return spec, matcher

    async def open(self, device: DeviceState, call: ServerResourceCall, request: Request) -> Any:
        """Check a SUBSCRIBE_EVENT; return the OK's PAYLOAD (the current value, if asked)."""
        spec, _matcher = self._spec(device, call)
        cap = self.server.config.limits.event_subscriptions_per_device
        replacing = any(
            s.stream.session is request.session and s.stream.stream_id == request.stream_id
            for s in self._subscriptions.values()
        )
        if not replacing and self.count(device.id) >= cap:
            raise ServerResourceError(f"at most {cap} event subscriptions per device")
        prop = spec.current_property
        if prop is None:
            return ABSENT
        try:
            return await self.server.properties.value(device.id, prop)
        except KeyError:
            return ABSENT

    async def started(self, device: DeviceState, stream: IncomingStream) -> None:
        """Deliver events on ``stream`` from now on (its OK went out)."""
        call = parse_server_resource(stream.message)
        if call is None:  # cannot happen: open() accepted this very message
            return
        try:
            _spec, matcher = self._spec(device, call)
        except ServerResourceError:
            return
        queue_size = self.server.config.limits.event_subscription_queue
        try:
            subscription = _Subscription(self, device, stream, matcher, queue_size)
        except IotmpError:  # the session is closing
            return
        self._subscriptions[stream] = subscription

    def stopped(self, device: DeviceState, stream: IncomingStream) -> None:
        """End the subscription of ``stream`` (the device stopped it or disconnected)."""
        subscription = self._subscriptions.pop(stream, None)
        if subscription is not None:
            subscription.close()

    def overflowed(self, subscription: _Subscription) -> None:
        """Close a subscription whose device fell a whole queue behind, and tell the device."""
        stream = subscription.stream
        if self._subscriptions.get(stream) is subscription:
            del self._subscriptions[stream]
        subscription.close()
        _LOG_LIMITER.log(
            _LOGGER,
            logging.WARNING,
            "event subscription overflow",
            "device %s: event subscription %s closed: %d events unsent (the device reads "
            "too slowly)",
            subscription.device_id,
            stream.stream_id,
            subscription.queue.qsize(),
        )
        session = stream.session
        with contextlib.suppress(IotmpError):
            session.spawn(self._stop_stream(stream), f"stop event subscription {stream.stream_id}")

    async def _stop_stream(self, stream: IncomingStream) -> None:
        with contextlib.suppress(IotmpError):
            await stream.session.stop_stream(stream.stream_id)
