"""REST routes (Thinger.io-compatible) and the device operations behind them.

Every error answers ``{"error": {"message": "..."}}`` with the status:

* 400 malformed JSON / bad parameters, 401 bad token, 403 token of another
  user, 404 unknown device, device not connected or unknown resource, 413
  body over ``max_body_bytes``, 502/4xx/5xx the device's own ERROR code (when
  it is a sane HTTP status, else 500), 504 the device did not answer within
  ``request_timeout``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, NoReturn

from aiohttp import web
from orjson import dumps as _orjson_dumps

from iotmp import __version__
from iotmp.protocol.errors import (
    ConnectionClosedError,
    IotmpError,
    RemoteError,
    RequestTimeoutError,
)
from iotmp.protocol.message import ABSENT

from . import input_checks
from .access_log import USER_KEY
from .auth import AuthError
from .device_link import DeviceLink
from .feature import FeatureError
from .permissions import permits, request_scope
from .registry import DeviceState, listed_values
from .throttle import TooManyAttempts

if TYPE_CHECKING:
    from .app import IotmpServer

_LOGGER = logging.getLogger(__name__)

SERVER_VERSION: Final = f"iotmp-server {__version__}"

MSG_DEVICE_NOT_FOUND: Final = "device not found"
MSG_DEVICE_OFFLINE: Final = "device not connected"
MSG_RESOURCE_NOT_FOUND: Final = "resource not found"
MSG_DEVICE_TIMEOUT: Final = "device did not answer in time"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered as ``{"error": {"message": ...}}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


# ---------------------------------------------------------------------------
# JSON helpers
# ---------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Make a PSON value JSON-safe: bytes -> base64 text, NaN/inf -> null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _orjson_default(value: Any) -> Any:
    """Serialise what orjson cannot: bytes-likes become base64 text (as in ``jsonable``)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(type(value).__name__)


def dumps_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON of a (PSON) value, as bytes.

    orjson does it in one C pass (NaN/inf -> null as ``jsonable`` does, bytes via
    ``default``). What it refuses -- keys that are not strings, integers beyond
    64 bits, lone surrogates, nesting over 254 -- goes the ``json`` way, so the
    output (or the error) is the one of before for those. The one difference left:
    orjson writes some floats shorter (``1e-7`` where ``json`` writes ``1e-07``).
    """
    try:
        return _orjson_dumps(value, default=_orjson_default)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False).encode()


def dumps(value: Any) -> str:
    """Compact JSON of a (PSON) value."""
    return dumps_bytes(value).decode()


def json_response(value: Any, status: int = 200) -> web.Response:
    """Make a JSON response (bare value, no envelope)."""
    return web.Response(
        body=dumps_bytes(value), status=status, content_type="application/json", charset="utf-8"
    )


def empty_response() -> web.Response:
    """200 with an empty body (input-only writes, runs without output)."""
    return web.Response(status=200)


def error_response(status: int, message: str) -> web.Response:
    """Make the vendor error body ``{"error": {"message": ...}}``."""
    return json_response({"error": {"message": message}}, status=status)


def raise_error(status: int, message: str) -> NoReturn:
    """Raise :class:`ApiError`."""
    raise ApiError(status, message)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into a JSON error body."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    except FeatureError as exc:  # properties, buckets, endpoints, alarms
        return error_response(exc.status, exc.message)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, exc.reason or "error")
        if "Allow" in exc.headers:  # 405 says which methods would do
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        _LOGGER.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal server error")


# ---------------------------------------------------------------------------
# Authentication of API calls
# ---------------------------------------------------------------------------


def request_token(request: web.Request) -> str | None:
    """Return the access token: ``Authorization: Bearer`` header or ``?authorization=``."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    query = request.query.get("authorization")
    if query:
        return query.removeprefix("Bearer ").strip()
    return None


def authorize(server: IotmpServer, request: web.Request, user: str) -> dict[str, Any]:
    """Check the request's token against the path's ``{user}`` (401 / 403)."""
    token = request_token(request)
    if not token:
        raise_error(401, "missing access token")
    try:
        claims = server.auth.verify_access_token(token)
    except AuthError as exc:
        raise_error(401, exc.message)
    request[USER_KEY] = claims.get("usr")
    if claims.get("usr") != user:
        raise_error(403, "access token not valid for this user")
    stored = server.auth.token_record(claims)
    if stored is not None:
        scope = request_scope(request)
        if (scope is None and stored.device is not None) or (
            scope is not None and not permits(stored, scope)
        ):
            raise_error(403, "access token has no permission for this request")
    return claims


