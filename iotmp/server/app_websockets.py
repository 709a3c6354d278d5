"""Application WebSockets: device resource streams and account events.

* ``/v3/users/{u}/devices/{d}/resources`` -- multiplexed: control frames
  ``{"resource", "interval", "enabled"}`` (interval in seconds, 0 = pushes and
  echoes only; ``enabled: false`` unsubscribes; re-sending reconfigures) and
  ``{"resource", "payload"}`` (write the payload to the resource).
* ``/v3/users/{u}/devices/{d}/resources/{resource}?interval=N`` -- one resource;
  frames ``{"payload": value}`` write to it.
* ``/v1/users/{u}/events`` (flat filters) and ``/v2/users/{u}/events``
  (``{"event", "filters", "params"}`` subscriptions, acknowledged with
  ``{"success": true, "registered": {...}}``). Filters are globs matched
  without backtracking (:mod:`.event_filters`).

Limits (``config.limits``): intervals below ``min_stream_interval`` are raised
to it; a socket holds at most ``max_subscriptions_per_socket`` subscriptions;
a client that reads slower than frames arrive gets back-pressure instead of
dropped frames (:mod:`.socket_outbox`).

Data frames are ``{"resource", "signal": "data", "payload"}`` or, with
``websocket_frames: legacy`` (server-wide) or ``?frames=legacy`` (one socket),
``{"resource", "out"|"in"}``. A stream that cannot be opened is reported as
``{"resource", "signal": "error", "payload": {"error": {"message"}}}`` (on a
multiplexed socket: signal style only); a single-resource socket is then
closed with a code from :mod:`.ws_close`. The server pings after 60 s of
silence (aiohttp heartbeat) and closes an unresponsive socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from aiohttp import WSMsgType, web

from .access_log import websocket_opened
from .event_filters import EventFilter, FilterError
from .http_api import MSG_DEVICE_OFFLINE, ApiError, DeviceOps, authorize, dumps_bytes
from .registry import DeviceState, now_ms
from .socket_outbox import Outbox
from .streams import SampleSink, Subscription
from .ws_close import close_code, close_reason, frame_style
from .ws_frames import FrameWriter, frame_writer

if TYPE_CHECKING:
    from .app import IotmpServer

_LOGGER = logging.getLogger(__name__)

HEARTBEAT: Final = 60.0
MAX_INTERVAL: Final = 7 * 24 * 3600.0
CONTROL_MAX_SIZE: Final = 1024 * 1024
_YIELD_EVERY: Final = 16


class AppSocket:
    """One application WebSocket: an outgoing queue and a sender task."""

    def __init__(self, manager: AppSockets, ws: web.WebSocketResponse, name: str) -> None:
        self.manager = manager
        self.ws = ws
        self.name = name
        self.writer: FrameWriter | None = None
        limits = manager.server.config.limits
        self.outbox = Outbox(
            name,
            high_water=limits.socket_queue_frames,
            max_frames=limits.socket_queue_max_frames,
            on_overflow=lambda: manager.server.spawn(self.close()),
        )
        self._sender: asyncio.Task[None] | None = None

    def send(self, frame: dict[str, Any]) -> asyncio.Event | None:
        """Queue a frame; returns an event to wait for when the client is behind."""
        if self.ws.closed:
            return None
        return self.outbox.put(dumps_bytes(frame))

    async def run(self) -> None:
        """Serve the socket until the client or the server closes it."""
        writer = frame_writer(self.ws)
        if writer is not None:
            self.outbox.direct = writer.try_write
            self.writer = writer
            self.writer_ready()
        self._sender = asyncio.get_running_loop().create_task(
            self.outbox.run(self._send_text, writer.write_many if writer is not None else None),
            name=f"iotmp-ws-send {self.name}",
        )
        try:
            handled = 0
            async for msg in self.ws:
                handled += 1
                if handled % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # frames already buffered must not hold the loop
                if msg.type == WSMsgType.TEXT:
                    self._handle_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._handle_text(bytes(msg.data).decode("utf-8", "replace"))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.closed()
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    def writer_ready(self) -> None:
        """Take note that the socket has a direct frame writer from now on (``self.writer``)."""

    async def _send_text(self, text: bytes) -> None:
        await self.ws.send_str(text.decode())  # not hot: only without a frame writer

    def _handle_text(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            self.send_error("malformed JSON frame")
            return
        try:
            self.handle(frame)
        except ApiError as exc:
            self.send_error(exc.message)

    def send_error(self, message: str) -> None:
        """Report a bad client frame."""
        self.send({"error": {"message": message}})

    def handle(self, frame: Any) -> None:
        """Process one client frame (override)."""

    def closed(self) -> None:
        """Clean up after the socket closed (override)."""

    async def close(self) -> None:
        """Close from the server side (shutdown)."""
        with contextlib.suppress(Exception):
            await self.ws.close(code=1001, message=b"server shutting down")


def _parse_interval(value: Any, minimum: float = 0.0) -> float:
    """Seconds between samples (0 = pushes only); raised to ``minimum`` when below."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, "interval must be a number of seconds")
    if not 0 <= value <= MAX_INTERVAL:
        raise ApiError(400, "interval out of range")
    return max(float(value), minimum) if value > 0 else 0.0


