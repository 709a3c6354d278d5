"""Asyncio IOTMP session for both ends of a connection.

One :class:`Session` drives one :class:`~.transport.Transport`:

* the **connecting side** (``Role.CLIENT``, a device) calls :meth:`Session.connect`;
* the **accepting side** (``Role.SERVER``) calls :meth:`Session.accept`.

After the handshake both ends are symmetric (spec 4): either side may send
RUN / DESCRIBE / START_STREAM / STOP_STREAM / STREAM_DATA. Requests from the
peer go to a :class:`RequestHandler` (subclass it and override what you serve);
the session turns what the handler returns (a :class:`Reply`) into OK / ERROR
with the request's stream id.

Decisions where the spec leaves room (see the module's tests for the bytes):

* Incoming messages are accepted in every form the references produce: fields
  in any order, integers as varints, STREAM_DATA with PARAMETERS 1/2 or none,
  replies carrying an explicit stream id 0 (reference devices answer a RUN
  without STREAM_ID with ``01 02 08 00``; such a reply matches nothing and is
  ignored). We emit what current reference clients emit: new PSON (wire type
  2), integers as varints, no STREAM_DATA PARAMETERS.
* A RUN *without* STREAM_ID from the peer gets no reply (per [Docs]).
* Requests from the peer (and STREAM_DATA callbacks) are handled one at a time
  in arrival order by a worker task, so e.g. a START_STREAM is fully set up
  before STREAM_DATA for it is processed. A sample whose ``on_data`` finds
  nothing queued is handed to it straight from the reader (no queue entry,
  no task switch); an awaitable it returns is then awaited by the worker, and
  later samples queue behind it. Over a push transport (``Transport.pushes``:
  TCP and TLS) there is no reader task while nothing waits: chunks are decoded
  in the transport's callback, and a reader task runs only while something must
  be awaited, with later chunks in an inbox (reading pauses when it is full).
  Handlers may themselves send requests to the peer (replies are matched by
  the reader, not the worker).
  ``SessionConfig.concurrent_requests`` runs RUN / DESCRIBE handlers in their
  own tasks instead, for servers whose handlers can be slow.
* Stream ids are 16-bit, never 0, never one in use by either end (our pending
  requests and streams, the peer's unanswered requests and streams). The
  connecting side allocates odd ids, the accepting side even ones, counting up
  from a random start so that ids of a previous connection (which reference
  devices keep streaming on, observation 11) are unlikely to be reused soon.
* Keep-alive (spec 8): the client sends KEEP_ALIVE every ``ka`` seconds; the
  server echoes each one it receives; a client never answers a KEEP_ALIVE.
  The server declares the peer dead after ``ka * timeout_factor`` seconds
  without receiving *anything*. The client optionally
  (``check_keep_alive_echo``) drops the link when the echo of its previous
  keep-alive is still missing when the next one is due. The server may send
  its own KEEP_ALIVEs (``server_keep_alive``) but never expects an answer.
* A decode error (garbage, oversized frame) logs one line and closes the
  session. Nothing is ever raised into the event loop.
"""

# ruff: noqa: ASYNC109  (per-call timeouts are part of the public API)
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from .codec import MessageDecoder, decode_message, encode_message
from .errors import (
    AuthenticationError,
    ConnectionClosedError,
    IotmpError,
    ProtocolError,
    RemoteError,
    RequestTimeoutError,
)
from .limits import DEFAULT_LIMITS, Limits
from .message import ABSENT, Field, Message, MessageType, WireType
from .ratelimit import LogLimiter, TokenBucket
from .transport import Transport
from .varint import try_decode_varint32

_LOGGER = logging.getLogger(__name__)

DEFAULT_KEEP_ALIVE: Final = 60.0
MAX_KEEP_ALIVE: Final = 1800.0
KEEP_ALIVE_TIMEOUT_FACTOR: Final = 1.15

# CONNECT error codes (spec 7.2).
CONNECT_ERROR_REDIRECT: Final = 1
CONNECT_ERROR_CREDENTIALS: Final = 2
CONNECT_ERROR_KEEP_ALIVE: Final = 3
CONNECT_ERROR_ENCODING: Final = 4

_MAX_STREAM_ID: Final = 0xFFFF
_WORK_QUEUE_SIZE: Final = 1000
_TASK_STOP_TIMEOUT: Final = 5.0
_YIELD_EVERY: Final = 64  # messages of one read handled before the reader yields to the loop
_FEED_SLICE: Final = 4096  # bytes decoded at once: a big read of tiny messages is cut up
# Push transports: reading pauses while the inbox holds more than _INBOX_HIGH bytes,
# resumes at _INBOX_LOW (what asyncio's StreamReader allows: 2 x 64 KiB).
_INBOX_HIGH: Final = 128 * 1024
_INBOX_LOW: Final = 64 * 1024

_KEEP_ALIVE_MESSAGE: Final = Message(MessageType.KEEP_ALIVE)
_STREAM_DATA: Final = int(MessageType.STREAM_DATA)
_PAYLOAD: Final = int(Field.PAYLOAD)
_STREAM_ID: Final = int(Field.STREAM_ID)


class Role(StrEnum):
    """Which end of the connection a session is."""

    CLIENT = "client"
    """Connecting side (a device): sends CONNECT, odd stream ids, sends keep-alives."""
    SERVER = "server"
    """Accepting side: answers CONNECT, even stream ids, echoes keep-alives."""


@dataclass(slots=True)
class SessionConfig:
    """Tunables of a session. Defaults follow the references (spec 8, 14, 15)."""

    keep_alive: float = DEFAULT_KEEP_ALIVE
    """Client: seconds between KEEP_ALIVEs (overridden by ``ka`` in CONNECT
    parameters). Server: the ``ka`` assumed when CONNECT does not carry one."""
    timeout_factor: float = KEEP_ALIVE_TIMEOUT_FACTOR
    """Server: the peer is dead after ``ka * timeout_factor`` s of silence."""
    min_timeout_without_ka: float = 0.0
    """Server: the silence limit of a peer whose CONNECT declared no ``ka`` is at
    least this many seconds (reference devices send KEEP_ALIVE every 60 s,
    hard-coded, whatever the server assumes)."""
    max_keep_alive: float = MAX_KEEP_ALIVE
    """Server: larger ``ka`` values are refused with CONNECT error 3."""
    check_keep_alive_echo: bool = False
    """Client: close when the previous keep-alive's echo has not arrived when
    the next one is due ([Docs]; current reference clients do not check)."""
    server_keep_alive: float | None = None
    """Server: also send our own KEEP_ALIVE every this many seconds (no answer
    is expected; reference devices never answer). None = off."""
    request_timeout: float | None = 30.0
    """Default timeout of our requests (None = wait forever)."""
    handshake_timeout: float = 15.0
    """Timeout for the CONNECT exchange on both sides."""
    concurrent_requests: bool = False
    """Run each incoming RUN / DESCRIBE handler in its own task."""
    limits: Limits = DEFAULT_LIMITS
    """Decoder limits for incoming messages."""
    stream_buffer: int = 1000
    """Samples kept per :class:`StreamHandle` without ``on_data`` (oldest dropped)."""
    first_stream_id: int | None = None
    """Start of stream id allocation (None = random); for deterministic tests."""
    handshake_limits: Limits | None = None
    """Server: decoder limits for the first message (CONNECT), which arrives
    before the peer is authenticated; None = ``limits``."""
    max_message_rate: float | None = None
    """Messages per second the peer may send on average (None = unlimited);
    a peer over it (after ``message_burst``) is closed with one logged reason."""
    message_burst: int = 20_000
    """Messages the peer may send at once above ``max_message_rate``."""


