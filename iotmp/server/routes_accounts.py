"""REST routes backed by the database: device CRUD, device tokens, access tokens.

Shapes follow Thinger's OpenAPI spec (``Device_Create``, ``Device_Update``,
``Token_Create``...). Errors: 400 invalid body, 401/403 token, 404 unknown
device or token id (of *this* user: one user never sees another's), 409 id
already taken.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from . import input_checks
from .auth import new_stored_token
from .config import DEVICE_ID_RE, DEVICE_TYPES
from .http_api import (
    empty_response,
    json_response,
    path_user,
    raise_error,
    read_json_body,
)
from .permissions import FULL_ACCESS
from .registry import DeviceState
from .storage.records import AlreadyExistsError, StoredDevice, StoredToken

if TYPE_CHECKING:
    from .app import IotmpServer

TOKEN_ID_RE: Final = re.compile(r"^[A-Za-z0-9_]{1,50}$")
MAX_TEXT: Final = 255
MIN_CREDENTIAL: Final = 6
ATTRIBUTE_KEYS: Final = ("asset_group", "asset_type", "product")
_MS_THRESHOLD: Final = 10**11  # larger "expire" values are milliseconds


def _body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise_error(400, "expected a JSON object")
    return body


def _check_keys(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise_error(400, f"unknown fields: {', '.join(unknown)}")


def _text(body: Mapping[str, Any], key: str, *, minimum: int = 0) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not minimum <= len(value) <= MAX_TEXT:
        raise_error(400, f"{key} must be a string of {minimum} to {MAX_TEXT} characters")
    return value


def _bool(body: Mapping[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise_error(400, f"{key} must be true or false")
    return value


def _attributes(body: Mapping[str, Any]) -> dict[str, str]:
    result: dict[str, str] = {}
    for key in ATTRIBUTE_KEYS:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or (value and not DEVICE_ID_RE.match(value)):
            raise_error(400, f"{key} must be an id (1-32 of A-Z a-z 0-9 _ -) or empty")
        result[key] = value
    return result


def _permission(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(ids, dict) and all(isinstance(a, str | list) for a in ids.values())
        for ids in value.values()
    ):
        raise_error(400, f'{key} must be {{"<Type>": {{"<id>": "<Action>" | [...]}}}}')
    return value


def _expiry(body: Mapping[str, Any]) -> int | None:
    """Expiry in ms since the epoch from ``expire``/``expires`` (absolute) or ``expires_in``."""
    for key in ("expire", "expires", "token_expiration"):
        value = body.get(key)
        if value is None or value == 0:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise_error(400, f"{key} must be a time since the epoch (s or ms)")
        if not math.isfinite(value):
            raise_error(400, f"{key} must be finite")
        return int(value if value >= _MS_THRESHOLD else value * 1000)
    try:
        relative = input_checks.expires_in(body.get("expires_in"))
    except input_checks.InputError as exc:
        raise_error(400, str(exc))
    if relative is not None:
        return int((time.time() + relative) * 1000)
    return None


class AccountRoutes:
    """Device CRUD, device tokens and access tokens of one server."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return _body_object(await read_json_body(request, self.server.config.max_body_bytes))

    def _user(self, request: web.Request) -> str:
        return path_user(self.server, request)

    def _device(self, request: web.Request) -> DeviceState:
        user = self._user(request)
        state = self.server.registry.get(request.match_info["device"])
        if state is None or state.user != user:
            raise_error(404, "device not found")
        return state

    # -- devices -----------------------------------------------------------------

    async def create_device(self, request: web.Request) -> web.Response:
        """``POST /v1/users/{user}/devices``."""
        user = self._user(request)
        body = await self._body(request)
        _check_keys(
            body,
            {"device", "credentials", "name", "description", "type", "enabled", *ATTRIBUTE_KEYS},
        )
        device_id = body.get("device")
        if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
            raise_error(400, "device must be an id (1-32 of A-Z a-z 0-9 _ -)")
        kind = body.get("type", "Generic")
        if kind not in DEVICE_TYPES:
            raise_error(400, f"type must be one of {', '.join(DEVICE_TYPES)}")
        credential = _text(body, "credentials", minimum=MIN_CREDENTIAL)
        if credential is None and kind != "HTTP":
            raise_error(400, f"credentials are required for {kind} devices")
        stored = StoredDevice(
            id=device_id,
            user=user,
            name=_text(body, "name") or "",
            description=_text(body, "description") or "",
            type=kind,
            enabled=_bool(body, "enabled") is not False,
            attributes=_attributes(body),
        )
        try:
            state = await self.server.accounts.create_device(stored, credential)
        except AlreadyExistsError:
            raise_error(409, f"device {device_id!r} already exists")
        return json_response(state.record())

    async def update_device(self, request: web.Request) -> web.Response:
        """``PUT /v1/users/{user}/devices/{device}`` (only the fields given change)."""
        state = self._device(request)
        body = await self._body(request)
        _check_keys(
            body,
            {"device", "credentials", "name", "description", "type", "enabled", *ATTRIBUTE_KEYS},
        )
        if body.get("device", state.id) != state.id:
            raise_error(400, "a device id cannot be changed")
        changes: dict[str, Any] = {}
        for key in ("name", "description"):
            value = _text(body, key)
            if value is not None:
                changes[key] = value
        enabled = _bool(body, "enabled")
        if enabled is not None:
            changes["enabled"] = enabled
        if "type" in body:
            if body["type"] not in DEVICE_TYPES:
                raise_error(400, f"type must be one of {', '.join(DEVICE_TYPES)}")
            changes["type"] = body["type"]
        changes["attributes"] = _attributes(body)
        credential = _text(body, "credentials", minimum=1)
        state = await self.server.accounts.update_device(state, changes, credential)
        return json_response(state.record())

    async def delete_device(self, request: web.Request) -> web.Response:
        """``DELETE /v1/users/{user}/devices/{device}`` (a connected device is disconnected)."""
        state = self._device(request)
        await self.server.accounts.delete_device(state)
        return empty_response()

    # -- token documents -------------------------------------------------------------

    def _token_json(self, token: StoredToken) -> dict[str, Any]:
        document: dict[str, Any] = {
            "token": token.id,
            "name": token.name,
            "description": token.description,
            "enabled": token.enabled,
            "created": token.created,
            "modified": token.modified,
            "expire": token.expires,
            "access_token": self.server.auth.sign_stored_token(token),
        }
        if token.device is None:
            document["allow"] = token.allow or {}
            document["deny"] = token.deny or {}
        else:
            document["device"] = token.device
            document["token_name"] = token.name
            document["resources"] = list(token.resources or [])
        return document

    def _user_token(self, request: web.Request, user: str, *, device: str | None) -> StoredToken:
        token = self.server.auth.stored_token(user, request.match_info["token"])
        if token is None or token.device != device:
            raise_error(404, "token not found")
        return token

    # -- access tokens ------------------------------------------------------------

    async def list_tokens(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{user}/tokens``: the user's access tokens."""
        user = self._user(request)
        tokens = [t for t in self.server.auth.stored_tokens(user) if t.device is None]
        return json_response([self._token_json(t) for t in tokens])

    async def get_token(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{user}/tokens/{token}``."""
        user = self._user(request)
        return json_response(self._token_json(self._user_token(request, user, device=None)))

    async def create_token(self, request: web.Request) -> web.Response:
        """``POST /v1/users/{user}/tokens`` with the client's ``token`` id.

        Without ``allow`` the token may do whatever its user may (the behaviour
        of earlier releases, which had no permissions).
        """
        user = self._user(request)
        body = await self._body(request)
        _check_keys(
            body,
            {
                "token",
                "name",
                "description",
                "enabled",
                "allow",
                "deny",
                "expire",
                "expires",
                "expires_in",
                "token_name",
                "token_expiration",
            },
        )
        token_id = body.get("token")
        if token_id is None:
            token_id = secrets.token_hex(8)
        elif not isinstance(token_id, str) or not TOKEN_ID_RE.match(token_id):
            raise_error(400, "token must be an id (1-50 of A-Z a-z 0-9 _)")
        allow = _permission(body, "allow")
        token = new_stored_token(
            user,
            token_id,
            name=_text(body, "name") or _text(body, "token_name") or "",
            description=_text(body, "description") or "",
            enabled=_bool(body, "enabled") is not False,
            allow=FULL_ACCESS if allow is None else allow,
            deny=_permission(body, "deny"),
            expires=_expiry(body),
        )
        try:
            token = await self.server.accounts.create_token(token)
        except AlreadyExistsError:
            raise_error(409, f"token {token_id!r} already exists")
        document = self._token_json(token)
        document["token_id"] = token.id  # earlier releases' name of the id
        return json_response(document)

    async def update_token(self, request: web.Request) -> web.Response:
        """``PUT /v1/users/{user}/tokens/{token}`` (only the fields given change)."""
        user = self._user(request)
        token = self._user_token(request, user, device=None)
        body = await self._body(request)
        _check_keys(
            body,
            {
                "name",
                "description",
                "enabled",
                "allow",
                "deny",
                "expire",
                "expires",
                "expires_in",
                "token",
            },
        )
        if body.get("token", token.id) != token.id:
            raise_error(400, "a token id cannot be changed")
        changes: dict[str, Any] = {}
        for key in ("name", "description"):
            value = _text(body, key)
            if value is not None:
                changes[key] = value
        enabled = _bool(body, "enabled")
        if enabled is not None:
            changes["enabled"] = enabled
        for key in ("allow", "deny"):
            if key in body:
                changes[key] = _permission(body, key)
        if any(k in body for k in ("expire", "expires", "expires_in")):
            changes["expires"] = _expiry(body)
        token = await self.server.accounts.update_token(replace(token, **changes))
        return json_response(self._token_json(token))

    async def delete_token(self, request: web.Request) -> web.Response:
        """``DELETE /v1/users/{user}/tokens/{token}``: 404 unless it is this user's token."""
        user = self._user(request)
        token = self._user_token(request, user, device=None)
        if not await self.server.accounts.delete_token(user, token.id):
            raise_error(404, "token not found")
        return empty_response()

    # -- device tokens ----------------------------------------------------------------

    async def list_device_tokens(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{user}/devices/{device}/tokens``."""
        state = self._device(request)
        tokens = [t for t in self.server.auth.stored_tokens(state.user) if t.device == state.id]
        return json_response([self._token_json(t) for t in tokens])

    async def create_device_token(self, request: web.Request) -> web.Response:
        """``POST /v1/users/{user}/devices/{device}/tokens``: a token for this device only."""
        state = self._device(request)
        body = await self._body(request)
        _check_keys(
            body,
            {
                "token",
                "name",
                "token_name",
                "token_resources",
                "resources",
                "token_expiration",
                "expire",
                "expires",
                "enabled",
            },
        )
        token_id = body.get("token") or secrets.token_hex(8)
        if not isinstance(token_id, str) or not TOKEN_ID_RE.match(token_id):
            raise_error(400, "token must be an id (1-50 of A-Z a-z 0-9 _)")
        resources = body.get("token_resources", body.get("resources"))
        if resources is not None and (
            not isinstance(resources, list) or not all(isinstance(r, str) for r in resources)
        ):
            raise_error(400, "token_resources must be a list of resource names")
        token = new_stored_token(
            state.user,
            token_id,
            device=state.id,
            name=_text(body, "token_name") or _text(body, "name") or "",
            enabled=_bool(body, "enabled") is not False,
            resources=resources or None,
            expires=_expiry(body),
        )
        try:
            token = await self.server.accounts.create_token(token)
        except AlreadyExistsError:
            raise_error(409, f"token {token_id!r} already exists")
        return json_response(self._token_json(token))

    async def delete_device_token(self, request: web.Request) -> web.Response:
        """``DELETE /v1/users/{user}/devices/{device}/tokens/{token}``."""
        state = self._device(request)
        token = self._user_token(request, state.user, device=state.id)
        if not await self.server.accounts.delete_token(state.user, token.id):
            raise_error(404, "token not found")
        return empty_response()

    def routes(self) -> list[web.RouteDef]:
        """Return the routes, to go before any ``/devices/{device}/{resource}`` catch-all."""
        devices = "/v1/users/{user}/devices"
        device = devices + "/{device}"
        tokens = "/v1/users/{user}/tokens"
        return [
            web.post(devices, self.create_device),
            web.put(device, self.update_device),
            web.delete(device, self.delete_device),
            web.get(device + "/tokens", self.list_device_tokens),
            web.post(device + "/tokens", self.create_device_token),
            web.delete(device + "/tokens/{token}", self.delete_device_token),
            web.get(tokens, self.list_tokens),
            web.post(tokens, self.create_token),
            web.get(tokens + "/{token}", self.get_token),
            web.put(tokens + "/{token}", self.update_token),
            web.delete(tokens + "/{token}", self.delete_token),
        ]