class ResourceSocket(AppSocket):
    """A device's resource stream socket (multiplexed, or fixed to one resource)."""

    def __init__(
        self,
        manager: AppSockets,
        ws: web.WebSocketResponse,
        state: DeviceState,
        fixed_resource: str | None = None,
        frames: str | None = None,
    ) -> None:
        super().__init__(manager, ws, f"ws {state.user}/{state.id}")
        self.state = state
        self.fixed_resource = fixed_resource
        self.frames = frames or manager.server.config.websocket_frames
        self.subscriptions: dict[str, Subscription] = {}
        self._hub = manager.server.hub

    def frame(self, resource: str, value: Any) -> dict[str, Any]:
        """Build a data frame in this socket's style (``?frames=`` or the server's)."""
        if self.frames == "legacy":
            key = "in" if self.state.resource_fn(resource) == 2 else "out"
            return {"resource": resource, key: value}
        return {"resource": resource, "signal": "data", "payload": value}

    def _deliver(self, resource: str, value: Any) -> asyncio.Event | None:
        if self.ws.closed:
            return None
        memo = self._hub.frame_memo
        if memo is None:  # the only subscriber of this value
            return self.outbox.put(dumps_bytes(self.frame(resource, value)))
        # Every subscriber of this device resource in this style gets the same text:
        # encode it once per offer round.
        key = (self.state.id, resource, self.frames)
        entry = memo.get(key)
        if entry is not None and entry[0] is value:
            text: bytes = entry[1]
        else:
            text = dumps_bytes(self.frame(resource, value))
            memo[key] = (value, text)
        return self.outbox.put(text)

    def _fail(self, resource: str, message: str) -> None:
        if self.frames != "legacy" or self.fixed_resource is not None:
            self.send(
                {
                    "resource": resource,
                    "signal": "error",
                    "payload": {"error": {"message": message}},
                }
            )

    def stream_failed(self, resource: str, message: str, status: int) -> None:
        """Report a stream that cannot run; a one-resource socket is closed as well."""
        self._fail(resource, message)
        if self.fixed_resource is not None:
            self.close_with(close_code(status), message)

    def _device_gone(self, resource: str) -> None:
        self.stream_failed(resource, MSG_DEVICE_OFFLINE, 503)

    def close_with(self, code: int, message: str) -> None:
        """Close the socket (after the frames already queued) with ``code`` and ``message``."""
        self.manager.server.spawn(self._close_after_queue(code, message))

    async def _close_after_queue(self, code: int, message: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                while not self.outbox.empty() and not self.ws.closed:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await self.ws.close(code=code, message=close_reason(message))

    def subscribe(self, resource: str, interval: float) -> None:
        """Add or reconfigure the subscription to ``resource``."""
        hub = self.manager.server.hub
        if self.state.description is not None and not self.state.has_resource(resource):
            # Known from the device's DESCRIBE: no need to ask the device.
            self.stream_failed(
                resource, f"resource {resource!r} not found on device {self.state.id!r}", 404
            )
            return
        sub = self.subscriptions.get(resource)
        cap = self.manager.server.config.limits.max_subscriptions_per_socket
        if sub is None and len(self.subscriptions) >= cap:
            raise ApiError(400, f"at most {cap} subscriptions per socket")
        if sub is None:
            sub = Subscription(
                self.state.id,
                resource,
                interval,
                self._deliver,
                self.stream_failed,
                gone=self._device_gone if self.fixed_resource is not None else None,
            )
            self.subscriptions[resource] = sub
        else:
            sub.interval = interval
        sub.sink = self._sink(resource)
        hub.subscribe(sub)

    def _sink(self, resource: str) -> SampleSink | None:
        """Where the compiled sample path may write this resource's data frames."""
        writer = self.writer
        if writer is None or self.frames == "legacy":
            return None
        prefix = b'{"resource":' + dumps_bytes(resource) + b',"signal":"data","payload":'
        return SampleSink(self.outbox, self.ws, writer.transport, prefix)

    def writer_ready(self) -> None:
        """Let the compiled sample path write this socket's data frames."""
        for resource, sub in self.subscriptions.items():
            sub.sink = self._sink(resource)

    def unsubscribe(self, resource: str) -> None:
        """Drop the subscription to ``resource``."""
        sub = self.subscriptions.pop(resource, None)
        if sub is not None:
            self.manager.server.hub.unsubscribe(sub)

    def handle(self, frame: Any) -> None:
        """Subscribe, unsubscribe or write, as the frame says."""
        if not isinstance(frame, dict):
            raise ApiError(400, "expected a JSON object")
        resource = frame.get("resource", self.fixed_resource)
        if not isinstance(resource, str) or not resource:
            raise ApiError(400, "missing resource")
        if self.fixed_resource is not None and resource != self.fixed_resource:
            raise ApiError(400, "this socket streams one resource only")
        if "payload" in frame and "interval" not in frame and "enabled" not in frame:
            self.manager.server.spawn(self._write(resource, frame["payload"]))
            return
        if frame.get("enabled", True) is False:
            self.unsubscribe(resource)
            return
        minimum = self.manager.server.config.limits.min_stream_interval
        self.subscribe(resource, _parse_interval(frame.get("interval", 0), minimum))

    async def _write(self, resource: str, value: Any) -> None:
        ops = DeviceOps(self.manager.server)
        try:
            await ops.write(self.state, resource, value)
        except ApiError as exc:
            self._fail(resource, exc.message)

    def closed(self) -> None:
        """Drop every subscription of this socket."""
        for resource in list(self.subscriptions):
            self.unsubscribe(resource)


class EventSocket(AppSocket):
    """Account events (every event of the server's bus) for one user."""

    def __init__(
        self, manager: AppSockets, ws: web.WebSocketResponse, user: str, version: int
    ) -> None:
        super().__init__(manager, ws, f"events v{version} {user}")
        self.user = user
        self.version = version
        self.filters: list[EventFilter] = []

    async def run(self) -> None:
        """Receive the user's events while the socket is open."""
        unsubscribe = self.manager.server.events.subscribe(self.user, self.offer)
        try:
            await super().run()
        finally:
            unsubscribe()

    def _filter(self, event: str, filters: dict[str, Any], raw: dict[str, Any]) -> EventFilter:
        limits = self.manager.server.config.limits
        try:
            return EventFilter(event, filters, raw, limits.filter_max_length)
        except FilterError as exc:
            raise ApiError(400, str(exc)) from None

    def handle(self, frame: Any) -> None:
        """Register (v2: add, v1: replace) or unregister a subscription."""
        if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
            if self.version == 2:
                self.send({"success": False, "error": {"message": 'expected {"event": ...}'}})
                return
            raise ApiError(400, 'expected {"event": ...}')
        event = frame["event"]
        if self.version == 1:
            filters = {k: v for k, v in frame.items() if k != "event"}
            self.filters = [self._filter(event, filters, frame)]
            return
        raw_filters = frame.get("filters") or {}
        if not isinstance(raw_filters, dict):
            self.send({"success": False, "error": {"message": "filters must be an object"}})
            return
        key = json.dumps({"event": event, "filters": raw_filters}, sort_keys=True)
        self.filters = [
            f
            for f in self.filters
            if json.dumps(
                {"event": f.raw["event"], "filters": f.raw.get("filters") or {}}, sort_keys=True
            )
            != key
        ]
        if frame.get("enabled", True) is False:
            self.send({"success": True, "unregistered": {"event": event, "filters": raw_filters}})
            return
        cap = self.manager.server.config.limits.max_subscriptions_per_socket
        if len(self.filters) >= cap:
            self.send({"success": False, "error": {"message": f"at most {cap} subscriptions"}})
            return
        try:
            subscription = self._filter(event, raw_filters, frame)
        except ApiError as exc:
            self.send({"success": False, "error": {"message": exc.message}})
            return
        self.filters.append(subscription)
        self.send({"success": True, "registered": {"event": event, "filters": raw_filters}})

    def offer(self, event: dict[str, Any]) -> None:
        """Send ``event`` if a subscription matches it."""
        if any(f.matches(event) for f in self.filters):
            self.send(event)


class AppSockets:
    """Creates, tracks and closes the server's application WebSockets."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        self.sockets: set[AppSocket] = set()

    def _ws(self) -> web.WebSocketResponse:
        return web.WebSocketResponse(
            heartbeat=HEARTBEAT, max_msg_size=CONTROL_MAX_SIZE, autoping=True
        )

    async def _serve(self, socket: AppSocket, request: web.Request) -> web.WebSocketResponse:
        await socket.ws.prepare(request)
        websocket_opened(request)
        self.sockets.add(socket)
        try:
            await socket.run()
        finally:
            self.sockets.discard(socket)
        return socket.ws

    async def device_socket(self, request: web.Request) -> web.StreamResponse:
        """``/v3/users/{u}/devices/{d}/resources`` (multiplexed)."""
        state = self._device(request)
        frames = frame_style(request, self.server.config.websocket_frames)
        socket = ResourceSocket(self, self._ws(), state, frames=frames)
        return await self._serve(socket, request)

    async def resource_socket(self, request: web.Request) -> web.StreamResponse:
        """``/v3/users/{u}/devices/{d}/resources/{resource}?interval=N``."""
        state = self._device(request)
        resource = request.match_info["resource"]
        raw = request.query.get("interval")
        try:
            minimum = self.server.config.limits.min_stream_interval
            interval = _parse_interval(float(raw) if raw else 0.0, minimum)
        except ValueError:
            raise ApiError(400, "interval must be a number of seconds") from None
        frames = frame_style(request, self.server.config.websocket_frames)
        socket = ResourceSocket(self, self._ws(), state, fixed_resource=resource, frames=frames)
        await socket.ws.prepare(request)
        websocket_opened(request)
        self.sockets.add(socket)
        if state.connected:
            socket.subscribe(resource, interval)
        else:
            socket.stream_failed(resource, MSG_DEVICE_OFFLINE, 503)
        try:
            await socket.run()
        finally:
            self.sockets.discard(socket)
        return socket.ws

    def _device(self, request: web.Request) -> DeviceState:
        user = request.match_info["user"]
        authorize(self.server, request, user)
        return DeviceOps(self.server).device(user, request.match_info["device"])

    def events_handler(self, version: int) -> Callable[[web.Request], Any]:
        """Build the handler of ``/v{version}/users/{user}/events``."""

        async def handle(request: web.Request) -> web.StreamResponse:
            user = request.match_info["user"]
            authorize(self.server, request, user)
            socket = EventSocket(self, self._ws(), user, version)
            return await self._serve(socket, request)

        return handle

    def device_state_changed(self, state: DeviceState, connected: bool) -> None:
        """Registry listener: publish ``device_state_change`` on the event bus."""
        self.server.events.publish(
            {
                "event": "device_state_change",
                "user": state.user,
                "device": state.id,
                "ts": state.connection_ts or now_ms(),
                "state": "connected" if connected else "disconnected",
            }
        )

    async def close_all(self) -> None:
        """Close every application WebSocket (server shutdown)."""
        sockets = list(self.sockets)
        if sockets:
            await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


__all__ = ["AppSocket", "AppSockets", "EventSocket", "ResourceSocket"]