def path_user(server: IotmpServer, request: web.Request) -> str:
    """Return the path's ``{user}`` once the request's token may act for them (401 / 403)."""
    user = request.match_info["user"]
    authorize(server, request, user)
    return user


# ---------------------------------------------------------------------------
# Device operations (shared by REST and WebSockets)
# ---------------------------------------------------------------------------


def device_error(exc: Exception) -> ApiError:
    """Map a protocol-library error of a device call to an API error."""
    if isinstance(exc, RequestTimeoutError):
        return ApiError(504, MSG_DEVICE_TIMEOUT)
    if isinstance(exc, ConnectionClosedError):
        return ApiError(404, MSG_DEVICE_OFFLINE)
    if isinstance(exc, RemoteError):
        code = exc.code
        status = (
            code
            if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599
            else 500
        )
        payload = exc.payload
        message = "device error"
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            message = payload["error"]
        elif isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            inner = payload["error"].get("message")
            if isinstance(inner, str):
                message = inner
        elif isinstance(payload, str) and payload:
            message = payload
        return ApiError(status, message)
    return ApiError(500, f"device call failed: {exc}")


class DeviceOps:
    """What the API does with devices: look-ups, describe, read, write, samples."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server

    def device(self, user: str, device_id: str) -> DeviceState:
        """Return the user's device (404 when unknown or someone else's)."""
        state = self.server.registry.get(device_id)
        if state is None or state.user != user:
            raise_error(404, MSG_DEVICE_NOT_FOUND)
        return state

    @staticmethod
    def link(state: DeviceState) -> DeviceLink:
        """Return the device's live link (404 at once when offline)."""
        link = state.link
        if link is None or link.closed:
            raise_error(404, MSG_DEVICE_OFFLINE)
        return link

    async def call(self, awaitable: Awaitable[Any]) -> Any:
        """Await a device call, mapping protocol errors to API errors."""
        try:
            return await awaitable
        except IotmpError as exc:
            raise device_error(exc) from exc

    async def describe(self, state: DeviceState) -> Any:
        """Ask the device for its resources (and refresh the cache)."""
        link = self.link(state)
        description = await self.call(link.describe())
        if state.link is link:
            state.set_description(description)
        return description

    async def resource_fn(self, state: DeviceState, resource: str) -> tuple[DeviceLink, int | None]:
        """Return the link and the resource's ``fn``; 404 if the description lacks it."""
        link = self.link(state)
        if state.description is None:
            await self.describe(state)  # the describe on connect failed: try once more
        if not state.has_resource(resource):
            raise_error(404, MSG_RESOURCE_NOT_FOUND)
        return link, state.resource_fn(resource)

    async def sample(self, state: DeviceState, resource: str) -> dict[str, Any]:
        """Return the current ``{"in"?, "out"?}`` sample (DESCRIBE of the resource)."""
        link, _fn = await self.resource_fn(state, resource)
        payload = await self.call(link.describe_resource(resource))
        sample = payload if isinstance(payload, dict) else {}
        state.samples[resource] = sample
        return sample

    async def read(self, state: DeviceState, resource: str) -> Any:
        """Read a resource: the input state for fn=2, else RUN without input.

        Returns ``ABSENT`` when the device answered without output.
        """
        link, fn = await self.resource_fn(state, resource)
        if fn == 2:
            payload = await self.call(link.describe_resource(resource))
            if isinstance(payload, dict):
                state.samples[resource] = payload
                return payload.get("in", ABSENT)
            return ABSENT
        return await self.call(link.run(resource))

    async def write(self, state: DeviceState, resource: str, value: Any = ABSENT) -> Any:
        """RUN with input ``value``; returns the output (``ABSENT`` for none).

        After a successful write to an input resource that has stream
        subscribers, its new state is read back and pushed to them (reference
        devices do not stream after a RUN).
        """
        if value is not ABSENT:
            try:
                input_checks.device_value(value, self.server.config.limits.value_limits)
            except input_checks.InputError as exc:
                raise_error(400, str(exc))
        link, fn = await self.resource_fn(state, resource)
        output = await self.call(link.run(resource, value))
        if fn == 2 and self.server.hub.has_subscribers(state.id, resource):
            self.server.spawn(self._push_input_state(state, link, resource))
        return output

    async def _push_input_state(self, state: DeviceState, link: DeviceLink, resource: str) -> None:
        try:
            payload = await link.describe_resource(resource)
        except IotmpError as exc:
            _LOGGER.debug("%s/%s: state read-back failed: %r", state.id, resource, exc)
            return
        if isinstance(payload, dict) and "in" in payload:
            state.samples[resource] = payload
            self.server.hub.push(state.id, resource, payload["in"])


# ---------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------


