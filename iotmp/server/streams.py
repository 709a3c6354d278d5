"""Stream hub: one device stream per (device, resource), shared by all app subscribers.

Every application subscription (a resource WebSocket asking for ``resource`` at
``interval`` seconds) is a :class:`Subscription`. All subscriptions to the same
device resource share ONE device stream whose interval is the greatest common
divisor of theirs (milliseconds towards the device; 0 = pushes only). Each
subscriber is then served at its own rate and gets each value once (rules in
:class:`Subscription`): devices both sample periodically and push on change,
and after a write both the device and the server's read-back report the new
state, so the raw device stream carries repeats. The first sample after a
(re)subscription is always delivered: it is the device's stream echo.

Shared serialisation: while one value is offered to two or more subscribers,
the hub's :attr:`StreamHub.frame_memo` holds what they encoded for it (e.g. the
WebSocket frame text per frame style), so N subscribers of one resource cost one
encode. It is None outside such a round (and with one subscriber: nothing to share).

Back-pressure: a subscriber's ``deliver`` may return an :class:`asyncio.Event`
(its client is behind); the device stream's next sample then waits until every
such event is set, so the device session reads no further meanwhile instead of
frames being dropped.

The device stream is re-configured (STOP + START) when the subscriber set
changes in a way that needs it, stopped when the last subscriber leaves,
forgotten (not stopped) when the device disconnects and started again when it
reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from iotmp.protocol import session as protocol_session
from iotmp.protocol import speedups
from iotmp.protocol.errors import IotmpError, RemoteError, RequestTimeoutError
from iotmp.protocol.limits import MAX_DEPTH_CAP

from .ws_frames import DIRECT_WRITE_LIMIT

_LOGGER = logging.getLogger(__name__)


class StreamLink(Protocol):
    """What the hub needs from a connected device (see :class:`.device_link.DeviceLink`)."""

    @property
    def closed(self) -> bool:
        """Whether the device session ended."""

    async def start_stream(
        self, resource: str, interval_ms: int, on_data: Callable[[Any], Any]
    ) -> object:
        """Open a device stream; returns a handle for :meth:`stop_stream`."""

    async def stop_stream(self, handle: object) -> None:
        """Close a device stream opened by :meth:`start_stream`."""


LinkLookup = Callable[[str], StreamLink | None]
"""device id -> the device's live link, or None while it is offline."""


_NOTHING: Any = object()