@dataclass(frozen=True, slots=True)
class ConnectInfo:
    """What a CONNECT carried (server side) or sent (client side)."""

    user: str
    device: str
    credential: str
    parameters: Any
    """CONNECT PARAMETERS: a map, the legacy integer ``1``, or None when absent."""
    stream_id: int
    legacy: bool
    """True when the connection speaks legacy PSON (spec 7.3)."""
    keep_alive: float
    """Negotiated keep-alive interval in seconds."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a :class:`RequestHandler` answers: OK or ERROR with optional fields."""

    ok: bool = True
    payload: Any = ABSENT
    parameters: Any = ABSENT
    after: Callable[[], Awaitable[None]] | None = None
    """Awaited once the reply has been sent (e.g. to stream a changed state)."""

    @classmethod
    def success(cls, payload: Any = ABSENT, parameters: Any = ABSENT) -> Reply:
        """OK, optionally with PAYLOAD and PARAMETERS (e.g. a status code)."""
        return cls(True, payload, parameters)

    @classmethod
    def error(cls, code: Any = ABSENT, payload: Any = ABSENT) -> Reply:
        """ERROR with optional PARAMETERS ``code`` and PAYLOAD."""
        return cls(False, payload, code)

    @classmethod
    def error_message(cls, message: str, code: Any = ABSENT) -> Reply:
        """ERROR with PAYLOAD ``{"error": message}`` (what reference devices send)."""
        return cls(False, {"error": message}, code)


@dataclass(frozen=True, slots=True)
class Request:
    """A request received from the peer (RUN, DESCRIBE, START_STREAM, STOP_STREAM)."""

    session: Session
    message: Message

    @property
    def type(self) -> int:
        """Message type (RUN, DESCRIBE, START_STREAM or STOP_STREAM)."""
        return self.message.type

    @property
    def stream_id(self) -> int:
        """STREAM_ID (0 when absent)."""
        return self.message.stream_id

    @property
    def wants_reply(self) -> bool:
        """False only for a RUN without STREAM_ID (fire and forget)."""
        return self.message.type != MessageType.RUN or self.message.has(Field.STREAM_ID)

    @property
    def resource(self) -> Any:
        """RESOURCE, or ABSENT."""
        return self.message.resource

    @property
    def parameters(self) -> Any:
        """PARAMETERS, or ABSENT."""
        return self.message.parameters

    @property
    def payload(self) -> Any:
        """PAYLOAD, or ABSENT."""
        return self.message.payload


class IncomingStream:
    """A stream the *peer* opened on one of our resources (START_STREAM received)."""

    def __init__(self, session: Session, message: Message) -> None:
        self.session = session
        self.message = message
        """The START_STREAM that opened it."""
        self.stream_id: int = message.stream_id
        self.resource: Any = message.resource
        self.parameters: Any = message.parameters
        self.is_open = True

    async def send(self, payload: Any, *, parameters: Any = ABSENT) -> None:
        """Send one STREAM_DATA sample on this stream."""
        await self.session.send_stream_data(self.stream_id, payload, parameters=parameters)

    def __repr__(self) -> str:
        return f"<IncomingStream {self.stream_id} {self.resource!r} open={self.is_open}>"


class StreamHandle:
    """A stream *we* opened on a peer resource (:meth:`Session.start_stream`).

    Samples go to ``on_data(payload)`` when given (sync or async; called in
    arrival order), else into a buffer read with :meth:`receive`.
    """

    def __init__(
        self,
        session: Session,
        stream_id: int,
        resource: Any,
        parameters: Any,
        *,
        on_data: Callable[[Any], Any] | None,
        buffer_size: int,
    ) -> None:
        self.session = session
        self.stream_id = stream_id
        self.resource = resource
        self.parameters = parameters
        self.on_data = on_data
        self.initial: Any = None
        """PAYLOAD of the OK that accepted the stream (None when absent)."""
        self._last_message: Message | None = None
        self._last_frame: bytes | None = None  # the last STREAM_DATA still undecoded
        self.closed = False
        self._buffer: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(1, buffer_size))

    @property
    def last_message(self) -> Message | None:
        """The most recent STREAM_DATA received on this stream.

        A sample the session's ``fast_path`` handled is kept as its bytes and decoded
        here, on first use.
        """
        frame = self._last_frame
        if frame is not None:
            self._last_frame = None
            self._last_message = decode_message(frame, self.session.config.limits)
        return self._last_message

    @last_message.setter
    def last_message(self, message: Message | None) -> None:
        self._last_message = message
        self._last_frame = None

    async def stop(self, *, timeout: float | None = None) -> None:
        """Send STOP_STREAM and forget the stream (no-op when already closed)."""
        if not self.closed:
            await self.session.stop_stream(self.stream_id, timeout=timeout)

    async def receive(self, timeout: float | None = None) -> Any:
        """Next buffered sample (only when no ``on_data`` was given).

        Raises :class:`RequestTimeoutError` after ``timeout`` seconds and
        :class:`ConnectionClosedError` once the stream is closed and drained.
        """
        if self._buffer.empty() and self.closed:
            raise ConnectionClosedError(f"stream {self.stream_id} is closed")
        try:
            async with asyncio.timeout(timeout):
                item = await self._buffer.get()
        except TimeoutError as exc:
            raise RequestTimeoutError(f"no data on stream {self.stream_id}") from exc
        if item is _STREAM_END:
            self._buffer.put_nowait(_STREAM_END)  # keep waking later callers
            raise ConnectionClosedError(f"stream {self.stream_id} is closed")
        return item

    def _buffer_payload(self, payload: Any) -> None:
        if self._buffer.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._buffer.get_nowait()  # drop the oldest sample
        self._buffer.put_nowait(payload)

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            if self._buffer.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    self._buffer.get_nowait()
            self._buffer.put_nowait(_STREAM_END)

    def __repr__(self) -> str:
        return f"<StreamHandle {self.stream_id} {self.resource!r} closed={self.closed}>"


_STREAM_END: Final = object()

_LOG_LIMITER: Final = LogLimiter()
"""Log lines a peer can cause at will are rate-limited per cause."""


def _split_first_message(received: bytearray, limits: Limits) -> tuple[Message, bytes] | None:
    """Decode the first message of ``received`` under ``limits`` once it is complete.

    Returns the message and the bytes after it, None while incomplete; raises
    :class:`ProtocolError` as soon as the header announces a body over the limit.
    """
    end = len(received)
    header = try_decode_varint32(received, 0, end)
    if header is None:
        return None
    sized = try_decode_varint32(received, header[1], end)
    if sized is None:
        return None
    size, body = sized
    if size > limits.max_message_size:
        raise ProtocolError(
            f"first message of {size} bytes exceeds the limit of {limits.max_message_size}"
        )
    if end < body + size:
        return None
    stop = body + size
    return decode_message(bytes(received[:stop]), limits), bytes(received[stop:])


