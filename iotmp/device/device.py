"""Device-side resource API on top of :class:`~.session.Session`.

A :class:`Device` declares resources the way the reference clients do
(spec 10, 12) and serves the server's RUN / DESCRIBE / START_STREAM /
STOP_STREAM / STREAM_DATA for them::

    device = Device("alice", "dev1", "s3cret")
    device.output_resource("temperature", lambda: {"celsius": 21.5})
    device.input_resource("led", get_led, set_led)
    device.run_resource("reboot", do_reboot)
    await device.run("127.0.0.1", 25204)          # until device.stop()

Resource kinds ("fn" in DESCRIBE): 1 run, 2 input, 3 output, 4 input+output.
Handlers may be plain functions or coroutines. Raising
:class:`ResourceError` answers ERROR with PARAMETERS ``code`` and PAYLOAD
``{"error": message}`` (like ``set_error`` in the references).

Behaviour matches the reference devices (reference-device observations):

* RUN on an input sets the state and answers OK *without* payload; the state
  reads back through DESCRIBE (``{"in": state}``) or a stream. A RUN without
  payload leaves the state alone.
* START_STREAM answers OK, then sends one STREAM_DATA with the current value
  at once (the "stream echo": output for fn 3/4, state for fn 2).
  ``{"interval": ms}`` or a bare integer PARAMETERS adds periodic samples
  (every ``ms`` exactly; the references round up to a 1-s tick).
* After a RUN that changes an input, the new state is streamed on that
  resource's open streams (what well-behaved firmware does).
* STREAM_DATA from the server on an open stream is new input: it is applied
  and the new state (or output) is echoed on that stream.
* Unknown resources (including numeric RESOURCE) answer ERROR without payload;
  STOP_STREAM of a stream that is not open answers ERROR.
* Streams do not survive a reconnect (unlike the references, observation 11).
"""

# ruff: noqa: ASYNC109  (per-call timeouts are part of the public API)
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, Literal

from ..protocol.errors import (
    AuthenticationError,
    ConnectionClosedError,
    IotmpError,
    ProtocolError,
    RequestTimeoutError,
)
from ..protocol.message import ABSENT, Message
from ..protocol.session import (
    DEFAULT_KEEP_ALIVE,
    IncomingStream,
    Reply,
    Request,
    RequestHandler,
    Role,
    Session,
    SessionConfig,
)
from ..protocol.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    WEBSOCKET_PATH,
    Transport,
    open_tcp,
    open_websocket,
)
from .server_calls import ServerCallLayout, ServerCalls

_LOGGER = logging.getLogger(__name__)

DEFAULT_RECONNECT_DELAY: Final = 5.0
"""Seconds between reconnect attempts ([Linux] waits a constant 5 s)."""

TransportKind = Literal["tcp", "tls", "ws", "wss"]


class ResourceError(IotmpError):
    """Raised by a resource handler to answer ERROR.

    ``message`` becomes PAYLOAD ``{"error": message}``, ``code`` (an
    HTTP-like integer, optional) becomes PARAMETERS.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ResourceKind(IntEnum):
    """The ``fn`` value of a resource in DESCRIBE (spec 10.1)."""

    RUN = 1
    INPUT = 2
    OUTPUT = 3
    INPUT_OUTPUT = 4


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async handler."""
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


@dataclass(slots=True)
class Resource:
    """One declared resource. Use the ``Device.*_resource`` methods to make them."""

    name: str
    kind: ResourceKind
    run_fn: Callable[[], Any] | None = None
    get_state: Callable[[], Any] | None = None
    set_state: Callable[[Any], Any] | None = None
    read: Callable[[], Any] | None = None
    fn: Callable[[Any], Any] | None = None
    sample_input: Any = None
    last_input: Any = None

    async def current_value(self) -> Any:
        """Return what a stream sample carries (ABSENT for run resources)."""
        if self.kind is ResourceKind.INPUT:
            assert self.get_state is not None
            return await _call(self.get_state)
        if self.kind is ResourceKind.OUTPUT:
            assert self.read is not None
            return await _call(self.read)
        if self.kind is ResourceKind.INPUT_OUTPUT:
            assert self.fn is not None
            return await _call(self.fn, self.last_input)
        return ABSENT

    async def describe(self) -> Any:
        """Return the single-resource DESCRIBE payload (spec 10.2)."""
        if self.kind is ResourceKind.INPUT:
            return {"in": await self.current_value()}
        if self.kind is ResourceKind.OUTPUT:
            return {"out": await self.current_value()}
        if self.kind is ResourceKind.INPUT_OUTPUT:
            assert self.fn is not None
            return {"in": self.sample_input, "out": await _call(self.fn, self.sample_input)}
        return ABSENT

    async def apply_input(self, value: Any) -> Any:
        """Feed a new input; returns what to echo on a stream."""
        if self.kind is ResourceKind.INPUT:
            assert self.set_state is not None
            await _call(self.set_state, value)
            return await self.current_value()
        if self.kind is ResourceKind.INPUT_OUTPUT:
            self.last_input = value
            return await self.current_value()
        return await self.current_value()


