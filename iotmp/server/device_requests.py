"""What a connected device asks of the server: the numeric server resources (spec 11).

A device sends RUN (or START_STREAM, for SUBSCRIBE_EVENT) with an action code
and a target in either layout (:func:`iotmp.protocol.parse_server_resource`).
Each feature (properties, buckets, endpoints, device calls, syncs, event
subscriptions) registers a handler for its codes in :class:`ServerResources`;
:class:`DeviceRequests` is the session's request handler for one device and
turns a handler's result into OK (with the payload) or ERROR (with a message).
Anything that is not a server resource gets ERROR, as a device answers an
unknown resource.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from iotmp.protocol.errors import RemoteError
from iotmp.protocol.server_resources import (
    ServerResource,
    ServerResourceCall,
    parse_server_resource,
)
from iotmp.protocol.session import IncomingStream, Reply, Request, RequestHandler

if TYPE_CHECKING:
    from .registry import DeviceState

_LOGGER = logging.getLogger(__name__)


class ServerResourceError(Exception):
    """A device's server-resource request cannot be served (ERROR ``{"error": message}``).

    ``details`` are further fields of the ERROR's payload (CALL_ENDPOINT adds ``status``).
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def reply(self) -> Reply:
        """Return the ERROR reply: PAYLOAD ``{"error": message, **details}``."""
        return Reply.error(payload={"error": self.message, **self.details})


RunHandler = Callable[["DeviceState", ServerResourceCall], Awaitable[Any]]
"""``handler(device, call)`` -> the OK's PAYLOAD (``ABSENT`` for none); raises
:class:`ServerResourceError` for ERROR."""

StreamOpener = Callable[["DeviceState", ServerResourceCall, Request], Awaitable[Any]]
"""``open(device, call, request)`` for a START_STREAM on a server resource ->
the OK's PAYLOAD (``ABSENT`` for none); raises :class:`ServerResourceError`."""

StreamStarted = Callable[["DeviceState", IncomingStream], Awaitable[None]]
"""Called once the OK went out: deliver on ``stream`` from now on."""

StreamStopped = Callable[["DeviceState", IncomingStream], None]
"""Called when the device stops the stream or disconnects."""


class ServerResources:
    """The handlers of each server-resource code (one table per server)."""

    def __init__(self) -> None:
        self._run: dict[ServerResource, RunHandler] = {}
        self._streams: dict[ServerResource, tuple[StreamOpener, StreamStarted, StreamStopped]] = {}

    def register(self, code: ServerResource, handler: RunHandler) -> None:
        """Serve RUN on ``code`` with ``handler``."""
        self._run[code] = handler

    def register_stream(
        self,
        code: ServerResource,
        opener: StreamOpener,
        started: StreamStarted,
        stopped: StreamStopped,
    ) -> None:
        """Serve START_STREAM on ``code`` (SUBSCRIBE_EVENT)."""
        self._streams[code] = (opener, started, stopped)

    def run_handler(self, code: ServerResource) -> RunHandler | None:
        """Return the RUN handler of ``code``, if any."""
        return self._run.get(code)

    def stream_handlers(
        self, code: ServerResource
    ) -> tuple[StreamOpener, StreamStarted, StreamStopped] | None:
        """Return the stream handlers of ``code``, if any."""
        return self._streams.get(code)

    def handler_for(self, device: DeviceState) -> DeviceRequests:
        """Return the request handler of one device's session."""
        return DeviceRequests(self, device)


def _error(message: str) -> Reply:
    return Reply.error_message(message)


class DeviceRequests(RequestHandler):
    """Serves one device's requests to the server (see the module docstring)."""

    def __init__(self, table: ServerResources, device: DeviceState) -> None:
        self.table = table
        self.device = device
        self._codes: dict[int, ServerResource] = {}  # by stream id, between OK and start
        self._open: dict[int, tuple[ServerResource, IncomingStream]] = {}

    async def on_run(self, request: Request) -> Reply:
        """RUN on a server resource."""
        call = parse_server_resource(request.message)
        if call is None:
            return _error("not a server resource")
        handler = self.table.run_handler(call.code)
        if handler is None:
            return _error(f"{call.code.name} is not served here")
        try:
            payload = await handler(self.device, call)
        except ServerResourceError as exc:
            return exc.reply()
        except RemoteError:
            raise
        return Reply.success(payload)

    async def on_start_stream(self, request: Request) -> Reply:
        """START_STREAM on a server resource (SUBSCRIBE_EVENT)."""
        call = parse_server_resource(request.message)
        if call is None:
            return _error("not a server resource")
        handlers = self.table.stream_handlers(call.code)
        if handlers is None:
            return _error(f"{call.code.name} cannot be streamed")
        try:
            payload = await handlers[0](self.device, call, request)
        except ServerResourceError as exc:
            return exc.reply()
        self._codes[request.stream_id] = call.code
        return Reply.success(payload)

    async def on_stream_started(self, stream: IncomingStream) -> None:
        """Hand the opened stream to its feature."""
        code = self._codes.pop(stream.stream_id, None)
        handlers = None if code is None else self.table.stream_handlers(code)
        if code is None or handlers is None:
            return
        previous = self._open.pop(stream.stream_id, None)
        if previous is not None:  # the same stream id opened again replaces it
            self._stop(*previous)
        self._open[stream.stream_id] = (code, stream)
        await handlers[1](self.device, stream)

    async def on_stop_stream(self, request: Request, stream: IncomingStream | None) -> Reply:
        """STOP_STREAM of a subscription."""
        if stream is None:
            return Reply.error()
        entry = self._open.pop(stream.stream_id, None)
        if entry is not None:
            self._stop(*entry)
        return Reply.success()

    def _stop(self, code: ServerResource, stream: IncomingStream) -> None:
        stream.is_open = False
        handlers = self.table.stream_handlers(code)
        if handlers is not None:
            handlers[2](self.device, stream)

    def session_closed(self) -> None:
        """End every subscription of the device (its session closed)."""
        entries = list(self._open.values())
        self._open.clear()
        for entry in entries:
            self._stop(*entry)


__all__ = [
    "DeviceRequests",
    "RunHandler",
    "ServerResourceError",
    "ServerResources",
    "StreamOpener",
    "StreamStarted",
    "StreamStopped",
]
