"""Devices of type ``HTTP``: they POST readings, the server keeps them as resources.

``POST /v3/users/{user}/devices/{device}/callback/data`` with
``Authorization: Bearer <device credential or an access token of the user>``
(or ``?authorization=``) and a JSON body, Thinger's callback shape: each field
of an object becomes an output resource holding the last value and its
timestamp (``GET .../resources/{field}/api`` -> ``{"out": v, "ts": ms}``); a
body that is not an object is kept as the resource ``data``. The device is
online from a POST until ``http_device_timeout`` seconds pass without one
(or the device's own ``properties.timeout``). What else a POST does (write a
bucket, set a property, call an endpoint, answer a property) is the device's
callback configuration, ``GET/PUT .../callback`` (:mod:`.http_device_actions`).

Errors: 400 malformed JSON / too many or bad field names / not an HTTP
device, 401 missing or wrong token, 404 unknown device, 413 body too large.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from iotmp.protocol.message import ABSENT

from .auth import AuthError
from .http_api import (
    empty_response,
    json_response,
    path_user,
    raise_error,
    read_json_body,
    request_token,
)
from .http_device_actions import ATTRIBUTE, callback_config, parse_callback_config, run_actions
from .registry import DeviceState
from .value_link import ValueLink, ValueStore, go_offline, go_online

if TYPE_CHECKING:
    from .app import IotmpServer

_LOGGER = logging.getLogger(__name__)

HTTP_TYPE: Final = "HTTP"
MAX_FIELDS: Final = 256
MAX_FIELD_NAME: Final = 64


def _field_ok(name: str) -> bool:
    return (
        0 < len(name) <= MAX_FIELD_NAME
        and not name.startswith("$")
        and not any(c in name for c in "/+#\x00")
        and name not in (".", "..")
    )


class HttpDevices:
    """The callback route and the online timers of HTTP devices."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        self.stores: dict[str, ValueStore] = {}
        self.links: dict[str, ValueLink] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def routes(self) -> list[web.RouteDef]:
        """Return the callback route (added before the REST catch-alls)."""
        base = "/v3/users/{user}/devices/{device}/callback"
        return [
            web.post(base + "/data", self.callback),
            web.get(base, self.read_config),
            web.put(base, self.write_config),
        ]

    def _own_http_device(self, request: web.Request) -> DeviceState:
        user = path_user(self.server, request)
        state = self.server.registry.get(request.match_info["device"])
        if state is None or state.user != user:
            raise_error(404, "device not found")
        if state.config.type != HTTP_TYPE:
            raise_error(400, "callbacks are for HTTP devices")
        return state

    async def read_config(self, request: web.Request) -> web.Response:
        """``GET .../callback``: the device's actions and timeout."""
        return json_response(callback_config(self._own_http_device(request)).to_json())

    async def write_config(self, request: web.Request) -> web.Response:
        """``PUT .../callback``: replace the actions and timeout."""
        state = self._own_http_device(request)
        config = parse_callback_config(
            await read_json_body(request, self.server.config.max_body_bytes)
        )
        await self.server.accounts.update_device(
            state, {"attributes": {ATTRIBUTE: config.to_json()}}, None
        )
        return json_response(config.to_json())

    def _authorized(self, request: web.Request, state: DeviceState) -> None:
        token = request_token(request)
        if not token:
            raise_error(401, "missing device token")
        if hmac.compare_digest(token.encode("utf-8"), state.config.credential.encode("utf-8")):
            return
        try:
            claims = self.server.auth.verify_access_token(token)
        except AuthError:
            raise_error(401, "invalid device token")
        if claims.get("usr") != state.user:
            raise_error(401, "invalid device token")

    async def callback(self, request: web.Request) -> web.Response:
        """``POST .../callback/data``."""
        user, device_id = request.match_info["user"], request.match_info["device"]
        state = self.server.registry.get(device_id)
        if state is None or state.user != user:
            raise_error(404, "device not found")
        self._authorized(request, state)
        if state.config.type != HTTP_TYPE or not state.config.enabled:
            raise_error(400, "not an enabled HTTP device")
        body = await read_json_body(request, self.server.config.max_body_bytes)
        if body is ABSENT:
            raise_error(400, "empty body")
        fields: dict[str, Any] = body if isinstance(body, dict) else {"data": body}
        store = self.stores.setdefault(device_id, ValueStore())
        new = [name for name in fields if name not in store.resources]
        if len(store.resources) + len(new) > MAX_FIELDS:
            raise_error(400, f"more than {MAX_FIELDS} fields")
        bad = [name for name in fields if not _field_ok(name)]
        if bad:
            raise_error(400, f"bad field name {bad[0][:MAX_FIELD_NAME]!r}")
        for name, value in fields.items():
            store.set(name, value)
        self._seen(state, store, request.remote or "")
        if new and state.link is not None:
            state.set_description(store.describe())
            if self.server.mqtt is not None:
                self.server.mqtt.bridge.sync(state)
        answer = await run_actions(self.server, state, body)
        return empty_response() if answer is None else json_response(answer)

    def _seen(self, state: DeviceState, store: ValueStore, peer: str) -> None:
        link = self.links.get(state.id)
        if link is None or link.closed:
            link = ValueLink(state.id, store, transport_kind="http", peer=peer)
            self.links[state.id] = link
            go_online(self.server, state, link)
        timer = self._timers.pop(state.id, None)
        if timer is not None:
            timer.cancel()
        timeout = callback_config(state).timeout or self.server.config.http_device_timeout
        self._timers[state.id] = asyncio.get_running_loop().call_later(
            timeout, self._expire, state, link
        )

    def _expire(self, state: DeviceState, link: ValueLink) -> None:
        self._timers.pop(state.id, None)
        if self.links.get(state.id) is link:
            del self.links[state.id]
        go_offline(self.server, state, link)

    def close(self) -> None:
        """Stop the timers; the devices show offline."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for device_id, link in list(self.links.items()):
            state = self.server.registry.get(device_id)
            if state is not None:
                go_offline(self.server, state, link)
        self.links.clear()