DUPLICATE_WINDOW = 1.0
"""Seconds within which an equal value is the same change arriving twice (the device's
push and the server's read-back after a write, or a push and a sample in one tick)."""


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (``True`` is not ``1`` here)."""
    return a is not _NOTHING and type(a) is type(b) and a == b


class SampleSink:
    """Where the compiled sample path may write a subscriber's data frames itself.

    Given by a subscriber whose frames are the default style and whose socket has a
    direct writer: the frame is ``prefix`` + the value's JSON + ``}``.
    """

    __slots__ = ("outbox", "prefix", "transport", "ws")

    def __init__(self, outbox: Any, ws: Any, transport: Any, prefix: bytes) -> None:
        self.outbox = outbox
        self.ws = ws
        self.transport = transport
        self.prefix = prefix


class Subscription:
    """One application subscriber of one device resource.

    ``deliver(resource, value)`` queues a data frame; ``fail(resource, message,
    status)`` reports that the device stream could not be opened (``status`` is
    the HTTP-like status of the failure); ``gone(resource)`` that the device
    disconnected. None of them may block.

    What a subscriber gets (each value once, at its own rate):

    * the stream echo right after (re)subscribing;
    * interval 0: every change -- a value equal to the last one delivered is
      dropped when the shared device stream samples periodically (another
      subscriber asked for an interval) or when it comes within
      :data:`DUPLICATE_WINDOW` of that delivery;
    * interval N: at most one value per N seconds (less a small tolerance for
      timer jitter). A value equal to the last one delivered is held back
      briefly, so that a change pushed in the same tick wins over a sample that
      repeats the previous value;
    * a write's read-back (:meth:`StreamHub.push`) at once, unless the device
      pushed that value already.
    """

    # Slots: the compiled sample path reads a subscriber for every sample it takes.
    __slots__ = (
        "_deliver",
        "_fail",
        "_gone",
        "_held",
        "_held_timer",
        "_interval",
        "clock",
        "deliveries",
        "device_id",
        "interval_ms",
        "last_delivery",
        "last_value",
        "pending_first",
        "resource",
        "sink",
    )

    def __init__(
        self,
        device_id: str,
        resource: str,
        interval: float,
        deliver: Callable[[str, Any], asyncio.Event | None],
        fail: Callable[[str, str, int], None] | None = None,
        *,
        gone: Callable[[str], None] | None = None,
    ) -> None:
        self.device_id = device_id
        self.resource = resource
        self._interval = 0.0
        self.interval_ms = 0
        """The interval in whole milliseconds (what the device is asked for)."""
        self.interval = interval
        self._deliver = deliver
        self._fail = fail
        self._gone = gone
        self.pending_first = True
        self.last_delivery: float | None = None
        self.last_value: Any = _NOTHING
        self.deliveries = 0
        self.clock: Callable[[], float] = time.monotonic
        self._held: Any = _NOTHING
        self._held_timer: asyncio.TimerHandle | None = None
        self.sink: SampleSink | None = None
        """Set by a subscriber the compiled sample path may write to (else None)."""

    @property
    def interval(self) -> float:
        """Seconds between deliveries (0 = every change)."""
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        self._interval = max(0.0, float(seconds))
        self.interval_ms = round(self._interval * 1000)  # kept: read for every sample

    @property
    def tolerance(self) -> float:
        """Seconds a sample may come early and still count for the next interval."""
        return min(0.1 * self.interval, 0.25)

    def _recent(self, now: float, window: float) -> bool:
        return self.last_delivery is not None and now - self.last_delivery < window

    def offer(
        self, value: Any, now: float, stream_ms: int, *, echo: bool = False
    ) -> asyncio.Event | None:
        """Deliver ``value`` if this subscriber wants it now (see the class docstring).

        ``stream_ms`` is the shared device stream's interval (0 = pushes only);
        ``echo`` marks the read-back of a write. Returns what ``deliver``
        returned: an event to wait for before the next sample (back-pressure).
        """
        if self.pending_first:
            return self._send(value, now)
        if type(self.last_value) is _RawValue:  # delivered by the compiled path
            self.last_value = self.last_value.decode()
        if echo or self.interval_ms == 0:
            repeated = _same(value, self.last_value) and (
                (stream_ms > 0 and not echo) or self._recent(now, DUPLICATE_WINDOW)
            )
            return None if repeated else self._send(value, now)
        if self._recent(now, self.interval - self.tolerance):
            return None  # not due yet
        if _same(value, self.last_value):
            self._hold(value)
            return None
        return self._send(value, now)

    def _hold(self, value: Any) -> None:
        self._held = value
        if self._held_timer is None:
            grace = min(0.5 * self.interval, DUPLICATE_WINDOW)
            self._held_timer = asyncio.get_running_loop().call_later(grace, self._release)

    def _release(self) -> None:
        self._held_timer = None
        held, self._held = self._held, _NOTHING
        if held is not _NOTHING:
            self._send(held, self.clock())

    def _send(self, value: Any, now: float) -> asyncio.Event | None:
        if self._held_timer is not None or self._held is not _NOTHING:
            self.cancel()
        self.pending_first = False
        self.last_delivery = now
        self.last_value = value
        self.deliveries += 1
        try:
            return self._deliver(self.resource, value)
        except Exception:
            _LOGGER.exception("stream subscriber failed to take a frame")
            return None

    def cancel(self) -> None:
        """Drop a held value (the subscription ends or a newer value went out)."""
        self._held = _NOTHING
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None

    def failed(self, message: str, status: int = 500) -> None:
        """Tell the subscriber the device stream could not be opened."""
        if self._fail is not None:
            try:
                self._fail(self.resource, message, status)
            except Exception:
                _LOGGER.exception("stream subscriber failed to take an error")

    def device_gone(self) -> None:
        """Tell the subscriber the device disconnected."""
        if self._gone is not None:
            try:
                self._gone(self.resource)
            except Exception:
                _LOGGER.exception("stream subscriber failed to take a disconnect")


class ResourceStream:
    """The shared device stream of one (device, resource) and its subscribers."""

    def __init__(self, hub: StreamHub, device_id: str, resource: str) -> None:
        self.hub = hub
        self.device_id = device_id
        self.resource = resource
        self.subscribers: list[Subscription] = []
        self.handle: object | None = None
        self.link: StreamLink | None = None
        self.interval_ms: int | None = None  # interval the device stream runs with
        self.starts = 0
        self._dirty = False
        self._restart = False
        self._task: asyncio.Task[None] | None = None
        self._route: tuple[Any, int, Subscription] | None = None
        """(SamplePath, stream id, subscriber) while the compiled path may take samples;
        (None, -1, subscriber) once routing was tried and is not possible for it."""

    @property
    def desired_interval_ms(self) -> int | None:
        """GCD of the subscribers' intervals in ms (None without subscribers)."""
        if not self.subscribers:
            return None
        result = 0
        for sub in self.subscribers:
            result = math.gcd(result, sub.interval_ms)
        return result

    def schedule(self, *, restart: bool = False) -> None:
        """Bring the device stream in line with the subscribers (in the background)."""
        self._dirty = True
        self._restart = self._restart or restart
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._reconcile(), name=f"iotmp-stream {self.device_id}/{self.resource}"
            )
            self.hub._tasks.add(self._task)
            self._task.add_done_callback(self.hub._tasks.discard)

    def forget_device_stream(self) -> None:
        """Forget the device stream: the device went away and its stream ids are dead."""
        self._unroute()
        self.handle = None
        self.link = None
        self.interval_ms = None

    async def _reconcile(self) -> None:
        while self._dirty:
            self._dirty = False
            restart, self._restart = self._restart, False
            link = self.hub._lookup(self.device_id)
            if self.link is not None and (self.link is not link or self.link.closed):
                self.forget_device_stream()
            desired = self.desired_interval_ms
            if link is None or link.closed:
                continue
            if desired is None:
                if self.handle is not None:
                    await self._stop(link)
                continue
            if self.handle is not None and not restart and desired == self.interval_ms:
                continue
            if self.handle is not None:
                await self._stop(link)
            await self._start(link, desired)
        if not self.subscribers and self.handle is None:
            self.hub._drop(self)

    async def _stop(self, link: StreamLink) -> None:
        self._unroute()
        handle, self.handle = self.handle, None
        self.interval_ms = None
        self.link = None
        if handle is None:
            return
        try:
            await link.stop_stream(handle)
        except IotmpError as exc:
            _LOGGER.debug("%s/%s: stop stream: %r", self.device_id, self.resource, exc)

    async def _start(self, link: StreamLink, interval_ms: int) -> None:
        holder: list[object] = []
        early: list[Any] = []

        def on_data(value: Any) -> Awaitable[None] | None:
            if not holder:
                early.append(value)  # the echo can beat start_stream's return
            elif self.handle is holder[0]:
                gates = self._dispatch(value)
                if gates:
                    return _wait_all(gates)
            return None

        try:
            handle = await link.start_stream(self.resource, interval_ms, on_data)
        except RemoteError as exc:
            message, status = _remote_failure(exc)
            _LOGGER.debug("%s/%s: start stream: %s", self.device_id, self.resource, message)
            for sub in list(self.subscribers):
                sub.failed(message, status)
            return
        except RequestTimeoutError as exc:
            _LOGGER.debug("%s/%s: start stream: %r", self.device_id, self.resource, exc)
            for sub in list(self.subscribers):
                sub.failed("device error: no answer to START_STREAM in time", 504)
            return
        except IotmpError as exc:
            _LOGGER.debug("%s/%s: start stream: %r", self.device_id, self.resource, exc)
            if not link.closed:
                for sub in list(self.subscribers):
                    sub.failed(f"device error: stream not opened ({exc})", 502)
            return
        holder.append(handle)
        self.handle = handle
        self.link = link
        self.interval_ms = interval_ms
        self.starts += 1
        self.hub.device_streams_started += 1
        for value in early:
            self._dispatch(value)

    def _dispatch(self, value: Any, *, echo: bool = False) -> list[asyncio.Event]:
        """Offer ``value`` to every subscriber; returns the events of those behind."""
        hub = self.hub
        now = hub.clock()
        stream_ms = self.interval_ms or 0
        subscribers = self.subscribers
        if len(subscribers) == 1:  # the usual case: nothing to share, one gate at most
            sub = subscribers[0]
            gate = sub.offer(value, now, stream_ms, echo=echo)
            if sub.sink is not None and (self._route is None or self._route[2] is not sub):
                self._try_route(sub)
            return _NO_GATES if gate is None else [gate]
        gates: list[asyncio.Event] = []
        hub.frame_memo = {}
        try:
            for sub in subscribers.copy():
                gate = sub.offer(value, now, stream_ms, echo=echo)
                if gate is not None:
                    gates.append(gate)
        finally:
            hub.frame_memo = None
        return gates

    def _try_route(self, sub: Subscription) -> None:
        """Hand later samples to the session's compiled sample path, where it can take them.

        The route holds while the stream's side of its conditions does: this device
        stream (its handle), at interval 0, with ``sub`` its only subscriber. Whatever
        changes one of those drops the route first (``_stop``,
        ``forget_device_stream``, ``StreamHub.subscribe`` and ``unsubscribe``), so the
        compiled path does not read the stream per sample. It checks the rest on
        every sample (the session, the subscriber, the socket) and leaves the sample
        to Python otherwise (see ``_sample_path_c``). A stream that cannot be routed
        for ``sub`` (no compiled path, no IOTMP session, an interval) is remembered as
        such, so this runs once per subscriber and device stream, not per sample.
        """
        self._unroute()
        sink = sub.sink
        session = getattr(self.link, "session", None)
        handle = self.handle
        stream_id = getattr(handle, "stream_id", None)
        if (
            _SamplePath is None
            or sink is None
            or session is None
            or type(stream_id) is not int
            or sub.interval_ms
            or self.interval_ms
            or self.subscribers != [sub]
        ):
            self._route = (None, -1, sub)
            return
        path = session.fast_path
        if path is None:
            path = session.fast_path = _SamplePath(session)
            path.install_front(session.transport)
        limits = session.config.limits
        assert _Route is not None
        path.routes[stream_id] = _Route(
            handle,
            sub,
            sink.outbox,
            sink.ws,
            sink.transport,
            self.hub.clock,
            session._rx_budget,
            sink.prefix,
            min(limits.max_depth, MAX_DEPTH_CAP),
            limits.max_message_size,
        )
        self._route = (path, stream_id, sub)

    def _unroute(self) -> None:
        if self._route is not None:
            path, stream_id, _ = self._route
            self._route = None
            if path is not None:
                path.routes.pop(stream_id, None)


