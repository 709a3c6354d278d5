"""Long-lived WebSocket streams with reconnect: device resources and account events.

The caller owns the task that awaits :meth:`run`; callbacks are plain
functions called in the event loop (keep them cheap). ``run()`` reconnects
forever with capped exponential backoff and jitter, raises
:class:`IotmpAuthError` when the server refuses the token, and returns once
:meth:`close` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import aiohttp

from ._json import loads as loads_json
from .api import quote_segment
from .backoff import Backoff
from .errors import IotmpApiError, IotmpAuthError, IotmpConnectionError

if TYPE_CHECKING:
    from .api import IotmpApiClient

_LOGGER = logging.getLogger(__name__)

HEARTBEAT: Final = 55.0
"""WebSocket ping interval (s); a missing pong within half of it drops the socket."""
STABLE_AFTER: Final = 0.0
"""The backoff restarts from its minimum once a connection has lived this long (s);
0 = as soon as the socket is open and authenticated (the WebSocket handshake
checks the token), so that after a server restart the first retry comes quickly."""
CLOSE_TIMEOUT: Final = 5.0

_DEBUG: Final = logging.DEBUG
_TEXT: Final = aiohttp.WSMsgType.TEXT
_BINARY: Final = aiohttp.WSMsgType.BINARY


def default_backoff() -> Backoff:
    """Reconnect delays: 0.5 s doubling up to 30 s, equal jitter (first retry 0.25-0.5 s).

    Equal jitter keeps every delay at least half its ceiling, so the waiting
    time never runs far ahead of the time already spent waiting.
    """
    return Backoff(initial=0.5, factor=2.0, maximum=30.0, jitter=0.5)


class _Stream:
    """Reconnecting WebSocket with a set of subscription frames sent after each connect."""

    def __init__(
        self,
        client: IotmpApiClient,
        on_connection: Callable[[bool], None],
        *,
        backoff: Backoff | None = None,
        heartbeat: float = HEARTBEAT,
        stable_after: float = STABLE_AFTER,
        outage_log_level: int = logging.INFO,
    ) -> None:
        self._client = client
        # An owner running many streams logs outages itself and passes DEBUG here,
        # so one server outage is one log line, not one per stream.
        self._outage_log_level = outage_log_level
        self._on_connection = on_connection
        self._backoff = backoff if backoff is not None else default_backoff()
        self._heartbeat = heartbeat
        self._stable_after = stable_after
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connect_task: asyncio.Task[aiohttp.ClientWebSocketResponse] | None = None
        self._send_tasks: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closing = False
        self._running = False
        self._state: bool | None = None  # last reported connection state
        self._outage_logged = False

    # -- public ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the socket is open and subscribed right now."""
        return self._state is True and self._ws is not None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing

    async def run(self) -> None:
        """Connect, subscribe, deliver frames; reconnect forever until :meth:`close`.

        Raises :class:`IotmpAuthError` when the server refuses the token (after
        one refresh attempt when the client has a token refresher).
        """
        if self._running:
            raise RuntimeError(f"{self._describe()} is already running")
        self._running = True
        try:
            await self._run()
        finally:
            self._running = False
            self._ws = None
            self._connect_task = None
            self._cancel_sends()

    async def close(self) -> None:
        """Stop :meth:`run` (it returns promptly) and close the socket."""
        self._closing = True
        self._wake.set()
        if self._connect_task is not None:
            self._connect_task.cancel()
        self._cancel_sends()
        ws = self._ws
        if ws is not None:
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
            # aiohttp 3.14 may re-arm the ping timer for frames read while closing.
            _cancel_heartbeat(ws)

    # -- to implement ---------------------------------------------------------------------

    def _path(self) -> str:
        raise NotImplementedError

    def _initial_frames(self) -> list[str]:
        raise NotImplementedError

    def _handle_text(self, text: str) -> None:
        raise NotImplementedError

    def _describe(self) -> str:
        raise NotImplementedError

    # -- loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        refreshed = False  # one token refresh per refused handshake
        while not self._closing:
            token = self._client.token
            try:
                ws = await self._connect(token)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._closing and (current is None or not current.cancelling()):
                    return  # close() cancelled the connect attempt
                raise
            except IotmpAuthError as err:
                outcome = "give up" if refreshed else await self._refresh(token)
                if outcome == "retry":
                    refreshed = True
                    continue
                if outcome == "give up":
                    self._report(False, str(err), final=True)
                    raise IotmpAuthError(f"{self._describe()}: {err}", status=err.status) from None
                reason = outcome  # the refresh itself failed: back off like any outage
            except IotmpApiError as err:
                reason = str(err)
            else:
                refreshed = False
                if self._closing:
                    with contextlib.suppress(Exception):
                        await ws.close()
                    return
                reason = await self._serve(ws)
            if self._closing:
                return
            self._report(False, reason)
            delay = self._backoff.next_delay()
            if _LOGGER.isEnabledFor(_DEBUG):
                _LOGGER.debug("%s: reconnecting in %.2f s (%s)", self._describe(), delay, reason)
            await self._sleep(delay)

    async def _refresh(self, token: str) -> str:
        """After a refused handshake: "retry", "give up", or why the refresh failed."""
        try:
            refreshed = await self._client.refresh_token(token)
        except IotmpAuthError:
            return "give up"
        except IotmpApiError as err:
            return f"token refresh failed: {err}"
        return "retry" if refreshed else "give up"

    async def _connect(self, token: str) -> aiohttp.ClientWebSocketResponse:
        self._connect_task = asyncio.ensure_future(self._open(token))
        try:
            return await self._connect_task
        finally:
            self._connect_task = None

    async def _open(self, token: str) -> aiohttp.ClientWebSocketResponse:
        client = self._client
        url = client.ws_url(self._path())
        try:
            async with asyncio.timeout(client.request_timeout):
                return await client.stream_session.ws_connect(
                    url,
                    params={"authorization": token},
                    heartbeat=self._heartbeat,
                    ssl=client.verify_ssl,
                    timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
                    autoping=True,
                )
        except aiohttp.WSServerHandshakeError as err:
            # str(err) contains the URL and with it the token: never use it.
            if err.status == 401:
                raise IotmpAuthError(
                    "the server refused the token (HTTP 401)", status=401
                ) from None
            raise IotmpConnectionError(
                f"WebSocket handshake failed (HTTP {err.status})", status=err.status
            ) from None
        except TimeoutError:
            raise IotmpConnectionError(
                f"timed out after {client.request_timeout:g} s connecting"
            ) from None
        except (aiohttp.ClientError, OSError) as err:
            text = str(err).replace(token, "***") if token else str(err)
            raise IotmpConnectionError(f"cannot connect: {type(err).__name__}: {text}") from None

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Subscribe and read frames until the socket ends; return why it ended."""
        self._ws = ws
        started = time.monotonic()
        reason = "connection closed by the server"
        try:
            async with self._send_lock:
                for frame in self._initial_frames():
                    await ws.send_str(frame)
            if self._closing:
                return "closed"
            self._report(True)
            if self._stable_after <= 0:
                self._backoff.reset()
            handle = self._handle_text
            while True:
                msg = await ws.receive()
                kind = msg.type
                if kind is _TEXT:
                    handle(msg.data)
                elif kind is _BINARY:
                    if _LOGGER.isEnabledFor(_DEBUG):
                        _LOGGER.debug("%s: ignoring a binary frame", self._describe())
                else:
                    if kind is aiohttp.WSMsgType.ERROR:
                        reason = f"connection error: {type(msg.data).__name__}: {msg.data}"
                    elif ws.close_code is not None:
                        reason = f"connection closed (code {ws.close_code})"
                    break
        except (aiohttp.ClientError, OSError, RuntimeError) as err:
            reason = f"connection error: {type(err).__name__}: {err}"
        finally:
            self._ws = None
            self._cancel_sends()
            if not self._closing and not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
            _cancel_heartbeat(ws)
            if self._stable_after > 0 and time.monotonic() - started >= self._stable_after:
                self._backoff.reset()
        return reason

    async def _sleep(self, delay: float) -> None:
        self._wake.clear()
        if self._closing:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    # -- sending --------------------------------------------------------------------------

    def _send_soon(self, frame: str) -> None:
        """Send ``frame`` on the open socket (in order); dropped when not connected."""
        if self._ws is None or self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._send(frame))
        self._send_tasks.add(task)
        task.add_done_callback(self._send_tasks.discard)

    async def _send(self, frame: str) -> None:
        async with self._send_lock:
            ws = self._ws
            if ws is None or ws.closed:
                return  # resent with every subscription after the reconnect
            try:
                await ws.send_str(frame)
            except (aiohttp.ClientError, OSError, RuntimeError) as err:
                _LOGGER.debug("%s: send failed: %s", self._describe(), err)

    def _cancel_sends(self) -> None:
        for task in self._send_tasks:
            task.cancel()
        self._send_tasks.clear()

    # -- state reporting ------------------------------------------------------------------

    def _report(self, up: bool, reason: str = "", *, final: bool = False) -> None:
        if up:
            # A first success is no outage ending; later ones after a failure are.
            if self._outage_logged:
                _LOGGER.log(self._outage_log_level, "%s: connection restored", self._describe())
                self._outage_logged = False
            else:
                _LOGGER.debug("%s: connected", self._describe())
        elif final:
            _LOGGER.log(
                self._outage_log_level, "%s: %s; not reconnecting", self._describe(), reason
            )
        elif not self._outage_logged:
            _LOGGER.log(
                self._outage_log_level,
                "%s: connection %s (%s); reconnecting in the background",
                self._describe(),
                "lost" if self._state else "failed",
                reason,
            )
            self._outage_logged = True
        if self._state is up:
            return
        self._state = up
        try:
            self._on_connection(up)
        except Exception:
            _LOGGER.exception("%s: error in on_connection callback", self._describe())


class DeviceResourceStream(_Stream):
    """Live values of one device's resources (``/v3/users/{u}/devices/{d}/resources``).

    ``on_data(resource, value)`` gets the value of data frames in both styles:
    ``{"resource", "signal": "data", "payload"}`` and ``{"resource", "out" | "in"}``.
    """

    def __init__(
        self,
        client: IotmpApiClient,
        device_id: str,
        on_data: Callable[[str, Any], None],
        on_connection: Callable[[bool], None],
        *,
        backoff: Backoff | None = None,
        heartbeat: float = HEARTBEAT,
        stable_after: float = STABLE_AFTER,
        outage_log_level: int = logging.INFO,
    ) -> None:
        super().__init__(
            client,
            on_connection,
            backoff=backoff,
            heartbeat=heartbeat,
            stable_after=stable_after,
            outage_log_level=outage_log_level,
        )
        self._device_id = device_id
        self._on_data = on_data
        self._subscriptions: dict[str, int | float] = {}

    @property
    def device_id(self) -> str:
        """The device this stream is for."""
        return self._device_id

    @property
    def subscriptions(self) -> dict[str, int | float]:
        """Current subscriptions: resource -> interval (s); a copy."""
        return dict(self._subscriptions)

    def subscribe(self, resource: str, interval: float = 0) -> None:
        """Stream ``resource`` every ``interval`` s (0: device pushes / echoes only).

        May be called any time; sent now when connected and again after every
        reconnect. Subscribing again changes the interval.
        """
        if interval < 0:
            raise ValueError("interval must be >= 0")
        value: int | float = int(interval) if float(interval).is_integer() else interval
        self._subscriptions[resource] = value
        self._send_soon(_subscribe_frame(resource, value))

    def unsubscribe(self, resource: str) -> None:
        """Stop streaming ``resource`` (no-op when not subscribed)."""
        if self._subscriptions.pop(resource, None) is None:
            return
        self._send_soon(json.dumps({"resource": resource, "enabled": False}))

    def _path(self) -> str:
        client = self._client
        return (
            f"/v3/users/{quote_segment(client.user)}/devices/"
            f"{quote_segment(self._device_id)}/resources"
        )

    def _initial_frames(self) -> list[str]:
        return [
            _subscribe_frame(resource, interval)
            for resource, interval in self._subscriptions.items()
        ]

    def _describe(self) -> str:
        return f"Resource stream of device {self._device_id!r} at {self._client.base_url}"

    def _handle_text(self, text: str) -> None:
        try:
            frame = loads_json(text)
        except ValueError:
            if _LOGGER.isEnabledFor(_DEBUG):
                _LOGGER.debug("%s: skipping a frame that is not JSON", self._describe())
            return
        if type(frame) is not dict:
            if _LOGGER.isEnabledFor(_DEBUG):
                _LOGGER.debug("%s: skipping a frame that is not an object", self._describe())
            return
        resource = frame.get("resource")
        if type(resource) is not str:
            if _LOGGER.isEnabledFor(_DEBUG):
                _LOGGER.debug("%s: ignoring frame without resource: %.200s", self._describe(), text)
            return
        signal = frame.get("signal")
        if signal is not None:
            if signal != "data" or "payload" not in frame:
                if _LOGGER.isEnabledFor(_DEBUG):
                    _LOGGER.debug("%s: ignoring frame: %.200s", self._describe(), text)
                return
            value = frame["payload"]
        elif "out" in frame:
            value = frame["out"]
        elif "in" in frame:
            value = frame["in"]
        elif "payload" in frame:
            value = frame["payload"]
        else:
            if _LOGGER.isEnabledFor(_DEBUG):
                _LOGGER.debug("%s: ignoring frame: %.200s", self._describe(), text)
            return
        try:
            self._on_data(resource, value)
        except Exception:
            _LOGGER.exception("%s: error in on_data callback", self._describe())


class AccountEventStream(_Stream):
    """Account events (``/v2/users/{u}/events``), subscribed to ``device_state_change``.

    ``on_event(frame)`` gets every frame with a string ``event`` field, e.g.
    ``{"event": "device_state_change", "device": "lamp", "state": "connected", "ts": ...}``;
    acknowledgements and other frames are ignored.
    """

    EVENTS: Final = ("device_state_change",)

    def __init__(
        self,
        client: IotmpApiClient,
        on_event: Callable[[dict[str, Any]], None],
        on_connection: Callable[[bool], None],
        *,
        backoff: Backoff | None = None,
        heartbeat: float = HEARTBEAT,
        stable_after: float = STABLE_AFTER,
        outage_log_level: int = logging.INFO,
    ) -> None:
        super().__init__(
            client,
            on_connection,
            backoff=backoff,
            heartbeat=heartbeat,
            stable_after=stable_after,
            outage_log_level=outage_log_level,
        )
        self._on_event = on_event

    def _path(self) -> str:
        return f"/v2/users/{quote_segment(self._client.user)}/events"

    def _initial_frames(self) -> list[str]:
        return [json.dumps({"event": event}) for event in self.EVENTS]

    def _describe(self) -> str:
        return f"Event stream at {self._client.base_url}"

    def _handle_text(self, text: str) -> None:
        try:
            frame = loads_json(text)
        except ValueError:
            if _LOGGER.isEnabledFor(_DEBUG):
                _LOGGER.debug("%s: skipping a frame that is not JSON", self._describe())
            return
        if type(frame) is not dict or type(frame.get("event")) is not str:
            if _LOGGER.isEnabledFor(_DEBUG):
                _LOGGER.debug("%s: ignoring frame: %.200s", self._describe(), text)
            return
        try:
            self._on_event(frame)
        except Exception:
            _LOGGER.exception("%s: error in on_event callback", self._describe())


def _cancel_heartbeat(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Drop a dead socket's heartbeat timer.

    When aiohttp's heartbeat declares the peer dead, the pending ``receive()``
    re-arms the ping timer on its way out, so a closed socket keeps a timer
    for one more heartbeat period. Harmless, but cancel it when the aiohttp
    version has the (private) method.
    """
    cancel = getattr(ws, "_cancel_heartbeat", None)
    if ws.closed and callable(cancel):
        cancel()


def _subscribe_frame(resource: str, interval: int | float) -> str:
    return json.dumps({"resource": resource, "interval": interval, "enabled": True})
