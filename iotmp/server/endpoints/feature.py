"""Endpoints: a user's configured HTTP calls to third-party services (issue 11).

* REST (Thinger's shapes): ``/v1/users/{u}/endpoints`` GET (list) / POST
  (create), ``.../endpoints/{e}`` GET / PUT / DELETE, ``.../endpoints/{e}/call``
  POST with an optional JSON body (the payload).
* Devices: CALL_ENDPOINT (code 4) with the endpoint id and an optional PAYLOAD.
* In process: :meth:`Endpoints.create`, :meth:`Endpoints.call`.

Every call publishes ``endpoint_call_response``. Secrets (header values, URL
credentials) are stored as sent, shown redacted and never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from iotmp.protocol.message import ABSENT
from iotmp.protocol.server_resources import ServerResource, ServerResourceCall

from ..device_requests import ServerResourceError
from ..events import make_event
from ..feature import FeatureError
from ..http_api import (
    ApiError,
    empty_response,
    json_response,
    jsonable,
    path_user,
    raise_error,
    read_json_body,
)
from ..storage.endpoints import EndpointStore, StoredEndpoint
from ..storage.records import AlreadyExistsError
from .caller import CallResult, EndpointBusyError, EndpointCaller
from .config import (
    HTTP_REQUEST,
    MAX_TEXT,
    EndpointConfigError,
    build_request,
    check_id,
    parse_config,
    redact_config,
    restore_secrets,
)

if TYPE_CHECKING:
    from ..app import IotmpServer
    from ..registry import DeviceState

_LOGGER = logging.getLogger(__name__)

CREATE_KEYS: Final = frozenset({"endpoint", "name", "description", "enabled", "type", "config"})
UPDATE_KEYS: Final = CREATE_KEYS
# A target's 401/403 passed through would read as "your token was refused" to the caller.
_NOT_PASSED_THROUGH: Final = frozenset({401, 403, 407})


class EndpointError(FeatureError):
    """An endpoint operation cannot be done: REST ``status``, device ERROR ``message``."""


def _text(body: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = body.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise EndpointError(400, f"{key} must be a text of at most {MAX_TEXT} characters")
    return value


def _enabled(body: Mapping[str, Any], default: bool | None) -> bool | None:
    value = body.get("enabled", default)
    if value is not None and not isinstance(value, bool):
        raise EndpointError(400, "enabled must be true or false")
    return value


def _type(value: Any) -> str:
    if value != HTTP_REQUEST:
        raise EndpointError(
            400, f"endpoint type {value!r} is not supported here (only {HTTP_REQUEST!r})"
        )
    return HTTP_REQUEST


def _keys(body: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise EndpointError(400, "expected a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise EndpointError(400, f"unknown fields: {', '.join(unknown)}")
    return body


def endpoint_record(stored: StoredEndpoint, *, with_config: bool = True) -> dict[str, Any]:
    """Return the endpoint as the API shows it (secrets redacted)."""
    record: dict[str, Any] = {
        "endpoint": stored.endpoint,
        "name": stored.name,
        "description": stored.description,
        "enabled": stored.enabled,
        "type": stored.type,
        "created": stored.created,
        "modified": stored.modified,
    }
    if with_config:
        record["config"] = redact_config(stored.config)
    return record


class Endpoints:
    """Endpoints: REST routes, CALL_ENDPOINT, endpoint_call_response events."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        limits = server.config.limits
        self.caller = EndpointCaller(
            limits.endpoint_response_max_bytes, limits.endpoint_calls_in_flight
        )
        server.server_resources.register(ServerResource.CALL_ENDPOINT, self._device_call)

    @property
    def store(self) -> EndpointStore:
        """The endpoints table."""
        return EndpointStore(self.server.storage.engine)

    async def start(self) -> None:
        """Open the shared HTTP client session."""
        await self.caller.start()

    async def stop(self) -> None:
        """Close the session (safe when never started)."""
        await self.caller.stop()

    # -- in process ------------------------------------------------------------------

    async def create(
        self,
        user: str,
        endpoint_id: str,
        *,
        url: str,
        method: str = "POST",
        headers: Mapping[str, str] | list[dict[str, str]] | None = None,
        body: str = "",
        body_type: str = "json",
        name: str = "",
        description: str = "",
        enabled: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - the endpoint's setting, stored
        verify_ssl: bool = True,
    ) -> dict[str, Any]:
        """Create an ``http_request`` endpoint; returns its (redacted) record.

        Raises :class:`EndpointError` (400 bad config, 409 id taken or too many).
        """
        config: dict[str, Any] = {
            "url": url,
            "method": method,
            "headers": headers,
            "body": body,
            "body_type": body_type,
            "verify_ssl": verify_ssl,
        }
        if timeout is not None:
            config["timeout"] = timeout
        return await self._create(
            user,
            {
                "endpoint": endpoint_id,
                "type": HTTP_REQUEST,
                "config": config,
                "name": name,
                "description": description,
                "enabled": enabled,
            },
        )

    async def call(self, user: str, endpoint_id: str, payload: Any = ABSENT) -> CallResult:
        """Call the user's endpoint with ``payload`` (``ABSENT``: none).

        Returns the :class:`CallResult` (a non-2xx answer or a timeout is a
        result, not an exception) and publishes ``endpoint_call_response``.
        Raises :class:`EndpointError`: 404 unknown, 409 disabled, 400 the URL
        is not http(s) once filled in, 429 too many calls in flight.
        """
        stored = await self.store.get(user, endpoint_id)
        if stored is None:
            raise EndpointError(404, "endpoint not found")
        if not stored.enabled:
            raise EndpointError(409, "endpoint is disabled")
        try:
            request = build_request(stored.config, payload)
        except EndpointConfigError as exc:
            raise EndpointError(400, str(exc)) from None
        limit = self.server.config.limits.endpoint_timeout
        timeout = min(float(stored.config.get("timeout", limit)), limit)
        try:
            result = await self.caller.call(
                user,
                request,
                seconds=timeout,
                verify_ssl=bool(stored.config.get("verify_ssl", True)),
            )
        except EndpointBusyError as exc:
            raise EndpointError(429, str(exc)) from None
        if result.error is not None:
            _LOGGER.info("endpoint %s/%s: %s", user, endpoint_id, result.error)
        else:
            _LOGGER.debug("endpoint %s/%s answered %s", user, endpoint_id, result.status)
        fields: dict[str, Any] = {
            "endpoint": endpoint_id,
            "status": result.status,
            "payload": None if result.payload is ABSENT else jsonable(result.payload),
        }
        if result.error is not None:
            fields["error"] = result.error
        self.server.events.publish(make_event("endpoint_call_response", user, **fields))
        return result

    # -- create / update ---------------------------------------------------------------

    async def _create(self, user: str, body: Any) -> dict[str, Any]:
        body = _keys(body, CREATE_KEYS)
        for key in ("endpoint", "type", "config"):
            if key not in body:
                raise EndpointError(400, f"{key} is required")
        try:
            endpoint_id = check_id(body["endpoint"])
            config = restore_secrets(parse_config(body["config"]), None)
        except EndpointConfigError as exc:
            raise EndpointError(400, str(exc)) from None
        limit = self.server.config.limits.endpoints_per_user
        if await self.store.count(user) >= limit:
            raise EndpointError(409, f"at most {limit} endpoints per user")
        record = StoredEndpoint(
            user=user,
            endpoint=endpoint_id,
            type=_type(body["type"]),
            config=config,
            name=_text(body, "name", "") or "",
            description=_text(body, "description", "") or "",
            enabled=bool(_enabled(body, True)),
        )
        try:
            stored = await self.store.create(record)
        except AlreadyExistsError:
            raise EndpointError(409, "endpoint already exists") from None
        return endpoint_record(stored)

    async def update(self, user: str, endpoint_id: str, body: Any) -> dict[str, Any]:
        """Change the fields of ``body`` (a PUT body); returns the (redacted) record."""
        body = _keys(body, UPDATE_KEYS)
        if body.get("endpoint", endpoint_id) != endpoint_id:
            raise EndpointError(400, "endpoint id cannot be changed")
        stored = await self.store.get(user, endpoint_id)
        if stored is None:
            raise EndpointError(404, "endpoint not found")
        config = stored.config
        if "config" in body:
            try:
                config = restore_secrets(parse_config(body["config"]), stored.config)
            except EndpointConfigError as exc:
                raise EndpointError(400, str(exc)) from None
        changed = StoredEndpoint(
            user=user,
            endpoint=endpoint_id,
            type=_type(body.get("type", stored.type)),
            config=config,
            name=_text(body, "name", stored.name) or "",
            description=_text(body, "description", stored.description) or "",
            enabled=bool(_enabled(body, stored.enabled)),
            created=stored.created,
        )
        updated = await self.store.update(changed)
        if updated is None:
            raise EndpointError(404, "endpoint not found")
        return endpoint_record(updated)

    # -- devices -----------------------------------------------------------------------

    async def _device_call(self, device: DeviceState, call: ServerResourceCall) -> Any:
        """CALL_ENDPOINT: OK with the response body on 2xx, else ERROR with the status."""
        if not isinstance(call.target, str):
            raise ServerResourceError("CALL_ENDPOINT needs an endpoint id")
        try:
            result = await self.call(device.user, call.target, call.payload)
        except EndpointError as exc:
            raise ServerResourceError(exc.message) from None
        if result.error is not None:
            raise ServerResourceError(result.error, status=result.status)
        if not result.ok:
            raise ServerResourceError(f"endpoint answered {result.status}", status=result.status)
        return result.payload

    # -- REST --------------------------------------------------------------------------

    def _user(self, request: web.Request) -> str:
        return path_user(self.server, request)

    async def _body(self, request: web.Request) -> Any:
        return await read_json_body(request, self.server.config.max_body_bytes)

    async def list_endpoints(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{u}/endpoints``."""
        user = self._user(request)
        stored = await self.store.for_user(user)
        return json_response([endpoint_record(s, with_config=False) for s in stored])

    async def create_endpoint(self, request: web.Request) -> web.Response:
        """``POST /v1/users/{u}/endpoints``."""
        user = self._user(request)
        body = await self._body(request)
        return json_response(await self._create(user, body))

    async def get_endpoint(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{u}/endpoints/{e}``."""
        user = self._user(request)
        stored = await self.store.get(user, request.match_info["endpoint"])
        if stored is None:
            raise_error(404, "endpoint not found")
        return json_response(endpoint_record(stored))

    async def update_endpoint(self, request: web.Request) -> web.Response:
        """``PUT /v1/users/{u}/endpoints/{e}`` (only the fields sent change)."""
        user = self._user(request)
        body = await self._body(request)
        return json_response(await self.update(user, request.match_info["endpoint"], body))

    async def delete_endpoint(self, request: web.Request) -> web.Response:
        """``DELETE /v1/users/{u}/endpoints/{e}``."""
        user = self._user(request)
        if not await self.store.delete(user, request.match_info["endpoint"]):
            raise_error(404, "endpoint not found")
        return empty_response()

    async def call_endpoint(self, request: web.Request) -> web.Response:
        """``POST /v1/users/{u}/endpoints/{e}/call``: the target's status and body."""
        user = self._user(request)
        payload = await self._body(request)
        result = await self.call(user, request.match_info["endpoint"], payload)
        return call_response(result)

    def routes(self) -> list[web.RouteDef]:
        """REST routes (added before the v1 resource catch-all)."""
        base = "/v1/users/{user}/endpoints"
        item = base + "/{endpoint}"
        return [
            web.get(base, self.list_endpoints),
            web.post(base, self.create_endpoint),
            web.get(item, self.get_endpoint),
            web.put(item, self.update_endpoint),
            web.delete(item, self.delete_endpoint),
            web.post(item + "/call", self.call_endpoint),
        ]


def call_response(result: CallResult) -> web.Response:
    """Answer a REST call with the target's status and body (always JSON: text as a string).

    No response: 504 (timeout) or 502 with the reason. A target's 401/403/407
    become 502 (they would read as the caller's own token being refused).
    """
    if result.error is not None:
        raise ApiError(504 if result.timed_out else 502, result.error)
    status = result.status
    if status in _NOT_PASSED_THROUGH or not 200 <= status <= 599:
        raise ApiError(502, f"endpoint answered {status}")
    if result.payload is ABSENT or status in (204, 304):
        return web.Response(status=status)
    return json_response(result.payload, status=status)  # a text answer as a JSON string


__all__ = ["EndpointError", "Endpoints", "call_response", "endpoint_record"]