_NO_GATES: list[asyncio.Event] = []
"""Returned (never changed) when no subscriber is behind."""


def _sample_path() -> tuple[Any, Any, Any]:
    """Return the compiled sample path's ``SamplePath``, ``Route`` and ``RawValue``.

    (None, None, None) without it: the server then takes the Python path.
    """
    _sample_path_c: Any = speedups.extension(f"{__package__}._sample_path_c")
    if _sample_path_c is None:
        return None, None, None
    _sample_path_c.configure(_NOTHING, _same, DUPLICATE_WINDOW, DIRECT_WRITE_LIMIT)
    # The session's own limit and logger: its checks are the Front's (_sample_path_c).
    _sample_path_c.configure_session(
        protocol_session._FEED_SLICE,
        logging.getLogger(protocol_session.__name__),
    )
    return _sample_path_c.SamplePath, _sample_path_c.Route, _sample_path_c.RawValue


async def _wait_all(gates: list[asyncio.Event]) -> None:
    for gate in gates:
        await gate.wait()


def _remote_failure(exc: RemoteError) -> tuple[str, int]:
    """Message and HTTP-like status of a device's ERROR answer to START_STREAM."""
    code = exc.code
    status = (
        code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else 500
    )
    payload = exc.payload
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return f"device error: {payload['error']}", status
    if isinstance(payload, str) and payload:
        return f"device error: {payload}", status
    suffix = f" (code {code})" if isinstance(code, int) and not isinstance(code, bool) else ""
    return f"device error: the device refused to stream this resource{suffix}", status