def _int_param(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise_error(400, f"invalid {name}: {raw!r}")
    if value < 0:
        raise_error(400, f"invalid {name}: {raw!r}")
    return value


async def read_json_body(request: web.Request, limit: int) -> Any:
    """Return the JSON body, ``ABSENT`` when empty; 400 malformed, 413 too big."""
    length = request.content_length
    if length is not None and length > limit:
        raise_error(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await request.content.read(limit + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise_error(413, f"request body larger than {limit} bytes")
    data = b"".join(chunks)
    if not data.strip():
        return ABSENT
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise_error(400, "malformed JSON body")
    except RecursionError:
        raise_error(400, "JSON body nested too deeply")


class RestApi:
    """The REST routes of an :class:`~.app.IotmpServer`."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        self.ops = DeviceOps(server)

    # -- helpers -------------------------------------------------------------

    def _auth(self, request: web.Request) -> tuple[str, str | None]:
        user = request.match_info["user"]
        authorize(self.server, request, user)
        return user, request.match_info.get("device")

    def _device(self, request: web.Request) -> DeviceState:
        user, device_id = self._auth(request)
        assert device_id is not None
        return self.ops.device(user, device_id)

    @staticmethod
    def _output_response(value: Any) -> web.Response:
        return empty_response() if value is ABSENT else json_response(value)

    # -- server / oauth ------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        """``GET /v1/server/version`` (no token needed)."""
        return json_response({"version": SERVER_VERSION})

    async def oauth_token(self, request: web.Request) -> web.Response:
        """``POST /oauth/token``: password and refresh_token grants."""
        form: dict[str, Any]
        if request.content_type == "application/json":
            body = await read_json_body(request, self.server.config.max_body_bytes)
            form = body if isinstance(body, dict) else {}
        else:
            if (request.content_length or 0) > self.server.config.max_body_bytes:
                raise_error(413, "request body too large")
            try:
                form = dict(await request.post())
            except (ValueError, UnicodeDecodeError):
                raise_error(400, "malformed form body (expected UTF-8 url-encoded fields)")
        grant = form.get("grant_type")
        try:
            if grant == "password":
                username, password = form.get("username"), form.get("password")
                if not isinstance(username, str) or not isinstance(password, str):
                    raise_error(400, "username and password are required")
                pair = await self._password_grant(request, username, password)
            elif grant == "refresh_token":
                refresh = form.get("refresh_token")
                if not isinstance(refresh, str):
                    raise_error(400, "refresh_token is required")
                pair = await self.server.auth.refresh_grant(refresh)
            else:
                raise_error(400, "unsupported grant_type")
        except AuthError as exc:
            raise_error(401, exc.message)
        return json_response(pair.as_json())

    async def _password_grant(self, request: web.Request, username: str, password: str) -> Any:
        """Run the password grant behind the login throttle (429 when over it)."""
        throttle = self.server.throttle
        address = request.remote or "?"
        try:
            delay = throttle.reserve(username, address)
        except TooManyAttempts as exc:
            retry = {"Retry-After": str(math.ceil(exc.retry_after))}
            raise ApiError(429, str(exc), retry) from None
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            pair = await self.server.auth.password_grant(username, password)
        except AuthError:
            throttle.failure(username, address)
            raise
        throttle.success(username, address)
        return pair

    # -- devices -------------------------------------------------------------

    async def list_devices(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{user}/devices`` with count/index/name/type/sort/order.

        Filters and sorts the devices on their fields, then encodes only the page,
        from each device's cached record JSON.
        """
        user, _ = self._auth(request)
        count = _int_param(request, "count", None)
        index = _int_param(request, "index", 0) or 0
        name = request.query.get("name", "").lower()
        kind = request.query.get("type", "").lower()
        states = self.server.registry.for_user(user)
        if name:
            ids, names = listed_values(states, "device"), listed_values(states, "name")
            states = [
                state
                for state, device_id, device_name in zip(states, ids, names, strict=True)
                if name in device_id.lower() or name in device_name.lower()
            ]
        if kind:
            kinds = listed_values(states, "type")
            states = [s for s, k in zip(states, kinds, strict=True) if k.lower() == kind]
        sort = request.query.get("sort")
        if sort in ("device", "name", "type", "created"):
            keys = [str(value).lower() for value in listed_values(states, sort)]
            # Sorting positions (ints, which the GC does not track) rather than pairs.
            order = sorted(range(len(states)), key=keys.__getitem__)  # stable
            states = [states[i] for i in order]
        if request.query.get("order", "").lower() == "desc":
            states.reverse()
        page = states[index:] if not count else states[index : index + count]
        body = b"[" + b",".join([state.record_json() for state in page]) + b"]"
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    async def get_device(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{user}/devices/{device}``."""
        return json_response(self._device(request).record())

    async def device_stats(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{user}/devices/{device}/stats`` (no byte counters)."""
        state = self._device(request)
        return json_response(
            {
                "connected": state.connected,
                "connected_ts": state.connection_ts,
                "ip_address": state.ip_address if state.connected else None,
            }
        )

    # -- resources (v3) ------------------------------------------------------

    async def resources(self, request: web.Request) -> web.StreamResponse:
        """``GET /v3/.../resources`` (or the multiplexed stream WebSocket)."""
        if _is_websocket(request):
            return await self.server.app_sockets.device_socket(request)
        state = self._device(request)
        return json_response(await self.ops.describe(state))

    async def resource_api(self, request: web.Request) -> web.Response:
        """``GET /v3/.../resources/{resource}/api``: the current in/out sample."""
        state = self._device(request)
        return json_response(await self.ops.sample(state, request.match_info["resource"]))

    async def resource_get(self, request: web.Request) -> web.StreamResponse:
        """``GET /v3/.../resources/{resource}`` (or the single-resource WebSocket)."""
        if _is_websocket(request):
            return await self.server.app_sockets.resource_socket(request)
        state = self._device(request)
        value = await self.ops.read(state, request.match_info["resource"])
        return self._output_response(value)

    async def resource_post(self, request: web.Request) -> web.Response:
        """``POST /v3/.../resources/{resource}``: raw JSON input."""
        state = self._device(request)
        body = await read_json_body(request, self.server.config.max_body_bytes)
        resource = request.match_info["resource"]
        output = await self.ops.write(state, resource, body)
        if state.resource_fn(resource) == 2:
            return empty_response()
        return self._output_response(output)

    # -- resources (v2, wrapped) ---------------------------------------------

    async def v2_api(self, request: web.Request) -> web.Response:
        """``GET /v2/users/{u}/devices/{d}/api``."""
        state = self._device(request)
        return json_response(await self.ops.describe(state))

    async def v2_resource_api(self, request: web.Request) -> web.Response:
        """``GET /v2/users/{u}/devices/{d}/{resource}/api``."""
        return await self.resource_api(request)

    async def v2_get(self, request: web.Request) -> web.Response:
        """``GET /v2/.../{resource}`` -> ``{"out": ...}`` (``{"in": ...}`` for inputs)."""
        state = self._device(request)
        resource = request.match_info["resource"]
        value = await self.ops.read(state, resource)
        if value is ABSENT:
            return json_response({})
        key = "in" if state.resource_fn(resource) == 2 else "out"
        return json_response({key: value})

    async def v2_post(self, request: web.Request) -> web.Response:
        """``POST /v2/.../{resource}`` with ``{"in": ...}`` -> ``{"out": ...}`` or empty."""
        state = self._device(request)
        body = await read_json_body(request, self.server.config.max_body_bytes)
        if body is ABSENT or body is None:
            value: Any = ABSENT
        elif isinstance(body, dict):
            value = body.get("in", ABSENT)
        else:
            raise_error(400, 'expected {"in": value}')
        output = await self.ops.write(state, request.match_info["resource"], value)
        if output is ABSENT or state.resource_fn(request.match_info["resource"]) == 2:
            return empty_response()
        return json_response({"out": output})

    # -- table -----------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """All REST routes; order matters (``/api`` forms before the catch-alls)."""
        from .routes_accounts import AccountRoutes  # noqa: PLC0415 - it imports this module

        dev1 = "/v1/users/{user}/devices/{device}"
        dev2 = "/v2/users/{user}/devices/{device}"
        dev3 = "/v3/users/{user}/devices/{device}"
        return [
            web.get("/v1/server/version", self.version),
            web.post("/oauth/token", self.oauth_token),
            *AccountRoutes(self.server).routes(),
            web.get("/v1/users/{user}/devices", self.list_devices),
            web.get(dev1, self.get_device),
            web.get(dev1 + "/stats", self.device_stats),
            web.get(dev3 + "/resources", self.resources),
            web.get(dev3 + "/resources/{resource:.+}/api", self.resource_api),
            web.get(dev3 + "/resources/{resource:.+}", self.resource_get),
            web.post(dev3 + "/resources/{resource:.+}", self.resource_post),
            web.get(dev2 + "/api", self.v2_api),
            web.get(dev2 + "/{resource:.+}/api", self.v2_resource_api),
            web.get(dev2 + "/{resource:.+}", self.v2_get),
            web.post(dev2 + "/{resource:.+}", self.v2_post),
        ]


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"