class RequestHandler:
    """Serves the peer's requests. Override the methods you need.

    The defaults answer ERROR (no such resource), which is what a reference
    device does for an unknown resource. A handler may also raise
    :class:`RemoteError` (its ``code`` / ``payload`` become the ERROR's
    PARAMETERS / PAYLOAD); any other exception is logged and answered with
    ERROR ``{"error": "<text>"}``.
    """

    async def on_run(self, request: Request) -> Reply:
        """RUN on one of our resources."""
        return Reply.error()

    async def on_describe(self, request: Request) -> Reply:
        """DESCRIBE (``request.resource`` is ABSENT for the whole API)."""
        return Reply.error()

    async def on_start_stream(self, request: Request) -> Reply:
        """START_STREAM; an OK reply opens an :class:`IncomingStream`."""
        return Reply.error()

    async def on_stream_started(self, stream: IncomingStream) -> None:
        """Run right after the OK to a START_STREAM was sent (send the echo here)."""

    async def on_stop_stream(self, request: Request, stream: IncomingStream | None) -> Reply:
        """STOP_STREAM; ``stream`` is None when no such stream is open (-> ERROR)."""
        return Reply.success() if stream is not None else Reply.error()

    async def on_stream_data(self, stream: IncomingStream, message: Message) -> None:
        """STREAM_DATA from the peer on a stream the peer opened (e.g. new input)."""

    async def on_unknown_stream_data(self, session: Session, message: Message) -> None:
        """STREAM_DATA for a stream id we do not know. Default: drop quietly.

        Reference devices keep streaming ids from before a reconnect
        (observation 11), so this is normal and never an error.
        """
        _LOGGER.debug(
            "%s: STREAM_DATA for unknown stream %s dropped", session.name, message.stream_id
        )