class StreamHub:
    """All shared device streams of a server."""

    def __init__(self, lookup: LinkLookup, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self.clock = clock
        self._streams: dict[tuple[str, str], ResourceStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.device_streams_started = 0
        self.frame_memo: dict[Any, tuple[Any, Any]] | None = None
        """key -> (value, what a subscriber made of it) during an offer round to two
        or more subscribers (else None); an entry counts only for the very same
        value object (``is``)."""

    def stream(self, device_id: str, resource: str) -> ResourceStream | None:
        """Return the shared stream of a device resource, if anyone subscribed."""
        return self._streams.get((device_id, resource))

    def subscribe(self, sub: Subscription) -> None:
        """Add (or re-add, to reconfigure) a subscription; its next frame is the echo."""
        key = (sub.device_id, sub.resource)
        stream = self._streams.get(key)
        if stream is None:
            stream = ResourceStream(self, sub.device_id, sub.resource)
            self._streams[key] = stream
        stream._unroute()  # the compiled path's route holds for one set of subscribers
        if sub not in stream.subscribers:
            stream.subscribers.append(sub)
        sub.clock = self.clock
        sub.cancel()
        sub.pending_first = True
        stream.schedule(restart=True)

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscription; the device stream follows."""
        stream = self._streams.get((sub.device_id, sub.resource))
        if stream is None or sub not in stream.subscribers:
            return
        stream._unroute()
        stream.subscribers.remove(sub)
        sub.cancel()
        stream.schedule()

    def has_subscribers(self, device_id: str, resource: str) -> bool:
        """Whether anyone listens to this device resource."""
        stream = self._streams.get((device_id, resource))
        return stream is not None and bool(stream.subscribers)

    def push(self, device_id: str, resource: str, value: Any) -> None:
        """Offer a write's read-back ``value`` to every subscriber (once each)."""
        stream = self._streams.get((device_id, resource))
        if stream is not None:
            stream._dispatch(value, echo=True)

    def device_connected(self, device_id: str) -> None:
        """Start the device streams of every subscribed resource of the device."""
        for (dev, _), stream in list(self._streams.items()):
            if dev == device_id:
                stream.forget_device_stream()
                for sub in stream.subscribers:
                    sub.pending_first = True
                stream.schedule(restart=True)

    def device_disconnected(self, device_id: str) -> None:
        """Forget the device streams of the device (subscriptions stay, and are told)."""
        for (dev, _), stream in list(self._streams.items()):
            if dev == device_id:
                stream.forget_device_stream()
                for sub in list(stream.subscribers):
                    sub.device_gone()

    def _drop(self, stream: ResourceStream) -> None:
        key = (stream.device_id, stream.resource)
        if self._streams.get(key) is stream and not stream.subscribers:
            del self._streams[key]

    async def close(self) -> None:
        """Cancel background work (device streams die with their sessions)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._streams.clear()


_SamplePath, _Route, _RawValue = _sample_path()
"""``_RawValue``: the type of a ``last_value`` the compiled path delivered (kept as its
PSON bytes, decoded when the Python path needs it); None without the compiled path."""