def resource_path(value: Any) -> str | None:
    """Return RESOURCE as a path string, or None when it is not a path.

    Strings are taken as they are, arrays of strings joined with ``/``
    ([Embedded] ``extract_resource_path``).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
        return "/".join(value)
    return None


def stream_interval_ms(parameters: Any) -> int:
    """Return the sampling interval (ms) of a START_STREAM; 0 = events only.

    Accepts ``{"interval": ms}`` and a bare number ([Bench]).
    """
    value = parameters.get("interval", 0) if isinstance(parameters, dict) else parameters
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    return 0


class Device(ServerCalls):
    """A virtual IOTMP device: declared resources plus a (re)connecting client session.

    The calls it makes on its server (properties, buckets, endpoints, other
    devices, syncs, event subscriptions) come from :class:`~.server_calls.ServerCalls`.
    """

    def __init__(
        self,
        user: str,
        device_id: str,
        credential: str,
        *,
        config: SessionConfig | None = None,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        max_reconnect_delay: float | None = None,
        jitter: float = 0.1,
        name: str | None = None,
        server_call_layout: ServerCallLayout = "embedded",
    ) -> None:
        """Declare the device; add resources with the ``*_resource`` methods.

        ``reconnect_delay`` is the wait before a reconnect; with
        ``max_reconnect_delay`` it doubles per failed attempt up to that value
        ([Embedded] back-off), else it stays constant ([Linux]). ``jitter`` is
        the +- fraction of random spread added to each wait.
        ``server_call_layout`` is how server calls are laid out (see
        :mod:`.server_calls`).
        """
        self.user = user
        self.device_id = device_id
        self.credential = credential
        self.config = config if config is not None else SessionConfig()
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.jitter = jitter
        self.name = name or f"device {user}/{device_id}"
        self.resources: dict[str, Resource] = {}
        self.session: Session | None = None
        """The current session while connected, else None."""
        self.connected = asyncio.Event()
        """Set while a session is authenticated; cleared when it drops."""
        self.connections = 0
        """Number of successful CONNECTs so far (tests watch reconnects with it)."""
        self.last_error: BaseException | None = None
        """Why the last connection attempt or session ended badly, if it did."""
        self._stop = asyncio.Event()
        self._running = False
        self._init_server_calls(server_call_layout)

    # --------------------------------------------------------- declaration

    def _add(self, resource: Resource) -> Resource:
        self.resources[resource.name] = resource
        return resource

    def run_resource(self, name: str, fn: Callable[[], Any]) -> Resource:
        """Declare a resource without input or output (fn 1); ``fn()`` runs on RUN."""
        return self._add(Resource(name, ResourceKind.RUN, run_fn=fn))

    def input_resource(
        self, name: str, get_state: Callable[[], Any], set_state: Callable[[Any], Any]
    ) -> Resource:
        """Declare an input (fn 2).

        RUN with payload calls ``set_state(payload)``; DESCRIBE and streams
        report ``get_state()``.
        """
        return self._add(
            Resource(name, ResourceKind.INPUT, get_state=get_state, set_state=set_state)
        )

    def output_resource(self, name: str, read: Callable[[], Any]) -> Resource:
        """Declare an output (fn 3): RUN / DESCRIBE / streams report ``read()``."""
        return self._add(Resource(name, ResourceKind.OUTPUT, read=read))

    def input_output_resource(
        self, name: str, fn: Callable[[Any], Any], sample_input: Any
    ) -> Resource:
        """Declare an input+output resource (fn 4).

        RUN answers ``fn(payload)``; DESCRIBE answers
        ``{"in": sample_input, "out": fn(sample_input)}``.
        """
        return self._add(
            Resource(
                name,
                ResourceKind.INPUT_OUTPUT,
                fn=fn,
                sample_input=sample_input,
                last_input=sample_input,
            )
        )

    def api(self) -> dict[str, Any]:
        """Return the whole-API DESCRIBE payload ``{name: {"fn": n}}``."""
        return {name: {"fn": int(res.kind)} for name, res in self.resources.items()}

    # ------------------------------------------------------------- streams

    def open_streams(self, resource: str) -> list[IncomingStream]:
        """Streams the server currently has open on ``resource``."""
        session = self.session
        if session is None:
            return []
        return [
            stream
            for stream in session.incoming_streams.values()
            if stream.is_open and resource_path(stream.resource) == resource
        ]

    async def stream(self, resource: str, payload: Any = ABSENT) -> int:
        """Push the current value (or ``payload``) on every open stream of ``resource``.

        This is "stream on change"; returns how many streams got the sample.
        """
        streams = self.open_streams(resource)
        if not streams:
            return 0
        if payload is ABSENT:
            res = self.resources.get(resource)
            if res is None:
                return 0
            payload = await res.current_value()
            if payload is ABSENT:
                return 0
        sent = 0
        for stream in streams:
            with contextlib.suppress(ConnectionClosedError):
                await stream.send(payload)
                sent += 1
        return sent

    # ---------------------------------------------------------- connecting

    async def connect(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        transport: TransportKind = "tcp",
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        url: str | None = None,
        keep_alive: float = DEFAULT_KEEP_ALIVE,
        parameters: Any = None,
        legacy: bool = False,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> Session:
        """Open one connection and authenticate; returns the connected session.

        ``transport``: ``"tcp"``, ``"tls"`` (needs ``ssl_context``), ``"ws"`` /
        ``"wss"`` (``url``, or built as ``ws[s]://host:port/iotmp``).
        ``keep_alive`` is the keep-alive interval; when it is not the default
        60 s it is also announced as ``{"ka": keep_alive}`` unless
        ``parameters`` are given (reference clients send no PARAMETERS).
        ``legacy=True`` connects like a pre-2026 client (PARAMETERS 1, legacy
        PSON on the whole connection).
        """
        link = await self._open_transport(
            host,
            port,
            kind=transport,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            url=url,
            timeout=timeout,
        )
        config = dataclasses.replace(self.config, keep_alive=keep_alive)
        if parameters is None and keep_alive != DEFAULT_KEEP_ALIVE and not legacy:
            parameters = {"ka": keep_alive}
        session = Session(
            link,
            Role.CLIENT,
            config=config,
            handler=_DeviceHandler(self),
            name=f"{self.name} -> {link.peer}",
        )
        await session.connect(
            self.user,
            self.device_id,
            self.credential,
            parameters=parameters,
            legacy=legacy,
            timeout=timeout,
        )
        return session

    async def _open_transport(
        self,
        host: str | None,
        port: int | None,
        *,
        kind: TransportKind,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        url: str | None,
        timeout: float,
    ) -> Transport:
        if kind in ("ws", "wss"):
            if url is None:
                if host is None or port is None:
                    raise ValueError("a websocket device needs url or host and port")
                scheme = "wss" if kind == "wss" or ssl_context is not None else "ws"
                url = f"{scheme}://{host}:{port}{WEBSOCKET_PATH}"
            ws_ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
            return await open_websocket(url, ssl=ws_ssl, timeout=timeout)
        if host is None or port is None:
            raise ValueError("a tcp/tls device needs host and port")
        if kind == "tls" and ssl_context is None:
            raise ValueError("transport 'tls' needs an ssl_context")
        return await open_tcp(
            host,
            port,
            ssl_context=ssl_context if kind == "tls" else None,
            server_hostname=server_hostname,
            timeout=timeout,
        )

    async def run(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        transport: TransportKind = "tcp",
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        url: str | None = None,
        keep_alive: float = DEFAULT_KEEP_ALIVE,
        parameters: Any = None,
        legacy: bool = False,
        reconnect: bool = True,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        """Connect and serve until :meth:`stop`.

        With ``reconnect`` the device reconnects after drops and refusals.
        With ``reconnect=False`` it returns when the session ends and raises
        if the connection or the CONNECT fails.
        """
        if self._running:
            raise IotmpError(f"{self.name}: already running")
        self._running = True
        self._stop.clear()
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    session = await self.connect(
                        host,
                        port,
                        transport=transport,
                        ssl_context=ssl_context,
                        server_hostname=server_hostname,
                        url=url,
                        keep_alive=keep_alive,
                        parameters=parameters,
                        legacy=legacy,
                        timeout=timeout,
                    )
                except (
                    ConnectionClosedError,
                    AuthenticationError,
                    RequestTimeoutError,
                    ProtocolError,
                    OSError,
                ) as exc:
                    self.last_error = exc
                    if not reconnect:
                        raise
                    _LOGGER.info("%s: connection failed: %s", self.name, exc)
                    failures += 1
                else:
                    failures = 0
                    await self._serve(session)
                    if not reconnect:
                        return
                await self._wait_before_retry(failures)
        finally:
            self._running = False

    async def _serve(self, session: Session) -> None:
        """Expose ``session`` as the current one until it closes."""
        self.session = session
        self.connections += 1
        self.connected.set()
        self._logged_in(session)  # subscriptions are opened again after every login
        try:
            stop_wait: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
            waiters: list[asyncio.Future[Any]] = [stop_wait, session.closed]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stop_wait
            if not session.is_closed:
                await session.disconnect()
            reason = await session.wait_closed()
            _LOGGER.info("%s: session ended: %s", self.name, reason)
        finally:
            self.connected.clear()
            self.session = None
            if not session.is_closed:
                await session.close("device stopped")

    async def _wait_before_retry(self, failures: int) -> None:
        delay = self.reconnect_delay
        if self.max_reconnect_delay is not None and failures > 1:
            delay = min(self.max_reconnect_delay, delay * 2 ** (failures - 1))
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, delay)):
                await self._stop.wait()

    async def stop(self) -> None:
        """Stop :meth:`run`: disconnect the current session and stop reconnecting."""
        self._stop.set()
        session = self.session
        if session is None:
            return
        if session.is_closed:
            await session.wait_closed()
        else:
            await session.disconnect()

    async def wait_connected(self, timeout: float | None = None) -> Session:
        """Wait until a session is authenticated; returns it."""
        async with asyncio.timeout(timeout):
            while True:
                await self.connected.wait()
                if self.session is not None:
                    return self.session
                await asyncio.sleep(0)


class _DeviceHandler(RequestHandler):
    """Serves one session's requests from the device's resources."""

    def __init__(self, device: Device) -> None:
        self.device = device

    def _find(self, request: Request) -> Resource | None:
        path = resource_path(request.resource)
        return None if path is None else self.device.resources.get(path)

    async def on_run(self, request: Request) -> Reply:
        resource = self._find(request)
        if resource is None:
            return Reply.error()
        try:
            payload = request.payload
            if resource.kind is ResourceKind.RUN:
                assert resource.run_fn is not None
                await _call(resource.run_fn)
                return Reply.success()
            if resource.kind is ResourceKind.OUTPUT:
                return Reply.success(_present(await resource.current_value()))
            if resource.kind is ResourceKind.INPUT_OUTPUT:
                assert resource.fn is not None
                value = resource.sample_input if payload is ABSENT else payload
                return Reply.success(_present(await _call(resource.fn, value)))
            # INPUT: the state changes but is not returned (observation 5).
            if payload is ABSENT:
                return Reply.success()
            assert resource.set_state is not None
            await _call(resource.set_state, payload)
        except ResourceError as exc:
            return Reply.error_message(exc.message, ABSENT if exc.code is None else exc.code)

        async def stream_new_state() -> None:
            await self.device.stream(resource.name)

        return Reply(True, after=stream_new_state)

    async def on_describe(self, request: Request) -> Reply:
        if request.resource is ABSENT:
            return Reply.success(self.device.api())
        resource = self._find(request)
        if resource is None:
            return Reply.error()
        try:
            return Reply.success(await resource.describe())
        except ResourceError as exc:
            return Reply.error_message(exc.message, ABSENT if exc.code is None else exc.code)

    async def on_start_stream(self, request: Request) -> Reply:
        return Reply.success() if self._find(request) is not None else Reply.error()

    async def on_stream_started(self, stream: IncomingStream) -> None:
        path = resource_path(stream.resource)
        resource = self.device.resources.get(path) if path is not None else None
        if resource is None:
            return
        await self._send_value(stream, resource)  # the "stream echo"
        interval = stream_interval_ms(stream.parameters)
        if interval:
            stream.session.spawn(
                self._sample_periodically(stream, resource, interval / 1000),
                f"stream {stream.stream_id}",
            )

    async def _sample_periodically(
        self, stream: IncomingStream, resource: Resource, interval: float
    ) -> None:
        while stream.is_open:
            await asyncio.sleep(interval)
            if stream.is_open:
                await self._send_value(stream, resource)

    async def _send_value(self, stream: IncomingStream, resource: Resource) -> None:
        try:
            value = await resource.current_value()
        except ResourceError as exc:
            _LOGGER.debug("%s: %s cannot be sampled: %s", self.device.name, resource.name, exc)
            return
        if value is not ABSENT:
            await stream.send(value)

    async def on_stream_data(self, stream: IncomingStream, message: Message) -> None:
        # New input from the server on an open stream: apply it and echo the
        # resulting state on the same stream (no OK/ERROR, spec 12.2).
        path = resource_path(stream.resource)
        resource = self.device.resources.get(path) if path is not None else None
        if resource is None or message.payload is ABSENT:
            return
        try:
            echo = await resource.apply_input(message.payload)
        except ResourceError as exc:
            _LOGGER.debug("%s: stream input for %s refused: %s", self.device.name, path, exc)
            return
        if echo is not ABSENT and stream.is_open:
            await stream.send(echo)


def _present(value: Any) -> Any:
    """Map a handler's None to "no PAYLOAD" (reference devices omit empty output)."""
    return ABSENT if value is None else value


__all__ = [
    "DEFAULT_RECONNECT_DELAY",
    "Device",
    "Resource",
    "ResourceError",
    "ResourceKind",
    "TransportKind",
    "resource_path",
    "stream_interval_ms",
]