Authenticator = Callable[[str, str, str, Any], Awaitable[bool | int] | bool | int]
"""``authenticate(user, device, credential, parameters)`` -> True (accept),
False (refuse, code 2) or an int error code; may be async. Raising
:class:`AuthenticationError` refuses with its ``code``."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Session:
    """One IOTMP connection (either end). See the module docstring."""

    # Slots: a server holds one per device (an instance dict was 1.6 KiB of the 6).
    __slots__ = (
        "_backlog",
        "_decoder",
        "_eof",
        "_finalizer",
        "_inbox",
        "_inbox_bytes",
        "_incoming",
        "_keep_alive_unanswered",
        "_last_rx",
        "_loop",
        "_next_id",
        "_pending",
        "_reader",
        "_reading_paused",
        "_remote_busy",
        "_rx_budget",
        "_streams",
        "_tasks",
        "_watchdog",
        "_work",
        "_worker",
        "_worker_busy",
        "_write_lock",
        "close_reason",
        "closed",
        "config",
        "fast_path",
        "handler",
        "info",
        "keep_alive",
        "keep_alive_declared",
        "legacy",
        "name",
        "on_closed",
        "role",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        role: Role | str,
        *,
        config: SessionConfig | None = None,
        handler: RequestHandler | None = None,
        on_closed: Callable[[str], Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.transport = transport
        self.role = Role(role)
        self.config = config if config is not None else SessionConfig()
        self.handler: RequestHandler = handler if handler is not None else RequestHandler()
        self.on_closed = on_closed
        """Called once with the close reason (may return an awaitable)."""
        self.name = name or f"{self.role.value} {transport.peer}"
        """Prefix of this session's log lines."""
        self.info: ConnectInfo | None = None
        """Set once the CONNECT exchange succeeded."""
        self.legacy = False
        """Whether PSON fields are sent as legacy PSON (wire type 1)."""
        self.keep_alive: float = self.config.keep_alive
        self.keep_alive_declared = False
        """Server: whether the peer's CONNECT carried ``ka``."""
        self.close_reason: str | None = None

        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[str] = self._loop.create_future()
        """Resolves with the close reason once the session is fully closed."""

        self._decoder = MessageDecoder(self.config.limits)
        self.fast_path: Callable[[bytes], bool] | None = None
        """Offered each received chunk first (the server's compiled sample path): True
        when it did with the chunk exactly what the session would have done."""
        self._backlog: list[Message] = []  # decoded during the handshake, not yet dispatched
        # Push transports (Transport.pushes): chunks arrive in data_received and are
        # handled there; a reader task exists only while some work must be awaited,
        # and the chunks that arrive meanwhile wait in the inbox, in order.
        self._reader: asyncio.Task[None] | None = None
        self._inbox: deque[bytes] | None = None
        self._inbox_bytes = 0
        self._reading_paused = False
        self._eof = False
        self._write_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._finalizer: asyncio.Task[None] | None = None
        # Made with the worker, on the first queued job: an idle device needs neither.
        self._work: asyncio.Queue[Callable[[], Awaitable[None]]] | None = None
        self._worker: asyncio.Task[Any] | None = None  # started with the first queued job
        self._worker_busy = False  # a queued job is running

        self._pending: dict[int, asyncio.Future[Message]] = {}  # our requests
        self._streams: dict[int, StreamHandle] = {}  # streams we opened
        self._incoming: dict[int, IncomingStream] = {}  # streams the peer opened
        self._remote_busy: dict[int, int] = {}  # peer's unanswered request ids -> count

        parity = 1 if self.role is Role.CLIENT else 0
        first = self.config.first_stream_id
        if first is None:
            first = random.randrange(1, _MAX_STREAM_ID)
        self._next_id = (first - 2) % (_MAX_STREAM_ID + 1)
        if self._next_id % 2 != parity:
            self._next_id = (self._next_id + 1) % (_MAX_STREAM_ID + 1)

        self._last_rx = self._loop.time()
        self._keep_alive_unanswered = False
        # Server: a timer, not a task: an idle device costs a TimerHandle, no coroutine.
        self._watchdog: asyncio.TimerHandle | None = None
        rate = self.config.max_message_rate
        self._rx_budget = (
            TokenBucket(rate, self.config.message_burst, clock=self._loop.time) if rate else None
        )

    # ------------------------------------------------------------------ state

    @property
    def is_connected(self) -> bool:
        """True after a successful CONNECT exchange and until closing starts."""
        return self.info is not None and self.close_reason is None

    @property
    def is_closed(self) -> bool:
        """True once closing has started."""
        return self.close_reason is not None

    @property
    def streams(self) -> dict[int, StreamHandle]:
        """Open streams we started, by stream id (read-only view intended)."""
        return self._streams

    @property
    def incoming_streams(self) -> dict[int, IncomingStream]:
        """Open streams the peer started, by stream id (read-only view intended)."""
        return self._incoming

    # -------------------------------------------------------------- handshake

    async def connect(
        self,
        user: str,
        device: str,
        credential: str,
        *,
        parameters: Any = None,
        legacy: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Client: send CONNECT and wait for OK.

        ``parameters`` (e.g. ``{"pv": 1, "ka": 60}``) is sent only when given;
        its ``ka`` sets our keep-alive interval. ``legacy=True`` speaks like a
        pre-2026 client: PARAMETERS ``1`` (unless given) and legacy PSON.
        Raises :class:`AuthenticationError` (session closed) when the server
        answers anything but OK, :class:`RequestTimeoutError` or
        :class:`ConnectionClosedError` when no answer comes.
        """
        self._require_role(Role.CLIENT)
        if self.info is not None or self.is_closed:
            raise IotmpError(f"{self.name}: connect() on a used session")
        with self._close_unless_connected("connect failed"):
            await self._connect(
                user, device, credential, parameters, legacy=legacy, timeout=timeout
            )

    async def _connect(
        self,
        user: str,
        device: str,
        credential: str,
        parameters: Any,
        *,
        legacy: bool,
        timeout: float | None,
    ) -> None:
        self.legacy = legacy
        if legacy and parameters is None:
            parameters = 1
        if isinstance(parameters, dict) and _is_number(parameters.get("ka")):
            self.keep_alive = float(parameters["ka"])
        stream_id = self._allocate_id()
        request = Message.build(
            MessageType.CONNECT,
            stream_id=stream_id,
            parameters=ABSENT if parameters is None else parameters,
            payload=[user, device, credential],
        )
        await self._send(request)
        reply = await self._read_handshake_message(timeout)
        if reply.type != MessageType.OK:
            code = reply.parameters if reply.type == MessageType.ERROR else ABSENT
            code_value = code if isinstance(code, int) and not isinstance(code, bool) else None
            await self.close(f"CONNECT refused ({reply.type_name}, code {code_value})")
            raise AuthenticationError(
                f"{self.name}: server refused CONNECT ({reply.type_name}, code {code_value})",
                code_value,
            )
        self.info = ConnectInfo(
            user, device, credential, parameters, stream_id, legacy, self.keep_alive
        )
        _LOGGER.debug("%s: connected as %s/%s", self.name, user, device)
        self._start()

    async def accept(
        self, authenticate: Authenticator, *, timeout: float | None = None
    ) -> ConnectInfo:
        """Server: wait for CONNECT, authenticate, answer OK / ERROR.

        The first message must be CONNECT, else the session is closed and
        :class:`ProtocolError` raised. On refusal ERROR (with the CONNECT's
        stream id and the code in PARAMETERS) is sent, the session closed *by
        us* (reference devices leave the socket open) and
        :class:`AuthenticationError` raised. Accepted forms: PAYLOAD
        ``[user, device, credential]`` with PARAMETERS absent, a map
        (``pv``, ``ka``, ``at``, ...) or the legacy integer 1; fields in any
        order; PSON flavour chosen per spec 7.3.
        """
        self._require_role(Role.SERVER)
        if self.info is not None or self.is_closed:
            raise IotmpError(f"{self.name}: accept() on a used session")
        with self._close_unless_connected("accept failed"):
            return await self._accept(authenticate, timeout)

    @contextlib.contextmanager
    def _close_unless_connected(self, reason: str) -> Iterator[None]:
        """Close the session if the handshake did not complete (error or cancellation)."""
        try:
            yield
        finally:
            if self.info is None:
                self._request_close(reason)

    async def _accept(self, authenticate: Authenticator, timeout: float | None) -> ConnectInfo:
        msg = await self._read_handshake_message(timeout)
        if msg.type != MessageType.CONNECT:
            _LOG_LIMITER.log(
                _LOGGER,
                logging.INFO,
                "first message not CONNECT",
                "%s: first message is %s, not CONNECT; closing",
                self.name,
                msg.type_name,
            )
            await self.close(f"first message was {msg.type_name}, not CONNECT")
            raise ProtocolError(f"expected CONNECT, got {msg.type_name}")

        self.legacy = self._connect_uses_legacy(msg)
        parameters = msg.parameters
        code, credentials = self._check_connect(msg)
        if code is None and credentials is not None:
            code = await self._run_authenticator(authenticate, credentials, parameters)

        if code is not None:
            reply = Message.build(
                MessageType.ERROR,
                stream_id=msg.stream_id,
                parameters=ABSENT if code is ABSENT else code,
            )
            with contextlib.suppress(ConnectionClosedError):
                await self._send(reply)
            who = "/".join(credentials[:2]) if credentials else "?"
            await self.close(f"CONNECT of {who} refused (code {code})")
            raise AuthenticationError(
                f"{self.name}: CONNECT of {who} refused", code if isinstance(code, int) else None
            )

        assert credentials is not None
        await self._send(Message.build(MessageType.OK, stream_id=msg.stream_id))
        self.info = ConnectInfo(
            credentials[0],
            credentials[1],
            credentials[2],
            None if parameters is ABSENT else parameters,
            msg.stream_id,
            self.legacy,
            self.keep_alive,
        )
        self.name = f"{self.name} {credentials[0]}/{credentials[1]}"
        _LOGGER.debug(
            "%s: authenticated (legacy=%s, ka=%s)", self.name, self.legacy, self.keep_alive
        )
        self._start()
        return self.info

    @staticmethod
    def _connect_uses_legacy(msg: Message) -> bool:
        """Spec 7.3: legacy iff CONNECT used wire type 1, no wire type 2 and no pv:1."""
        wire_types = set(msg.wire_types.values())
        parameters = msg.parameters
        pv_new = isinstance(parameters, dict) and parameters.get("pv") == 1
        return WireType.PSON_LEGACY in wire_types and WireType.PSON not in wire_types and not pv_new

    def _check_connect(self, msg: Message) -> tuple[Any, list[str] | None]:
        """Validate a CONNECT; returns (error code or None, credentials or None).

        The code is ``ABSENT`` for a generic refusal without PARAMETERS.
        """
        payload = msg.payload
        credentials: list[str] | None = None
        if (
            isinstance(payload, list)
            and len(payload) == 3
            and all(isinstance(x, str) for x in payload)
        ):
            credentials = [str(x) for x in payload]
        parameters = msg.parameters
        if isinstance(parameters, dict):
            pv = parameters.get("pv", 0)
            if pv not in (0, 1) or isinstance(pv, bool):
                return CONNECT_ERROR_ENCODING, credentials
            if "ka" in parameters:
                ka = parameters["ka"]
                if not _is_number(ka) or not 0 < ka <= self.config.max_keep_alive:
                    return CONNECT_ERROR_KEEP_ALIVE, credentials
                self.keep_alive = float(ka)
                self.keep_alive_declared = True
            if parameters.get("at", 0) != 0:  # only credential auth exists
                return CONNECT_ERROR_CREDENTIALS, credentials
        elif _is_int(parameters) and parameters != 1:
            # legacy integer form: 1 = credentials; 2 (token) is not supported
            return CONNECT_ERROR_CREDENTIALS, credentials
        if credentials is None:
            return CONNECT_ERROR_CREDENTIALS, None
        return None, credentials

    async def _run_authenticator(
        self, authenticate: Authenticator, credentials: list[str], parameters: Any
    ) -> Any:
        """Return None when accepted, else the error code for the ERROR reply."""
        try:
            result = authenticate(
                credentials[0],
                credentials[1],
                credentials[2],
                None if parameters is ABSENT else parameters,
            )
            if inspect.isawaitable(result):
                result = await result
        except AuthenticationError as exc:
            return exc.code if exc.code is not None else ABSENT
        except Exception:
            _LOGGER.exception("%s: authenticate callback failed", self.name)
            return ABSENT
        if result is True:
            return None
        if isinstance(result, int) and not isinstance(result, bool):
            return result
        return CONNECT_ERROR_CREDENTIALS

    async def _read_handshake_message(self, timeout: float | None) -> Message:
        """Read the first message (CONNECT or its reply) straight from the transport."""
        limit = self.config.handshake_timeout if timeout is None else timeout
        first_limits = self.config.handshake_limits
        messages: list[Message] = []
        received = bytearray()
        try:
            async with asyncio.timeout(limit):
                while not messages:
                    data = await self.transport.read()
                    if not data:
                        await self.close("connection closed during handshake")
                        raise ConnectionClosedError(f"{self.name}: closed during handshake")
                    if first_limits is None:
                        messages = self._decoder.feed(data)
                        continue
                    received += data
                    first = _split_first_message(received, first_limits)
                    if first is not None:
                        message, rest = first
                        messages = [message, *self._decoder.feed(rest)]
        except TimeoutError as exc:
            await self.close("handshake timeout")
            raise RequestTimeoutError(
                f"{self.name}: no handshake message within {limit} s"
            ) from exc
        except ProtocolError as exc:
            # A server reports its failed handshakes itself (rate-limited per address).
            if self.role is Role.SERVER:
                _LOGGER.debug("%s: protocol error during handshake: %s", self.name, exc)
            else:
                _LOG_LIMITER.log(
                    _LOGGER,
                    logging.WARNING,
                    "handshake protocol error",
                    "%s: protocol error during handshake: %s",
                    self.name,
                    exc,
                )
            await self.close(f"protocol error: {exc}")
            raise
        self._last_rx = self._loop.time()
        self._backlog.extend(messages[1:])
        return messages[0]

    def _require_role(self, role: Role) -> None:
        if self.role is not role:
            raise IotmpError(f"{self.name}: only a {role.value} session can do this")

    # ------------------------------------------------------- our requests

    async def request(
        self,
        type_: int,
        *,
        resource: Any = ABSENT,
        parameters: Any = ABSENT,
        payload: Any = ABSENT,
        timeout: float | None = None,
    ) -> Message:
        """Send a request with a fresh stream id and return the OK reply message.

        Raises :class:`RemoteError` for ERROR, :class:`RequestTimeoutError`
        after ``timeout`` (default ``config.request_timeout``) and
        :class:`ConnectionClosedError` if the connection goes away.
        """
        self._require_connected()
        stream_id = self._allocate_id()
        message = Message.build(
            type_, stream_id=stream_id, parameters=parameters, payload=payload, resource=resource
        )
        return await self._exchange(message, timeout)

    async def run(
        self,
        resource: Any,
        payload: Any = ABSENT,
        *,
        parameters: Any = ABSENT,
        timeout: float | None = None,
    ) -> Any:
        """RUN ``resource`` on the peer; returns the OK's PAYLOAD (None when absent)."""
        reply = await self.request(
            MessageType.RUN,
            resource=resource,
            parameters=parameters,
            payload=payload,
            timeout=timeout,
        )
        return None if reply.payload is ABSENT else reply.payload

    async def run_no_reply(
        self, resource: Any, payload: Any = ABSENT, *, parameters: Any = ABSENT
    ) -> None:
        """RUN without STREAM_ID (fire and forget).

        Reference devices still answer it with ``01 02 08 00``; such a reply
        is ignored.
        """
        self._require_connected()
        await self._send(
            Message.build(
                MessageType.RUN, parameters=parameters, payload=payload, resource=resource
            )
        )

    async def describe(self, resource: Any = None, *, timeout: float | None = None) -> Any:
        """DESCRIBE the whole API (``resource=None``) or one resource; returns the PAYLOAD."""
        reply = await self.request(
            MessageType.DESCRIBE,
            resource=ABSENT if resource is None else resource,
            timeout=timeout,
        )
        return None if reply.payload is ABSENT else reply.payload

    async def start_stream(
        self,
        resource: Any,
        *,
        interval_ms: int | None = None,
        parameters: Any = ABSENT,
        payload: Any = ABSENT,
        on_data: Callable[[Any], Any] | None = None,
        timeout: float | None = None,
    ) -> StreamHandle:
        """Open a stream on a peer resource.

        ``interval_ms`` sends PARAMETERS ``{"interval": ms}`` (periodic
        sampling); alternatively pass ``parameters`` yourself (e.g. the event
        filter of a server stream). Raises :class:`RemoteError` when refused.
        """
        self._require_connected()
        if interval_ms is not None:
            if parameters is not ABSENT:
                raise ValueError("give interval_ms or parameters, not both")
            parameters = {"interval": interval_ms}
        stream_id = self._allocate_id()
        handle = StreamHandle(
            self,
            stream_id,
            resource,
            parameters,
            on_data=on_data,
            buffer_size=self.config.stream_buffer,
        )
        # Registered before sending: the first sample may follow the OK at once.
        self._streams[stream_id] = handle
        message = Message.build(
            MessageType.START_STREAM,
            stream_id=stream_id,
            parameters=parameters,
            payload=payload,
            resource=resource,
        )
        try:
            reply = await self._exchange(message, timeout)
        except BaseException:
            if self._streams.get(stream_id) is handle:
                del self._streams[stream_id]
            handle._mark_closed()
            raise
        handle.initial = None if reply.payload is ABSENT else reply.payload
        return handle

    async def stop_stream(self, stream_id: int, *, timeout: float | None = None) -> None:
        """Send STOP_STREAM for a stream we opened.

        The stream is forgotten even if the peer answers ERROR (raised as
        :class:`RemoteError`).
        """
        handle = self._streams.pop(stream_id, None)
        if handle is not None:
            handle._mark_closed()
        self._require_connected()
        await self._exchange(Message.build(MessageType.STOP_STREAM, stream_id=stream_id), timeout)

    async def send_stream_data(
        self, stream_id: int, payload: Any, *, parameters: Any = ABSENT
    ) -> None:
        """Send one STREAM_DATA (no reply exists)."""
        self._require_connected()
        await self._send(
            Message.build(
                MessageType.STREAM_DATA, stream_id=stream_id, parameters=parameters, payload=payload
            )
        )

    async def send(self, message: Message) -> None:
        """Send a raw message (encoded in this connection's PSON flavour)."""
        await self._send(message)

    async def disconnect(self, reason: Any = None) -> None:
        """Send DISCONNECT (PARAMETERS = ``reason`` when given) and close."""
        if not self.is_closed:
            message = Message.build(
                MessageType.DISCONNECT, parameters=ABSENT if reason is None else reason
            )
            with contextlib.suppress(ConnectionClosedError):
                await self._send(message)
        await self.close(
            "disconnected by us" if reason is None else f"disconnected by us: {reason}"
        )

    async def _exchange(self, message: Message, timeout: float | None) -> Message:
        """Send ``message`` and wait for OK/ERROR with its stream id."""
        stream_id = message.stream_id
        future: asyncio.Future[Message] = self._loop.create_future()
        self._pending[stream_id] = future
        limit = self.config.request_timeout if timeout is None else timeout
        try:
            await self._send(message)
            try:
                async with asyncio.timeout(limit):
                    reply = await future
            except TimeoutError as exc:
                raise RequestTimeoutError(
                    f"{self.name}: no reply to {message.type_name} {message.resource!r} "
                    f"within {limit} s"
                ) from exc
        finally:
            if self._pending.get(stream_id) is future:
                del self._pending[stream_id]
                if not self._pending:
                    self._pending = {}  # an emptied dict keeps its table (idle devices)
            # A close can fail the future while _send is still waiting (back-pressure):
            # then nobody awaits it, so mark its exception retrieved here.
            if future.done() and not future.cancelled():
                future.exception()
        if reply.type == MessageType.ERROR:
            code = reply.parameters
            payload = reply.payload
            code = None if code is ABSENT else code
            payload = None if payload is ABSENT else payload
            raise RemoteError(
                f"{message.type_name} {message.resource!r} failed: "
                f"code {code}, payload {payload!r}",
                code,
                payload,
            )
        return reply

    def _require_connected(self) -> None:
        if self.is_closed:
            raise ConnectionClosedError(f"{self.name}: session closed ({self.close_reason})")
        if self.info is None:
            raise IotmpError(f"{self.name}: session is not connected yet")

    def _allocate_id(self) -> int:
        """Next free stream id of our parity (see the module docstring)."""
        for _ in range(_MAX_STREAM_ID // 2 + 1):
            candidate = (self._next_id + 2) % (_MAX_STREAM_ID + 1)
            if candidate == 0:
                candidate = 2
            self._next_id = candidate
            if (
                candidate not in self._pending
                and candidate not in self._streams
                and candidate not in self._incoming
                and candidate not in self._remote_busy
            ):
                return candidate
        raise IotmpError(f"{self.name}: no free stream id")

    # --------------------------------------------------------------- sending

    async def _send(self, message: Message) -> None:
        """Encode and write one message; a failed write closes the session."""
        if self.is_closed:
            raise ConnectionClosedError(f"{self.name}: session closed ({self.close_reason})")
        data = encode_message(message, legacy=self.legacy)
        async with self._write_lock:
            try:
                await self.transport.write(data)
            except ConnectionClosedError:
                self._request_close("write failed")
                raise

    # -------------------------------------------------------------- running

    def _start(self) -> None:
        """Start the background tasks once the handshake succeeded."""
        self._last_rx = self._loop.time()
        transport = self.transport
        if transport.pushes:
            if self._backlog:
                backlog, self._backlog = self._backlog, []
                self._start_reader(None, backlog)
            transport.attach_receiver(self)  # may deliver what it holds already, in order
        else:
            self._spawn(self._read_loop(), "reader")
        if self.role is Role.CLIENT:
            self._spawn(self._client_keep_alive_loop(), "keep-alive")
        else:
            self._arm_watchdog(self.keep_alive_timeout)
            if self.config.server_keep_alive:
                self._spawn(
                    self._server_keep_alive_loop(self.config.server_keep_alive), "keep-alive"
                )

    def spawn(self, coro: Awaitable[Any], name: str = "task") -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by the session: cancelled when it closes.

        Exceptions other than :class:`ConnectionClosedError` are logged.
        Raises :class:`ConnectionClosedError` when the session is closing.
        """
        if self.is_closed:
            if inspect.iscoroutine(coro):
                coro.close()
            raise ConnectionClosedError(f"{self.name}: session closed ({self.close_reason})")
        return self._spawn(self._guard(coro, name), name)

    async def _guard(self, coro: Awaitable[Any], name: str) -> None:
        try:
            await coro
        except ConnectionClosedError:
            pass
        except Exception:
            _LOGGER.exception("%s: task %s failed", self.name, name)

    def _spawn(self, coro: Awaitable[Any], what: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = self._loop.create_task(
            coro,  # type: ignore[arg-type]
            name=f"iotmp {self.name} {what}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_loop(self) -> None:
        reason: str | None = None
        try:
            while self._backlog:
                await self._dispatch(self._backlog.pop(0))
            while not self.is_closed:
                data = await self.transport.read()
                if not data:
                    break
                self._last_rx = self._loop.time()
                reason = await self._handle_read(data)
                # Not kept while an idle device's reader waits for its next bytes.
                del data
                if reason is not None:
                    break
            if reason is None:
                reason = "connection closed by peer"
        except ConnectionClosedError:
            reason = "write failed"
        except Exception:
            _LOGGER.exception("%s: reader failed", self.name)
            reason = "internal error"
        self._request_close(reason)

    async def _handle_read(self, data: bytes) -> str | None:
        """Handle one read, in slices; returns a close reason or None."""
        if len(data) <= _FEED_SLICE:
            return await self._handle_bytes(data)
        view = memoryview(data)
        for offset in range(0, len(data), _FEED_SLICE):
            if offset:
                await asyncio.sleep(0)  # one big read must not hold the loop
            reason = await self._handle_bytes(view[offset : offset + _FEED_SLICE])
            if reason is not None or self.is_closed:
                return reason
        return None

    async def _handle_bytes(self, data: bytes | memoryview) -> str | None:
        """Decode and dispatch a slice of received bytes; returns a close reason or None."""
        messages = self._decode(data)
        if isinstance(messages, str):
            return messages
        await self._dispatch_all(messages)
        return None

    async def _dispatch_all(self, messages: list[Message]) -> None:
        """Dispatch messages in order, yielding to the loop every ``_YIELD_EVERY``."""
        for index, message in enumerate(messages, 1):
            if message.type == _STREAM_DATA:
                # The hot path, handled without a coroutine per message; only when
                # a job must be queued is there anything to await.
                pending = self._stream_data_now(message)
                if pending is not None:
                    await pending
            else:
                await self._dispatch(message)
            if index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if self.is_closed:
                break

    def _decode(self, data: bytes | memoryview) -> list[Message] | str:
        """Decode a slice of received bytes under the receive budget.

        Returns the messages, or the reason to close (protocol error, rate limit).
        """
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            _LOG_LIMITER.log(
                _LOGGER,
                logging.WARNING,
                "protocol error",
                "%s: protocol error, closing: %s",
                self.name,
                exc,
            )
            return f"protocol error: {exc}"
        if messages:
            budget = self._rx_budget
            if budget is not None and not budget.take(len(messages)):
                self._log_over_rate(budget)
                return "message rate limit exceeded"
        return messages

    def _log_over_rate(self, budget: TokenBucket) -> None:
        _LOG_LIMITER.log(
            _LOGGER,
            logging.WARNING,
            "message rate",
            "%s: more than %g messages/s (burst %d); closing",
            self.name,
            budget.rate,
            budget.burst,
        )

    # ----------------------------------------------- push transports (receiver)

    def data_received(self, data: bytes) -> None:
        """Bytes from a push transport (:meth:`Transport.attach_receiver`).

        Handled here, in the transport's callback, when no reader task is behind:
        samples go to their ``on_data`` without a task switch. Anything that must
        be awaited (a request for the worker, a reply to send, a full work queue)
        starts the reader task with the rest; until it is done, later chunks wait
        in the inbox and reading pauses once it holds ``_INBOX_HIGH`` bytes.
        """
        if self.close_reason is not None:
            return
        self._last_rx = self._loop.time()
        if self._reader is not None or len(data) > _FEED_SLICE:
            self._to_inbox(data)
            return
        try:
            fast = self.fast_path
            if (
                fast is not None
                and not self._worker_busy
                and (self._work is None or self._work.empty())
                and fast(data)
            ):
                return
            reason = self._handle_now(data)
        except Exception:
            _LOGGER.exception("%s: reader failed", self.name)
            reason = "internal error"
        if reason is not None:
            self._request_close(reason)

    def _handle_now(self, data: bytes) -> str | None:
        """Decode and deliver in the callback; returns a close reason or None."""
        messages = self._decode(data)
        if isinstance(messages, str):
            return messages
        for index, message in enumerate(messages):
            if index == _YIELD_EVERY or message.type != _STREAM_DATA:
                # The reader yields every _YIELD_EVERY messages and awaits what must be.
                self._start_reader(None, messages[index:])
                return None
            pending = self._stream_data_now(message)
            if pending is not None:
                self._start_reader(pending, messages[index + 1 :])
                return None
            if self.close_reason is not None:
                return None  # closed by a callback: the rest is not delivered
        return None

    def eof_received(self) -> None:
        """Take note that the push transport's connection ended (EOF, reset or closed)."""
        self._eof = True  # a running reader closes once it has handled the inbox
        if self._reader is None:
            self._request_close("connection closed by peer")

    def _to_inbox(self, data: bytes) -> None:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(data)
        self._inbox_bytes += len(data)
        if self._inbox_bytes > _INBOX_HIGH and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        if self._reader is None:
            self._start_reader(None, [])

    def _start_reader(
        self, pending: Coroutine[Any, Any, None] | None, messages: list[Message]
    ) -> None:
        if self.close_reason is not None:
            if pending is not None:
                pending.close()
            return
        self._reader = self._spawn(self._push_reader(pending, messages), "reader")

    async def _push_reader(
        self, pending: Coroutine[Any, Any, None] | None, messages: list[Message]
    ) -> None:
        """Finish what :meth:`data_received` could not, then the inbox; ends when idle."""
        reason: str | None = None
        try:
            if pending is not None:
                await pending
            if messages and not self.is_closed:
                await self._dispatch_all(messages)
            while reason is None and not self.is_closed:
                inbox = self._inbox
                if inbox:
                    data = inbox.popleft()
                    self._inbox_bytes -= len(data)
                    if self._reading_paused and self._inbox_bytes <= _INBOX_LOW:
                        self._reading_paused = False
                        self.transport.resume_reading()
                    reason = await self._handle_read(data)
                    del data
                elif self._eof:
                    reason = "connection closed by peer"
                else:  # all done: the next chunk is handled in data_received again
                    self._inbox = None  # an idle device keeps no deque
                    break
        except ConnectionClosedError:
            reason = "write failed"
        except Exception:
            _LOGGER.exception("%s: reader failed", self.name)
            reason = "internal error"
        finally:
            if self._reader is asyncio.current_task():
                self._reader = None
        if reason is not None:
            self._request_close(reason)

    async def _dispatch(self, message: Message) -> None:
        """Route one received message (runs in the reader task)."""
        kind = message.type
        if kind in (MessageType.OK, MessageType.ERROR):
            future = self._pending.get(message.stream_id)
            if future is not None and not future.done():
                future.set_result(message)
            else:
                _LOGGER.debug(
                    "%s: %s for stream %s matches no request; ignored",
                    self.name,
                    message.type_name,
                    message.stream_id,
                )
        elif kind == MessageType.KEEP_ALIVE:
            if self.role is Role.SERVER:
                await self._send(_KEEP_ALIVE_MESSAGE)  # echo; clients never answer
            else:
                self._keep_alive_unanswered = False
        elif kind == MessageType.STREAM_DATA:
            await self._dispatch_stream_data(message)
        elif kind in (
            MessageType.RUN,
            MessageType.DESCRIBE,
            MessageType.START_STREAM,
            MessageType.STOP_STREAM,
        ):
            stream_id = message.stream_id
            if stream_id:
                self._remote_busy[stream_id] = self._remote_busy.get(stream_id, 0) + 1
            if self.config.concurrent_requests and kind in (MessageType.RUN, MessageType.DESCRIBE):
                self._spawn(self._guard(self._handle_request(message), "request"), "request")
            else:
                await self._queue_job(lambda: self._handle_request(message))
        elif kind == MessageType.DISCONNECT:
            reason = message.parameters
            _LOGGER.debug("%s: DISCONNECT received (reason %r)", self.name, reason)
            if message.has(Field.STREAM_ID):
                with contextlib.suppress(ConnectionClosedError):
                    await self._send(Message.build(MessageType.OK, stream_id=message.stream_id))
            self._request_close(
                "disconnected by peer" if reason is ABSENT else f"disconnected by peer: {reason}"
            )
        else:
            _LOGGER.debug("%s: %s ignored", self.name, message.type_name)

    async def _dispatch_stream_data(self, message: Message) -> None:
        pending = self._stream_data_now(message)
        if pending is not None:
            await pending

    def _stream_data_now(self, message: Message) -> Coroutine[Any, Any, None] | None:
        """Deliver one STREAM_DATA; returns the queueing still to be awaited, if any."""
        stream_id = message.fields.get(_STREAM_ID, 0)
        if type(stream_id) is not int:  # exact: a bool is no stream id
            stream_id = message.stream_id
        handle = self._streams.get(stream_id)
        if handle is not None:
            handle._last_message = message
            handle._last_frame = None
            payload = message.fields.get(_PAYLOAD)
            callback = handle.on_data
            if callback is None:
                handle._buffer_payload(payload)
                return None
            if self._worker_busy or (self._work is not None and not self._work.empty()):
                # Jobs are pending: queue behind them, arrival order is kept.
                return self._queue_job(lambda: self._call_on_data(callback, payload))
            # Nothing pending (the usual case): call it here, in the reader,
            # without a queue entry, a closure and a task switch per sample.
            return self._call_on_data_now(callback, payload)
        stream = self._incoming.get(stream_id)
        if stream is not None:
            return self._queue_job(lambda: self.handler.on_stream_data(stream, message))
        return self._queue_job(lambda: self.handler.on_unknown_stream_data(self, message))

    def _call_on_data_now(
        self, callback: Callable[[Any], Any], payload: Any
    ) -> Coroutine[Any, Any, None] | None:
        """Call ``on_data`` in the reader; an awaitable it returns goes to the worker.

        Handing the awaitable over (instead of awaiting it here) keeps what the queue
        did before: the reader goes on reading until the queue is full, and every
        later sample waits behind it, in order. Returns that queueing, to be awaited.
        """
        try:
            result = callback(payload)
        except ConnectionClosedError:
            return None
        except Exception:
            _LOGGER.exception("%s: handler failed", self.name)
            return None
        if result is None or not inspect.isawaitable(result):
            return None
        pending: Awaitable[Any] = result
        if self.is_closed and inspect.iscoroutine(pending):
            pending.close()  # nobody will await it
            return None
        return self._queue_job(lambda: pending)

    async def _call_on_data(self, callback: Callable[[Any], Any], payload: Any) -> None:
        result = callback(payload)
        if inspect.isawaitable(result):
            await result

    async def _queue_job(self, job: Callable[[], Awaitable[Any]]) -> None:
        """Queue a handler call for the worker (started on first use)."""
        work = self._work
        if work is None or self._worker is None:
            if self.is_closed:
                return  # closing: the worker would be cancelled anyway
            work = self._work = asyncio.Queue(maxsize=_WORK_QUEUE_SIZE)
            self._worker = self._spawn(self._work_loop(work), "worker")
        await work.put(job)

    async def _work_loop(self, work: asyncio.Queue[Callable[[], Awaitable[None]]]) -> None:
        """Run queued handler calls one at a time, in arrival order."""
        while True:
            job = await work.get()
            self._worker_busy = True
            try:
                await job()
            except ConnectionClosedError:
                pass  # the session is closing; the reader reports why
            except Exception:
                _LOGGER.exception("%s: handler failed", self.name)
            finally:
                self._worker_busy = False

    async def _handle_request(self, message: Message) -> None:
        """Call the handler for a peer request and send OK / ERROR."""
        request = Request(self, message)
        stream_id = message.stream_id
        try:
            reply = await self._call_handler(request)
            if message.type == MessageType.START_STREAM and reply.ok and stream_id == 0:
                reply = Reply.error()  # a stream needs an id to be addressed
            stream: IncomingStream | None = None
            if message.type == MessageType.START_STREAM and reply.ok:
                stream = IncomingStream(self, message)
                old = self._incoming.get(stream_id)
                if old is not None:
                    old.is_open = False
                self._incoming[stream_id] = stream
            if request.wants_reply:
                await self._send(
                    Message.build(
                        MessageType.OK if reply.ok else MessageType.ERROR,
                        stream_id=stream_id,
                        parameters=reply.parameters,
                        payload=reply.payload,
                    )
                )
            if stream is not None:
                await self.handler.on_stream_started(stream)
            if reply.after is not None:
                await reply.after()
        finally:
            if stream_id in self._remote_busy:
                self._remote_busy[stream_id] -= 1
                if self._remote_busy[stream_id] <= 0:
                    del self._remote_busy[stream_id]

    async def _call_handler(self, request: Request) -> Reply:
        handler = self.handler
        kind = request.type
        try:
            if kind == MessageType.RUN:
                return await handler.on_run(request)
            if kind == MessageType.DESCRIBE:
                return await handler.on_describe(request)
            if kind == MessageType.START_STREAM:
                return await handler.on_start_stream(request)
            # STOP_STREAM: the peer may stop its own stream or one of ours.
            stream_id = request.stream_id
            stream = self._incoming.pop(stream_id, None)
            if stream is not None:
                stream.is_open = False
                return await handler.on_stop_stream(request, stream)
            handle = self._streams.pop(stream_id, None)
            if handle is not None:
                handle._mark_closed()
                return Reply.success()
            return await handler.on_stop_stream(request, None)
        except RemoteError as exc:
            return Reply.error(
                ABSENT if exc.code is None else exc.code,
                ABSENT if exc.payload is None else exc.payload,
            )
        except ConnectionClosedError:
            raise
        except Exception as exc:
            _LOGGER.exception("%s: handler for %s failed", self.name, request.message.type_name)
            return Reply.error_message(str(exc) or type(exc).__name__)

    async def _client_keep_alive_loop(self) -> None:
        """Client: KEEP_ALIVE every ``keep_alive`` seconds (optionally check echoes)."""
        interval = self.keep_alive
        with contextlib.suppress(ConnectionClosedError):
            while True:
                await asyncio.sleep(interval)
                if self.config.check_keep_alive_echo and self._keep_alive_unanswered:
                    _LOGGER.info("%s: keep-alive echo missing; closing", self.name)
                    self._request_close("keep-alive echo missing")
                    return
                self._keep_alive_unanswered = True
                await self._send(_KEEP_ALIVE_MESSAGE)

    async def _server_keep_alive_loop(self, interval: float) -> None:
        """Server (optional): our own KEEP_ALIVEs; no answer is expected."""
        with contextlib.suppress(ConnectionClosedError):
            while True:
                await asyncio.sleep(interval)
                await self._send(_KEEP_ALIVE_MESSAGE)

    @property
    def keep_alive_timeout(self) -> float:
        """Server: seconds of silence after which the peer counts as dead."""
        limit = self.keep_alive * self.config.timeout_factor
        if not self.keep_alive_declared:
            limit = max(limit, self.config.min_timeout_without_ka)
        return limit

    def _arm_watchdog(self, limit: float) -> None:
        """Server: close after ``limit`` seconds (:attr:`keep_alive_timeout`) without data.

        The timer fires when the limit would be reached if nothing arrived since
        it was armed; data received meanwhile moves the deadline, so it re-arms.
        """
        self._watchdog = self._loop.call_at(self._last_rx + limit, self._check_watchdog, limit)

    def _check_watchdog(self, limit: float) -> None:
        self._watchdog = None
        if self.is_closed:
            return
        if self._last_rx + limit - self._loop.time() <= 0:
            _LOGGER.info("%s: nothing received for %.1f s; closing", self.name, limit)
            self._request_close(f"keep-alive timeout ({limit:g} s without data)")
            return
        self._arm_watchdog(limit)

    # -------------------------------------------------------------- closing

    async def close(self, reason: str = "closed by us") -> None:
        """Close the session and its transport; waits until everything stopped."""
        self._request_close(reason)
        await self.wait_closed()

    async def wait_closed(self) -> str:
        """Wait until the session is fully closed; returns the close reason."""
        await asyncio.shield(self.closed)
        if self._finalizer is not None and self._finalizer is not asyncio.current_task():
            # (from on_closed the finalizer is the caller: nothing left to wait for)
            await asyncio.shield(self._finalizer)
        return self.closed.result()

    def _request_close(self, reason: str) -> None:
        """Start closing (idempotent, synchronous; safe from any session task)."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        _LOGGER.debug("%s: closing: %s", self.name, reason)
        error = ConnectionClosedError(f"{self.name}: connection closed ({reason})")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._finalizer = self._loop.create_task(
            self._finalize(reason), name=f"iotmp {self.name} close"
        )

    async def _finalize(self, reason: str) -> None:
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, still_running = await asyncio.wait(tasks, timeout=_TASK_STOP_TIMEOUT)
            for task in still_running:
                _LOGGER.warning("%s: task %s ignored cancellation", self.name, task.get_name())
        for handle in self._streams.values():
            handle._mark_closed()
        self._streams.clear()
        for stream in self._incoming.values():
            stream.is_open = False
        self._incoming.clear()
        await self.transport.close()
        if not self.closed.done():
            self.closed.set_result(reason)
        callback = self.on_closed
        if callback is not None:
            try:
                result = callback(reason)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                _LOGGER.exception("%s: on_closed callback failed", self.name)

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "connected" if self.info else "new"
        return f"<Session {self.name} {state}>"


__all__ = [
    "CONNECT_ERROR_CREDENTIALS",
    "CONNECT_ERROR_ENCODING",
    "CONNECT_ERROR_KEEP_ALIVE",
    "CONNECT_ERROR_REDIRECT",
    "DEFAULT_KEEP_ALIVE",
    "MAX_KEEP_ALIVE",
    "Authenticator",
    "ConnectInfo",
    "IncomingStream",
    "Reply",
    "Request",
    "RequestHandler",
    "Role",
    "Session",
    "SessionConfig",
    "StreamHandle",
]
