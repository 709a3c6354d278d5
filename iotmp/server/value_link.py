"""A device link over last values: devices that do not speak IOTMP (MQTT, HTTP).

The REST/WebSocket API, the stream hub and the bridge talk to every connected
device through a :class:`~.device_link.DeviceLink`. A :class:`ValueLink` is one
whose resources are values the device pushed (an MQTT feed, an HTTP callback
field) plus, for writable resources, a ``writer`` that sends a new value to the
device. DESCRIBE lists the resources (``fn`` 2 input / 3 output), RUN of an
output returns its last value, RUN of an input writes it, and streams get the
last value at once and every new one after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iotmp.protocol.errors import RemoteError
from iotmp.protocol.message import ABSENT

from .device_link import DeviceLink
from .registry import DeviceState, now_ms

if TYPE_CHECKING:
    from .app import IotmpServer

_LOGGER = logging.getLogger(__name__)

FN_INPUT = 2
FN_OUTPUT = 3

Writer = Callable[[str, Any], Awaitable[None]]


@dataclass(slots=True)
class ValueResource:
    """One resource: its kind (``fn``), last value and when it was set."""

    fn: int
    value: Any = ABSENT
    ts: int | None = None
    listeners: list[Callable[[Any], None]] = field(default_factory=list)


class ValueStore:
    """The resources of one device; kept across disconnects (last values stay)."""

    def __init__(self) -> None:
        self.resources: dict[str, ValueResource] = {}

    def set(self, name: str, value: Any, *, fn: int = FN_OUTPUT) -> ValueResource:
        """Store a new value (creating the resource) and tell the streams."""
        resource = self.resources.get(name)
        if resource is None:
            resource = ValueResource(fn)
            self.resources[name] = resource
        resource.value = value
        resource.ts = now_ms()
        for listener in list(resource.listeners):
            try:
                listener(value)
            except Exception:
                _LOGGER.exception("stream listener failed")
        return resource

    def describe(self) -> dict[str, Any]:
        """Return the whole-device DESCRIBE answer."""
        return {name: {"fn": r.fn} for name, r in sorted(self.resources.items())}


@dataclass(eq=False, slots=True)
class _Stream:
    resource: ValueResource
    on_data: Callable[[Any], None]
    timer: asyncio.TimerHandle | None = None
    closed: bool = False


class _FakeTransport:
    def __init__(self, kind: str, peer: str) -> None:
        self.kind = kind
        self.peer = peer


class ValueLink(DeviceLink):
    """A :class:`DeviceLink` backed by a :class:`ValueStore` (see the module docstring)."""

    def __init__(
        self,
        device_id: str,
        store: ValueStore,
        *,
        transport_kind: str,
        peer: str = "",
        writer: Writer | None = None,
    ) -> None:
        # No IOTMP session behind this link: set what DeviceLink's users read.
        self.device_id = device_id
        self.store = store
        self.writer = writer
        self.peer_address = peer
        self.transport_kind = transport_kind
        self.request_timeout = 10.0
        self._closed = False
        self._streams: set[_Stream] = set()

    @property
    def closed(self) -> bool:
        """Whether the device went offline."""
        return self._closed

    def close_now(self) -> None:
        """Mark the link closed and end its streams."""
        self._closed = True
        for stream in list(self._streams):
            self._end(stream)

    async def describe(self) -> Any:
        """``{name: {"fn": 2|3}}``."""
        return self.store.describe()

    def _resource(self, name: str) -> ValueResource:
        resource = self.store.resources.get(name)
        if resource is None:
            raise RemoteError("resource not found", 404, {"error": "resource not found"})
        return resource

    async def describe_resource(self, resource: str) -> Any:
        """``{"in"|"out": last, "ts": ms}`` (in for inputs; ``{}`` before any value)."""
        entry = self._resource(resource)
        if entry.value is ABSENT:
            return {}
        return {"in" if entry.fn == FN_INPUT else "out": entry.value, "ts": entry.ts}

    async def run(self, resource: str, payload: Any = ABSENT) -> Any:
        """Read an output's last value, or write ``payload`` to the device."""
        entry = self._resource(resource)
        if payload is ABSENT:
            return entry.value if entry.fn != FN_INPUT else ABSENT
        if self.writer is None:
            raise RemoteError("read-only", 405, {"error": "resource is read-only"})
        await self.writer(resource, payload)
        self.store.set(resource, payload, fn=entry.fn)
        return ABSENT

    async def start_stream(
        self, resource: str, interval_ms: int, on_data: Callable[[Any], None]
    ) -> object:
        """Deliver the last value now, every new one, and the last one each interval."""
        entry = self._resource(resource)
        stream = _Stream(entry, on_data)
        self._streams.add(stream)
        entry.listeners.append(on_data)
        loop = asyncio.get_running_loop()
        if entry.value is not ABSENT:
            loop.call_soon(self._echo, stream)
        if interval_ms > 0:
            self._schedule(stream, interval_ms / 1000.0)
        return stream

    def _echo(self, stream: _Stream) -> None:
        if not stream.closed and stream.resource.value is not ABSENT:
            stream.on_data(stream.resource.value)

    def _schedule(self, stream: _Stream, period: float) -> None:
        def tick() -> None:
            self._echo(stream)
            if not stream.closed:
                self._schedule(stream, period)

        stream.timer = asyncio.get_running_loop().call_later(period, tick)

    def _end(self, stream: _Stream) -> None:
        stream.closed = True
        if stream.timer is not None:
            stream.timer.cancel()
        if stream.on_data in stream.resource.listeners:
            stream.resource.listeners.remove(stream.on_data)
        self._streams.discard(stream)

    async def stop_stream(self, handle: object) -> None:
        """Stop a stream from :meth:`start_stream`."""
        if isinstance(handle, _Stream):
            self._end(handle)

    async def close(self, reason: str) -> None:
        """Mark closed (the far end is not ours to close)."""
        self.close_now()

    def __repr__(self) -> str:
        return f"<ValueLink {self.device_id} {self.transport_kind}>"


def go_online(server: IotmpServer, state: DeviceState, link: ValueLink) -> None:
    """Attach ``link`` as the device's session (listeners and streams follow)."""
    state.set_description(link.store.describe())
    old = state.link
    if old is not None and old is not link:
        go_offline(server, state, old)
    if state.link is None:
        server.registry.attach(state, link)
        server.hub.device_connected(state.id)


def go_offline(server: IotmpServer, state: DeviceState, link: DeviceLink) -> None:
    """Detach ``link`` (the device shows offline; last values stay in the store)."""
    if isinstance(link, ValueLink):
        link.close_now()
    if server.registry.detach(state, link):
        server.hub.device_disconnected(state.id)
