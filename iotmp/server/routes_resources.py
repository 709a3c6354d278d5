"""Routes real Thinger clients call beyond the core resource API.

* ``GET /v3/users/{u}/devices/{d}/resources/api`` -- the resource map (Node-RED
  editor, thinr), same as ``/resources``.
* ``GET|POST /v1/users/{u}/devices/{d}/{resource}`` -- the deprecated v1
  resource API, answered like v3 (raw values). Registered last, and its
  pattern leaves out the names of the device's sub-routes (``tokens``,
  ``stats``, ``properties``, ...), so those always win.
* ``GET /v3/users/{u}/devices/{d}/stats`` (and v1) -- connection state and the
  IOTMP bytes received/sent on the current connection.
* ``GET /v1/users/{u}`` -- the user's profile (Node-RED reads ``role``).
* ``GET /v1/users/{u}/info/devices/stats`` -- device counts.
* ``GET /v1/server/assets`` -- the asset types this server lists, and where.
* ``GET /v1/proxies`` -- no proxies here: ``[]`` for any valid token (a CLI
  uses it to check a token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .byte_counter import byte_counts
from .http_api import RestApi, authorize, json_response, raise_error, request_token

if TYPE_CHECKING:
    from .app import IotmpServer

USER_PATTERN: Final = "(?<user>[a-zA-Z0-9_-]{1,32})"
SERVER_ASSETS: Final = (
    {
        "asset": "device",
        "category": "device",
        "paths": {"list": f"v1/users/{USER_PATTERN}/devices"},
    },
    {"asset": "token", "category": "token", "paths": {"list": f"v1/users/{USER_PATTERN}/tokens"}},
)
DEVICE_SUBROUTES: Final = ("tokens", "stats", "clone", "projects", "properties", "callback")
V1_RESOURCE: Final = (
    "/v1/users/{user}/devices/{device}/"
    "{resource:(?!(?:" + "|".join(DEVICE_SUBROUTES) + ")(?:/|$)).+}"
)


class ResourceRoutes:
    """The routes of the module docstring, on top of :class:`~.http_api.RestApi`."""

    def __init__(self, server: IotmpServer, api: RestApi) -> None:
        self.server = server
        self.api = api

    def _token_user(self, token: str) -> str:
        from .auth import AuthError  # noqa: PLC0415 - keeps the import graph flat

        try:
            claims = self.server.auth.verify_access_token(token)
        except AuthError as exc:
            raise_error(401, exc.message)
        return str(claims.get("usr", ""))

    async def resources_api(self, request: web.Request) -> web.StreamResponse:
        """``GET /v3/.../resources/api``: the resource map."""
        return await self.api.resources(request)

    async def device_stats(self, request: web.Request) -> web.Response:
        """``GET /v3/.../stats``: connection state and byte counters."""
        user = request.match_info["user"]
        authorize(self.server, request, user)
        state = self.api.ops.device(user, request.match_info["device"])
        link = state.link
        rx, tx = byte_counts(link.session.transport if link is not None else None)
        stats: dict[str, Any] = {
            "connected": state.connected,
            "connected_ts": state.connection_ts,
            "ip_address": state.ip_address if state.connected else None,
            "rx_bytes": rx,
            "tx_bytes": tx,
        }
        return json_response(stats)

    async def user_profile(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{u}``."""
        user = request.match_info["user"]
        authorize(self.server, request, user)
        return json_response(
            {"user": user, "name": user, "email": "", "role": "user", "enabled": True}
        )

    async def devices_info(self, request: web.Request) -> web.Response:
        """``GET /v1/users/{u}/info/devices/stats``: how many devices, how many online."""
        user = request.match_info["user"]
        authorize(self.server, request, user)
        devices = self.server.registry.for_user(user)
        online = sum(1 for d in devices if d.connected)
        return json_response(
            {"total": len(devices), "connected": online, "disconnected": len(devices) - online}
        )

    async def server_assets(self, request: web.Request) -> web.Response:
        """``GET /v1/server/assets`` (no token needed, like the version)."""
        return json_response([{**asset, "role": "user"} for asset in SERVER_ASSETS])

    async def proxies(self, request: web.Request) -> web.Response:
        """``GET /v1/proxies``: 401 for a bad token, else an empty list."""
        token = request_token(request)
        if not token:
            raise_error(401, "missing access token")
        self._token_user(token)
        return json_response([])

    def routes(self) -> list[web.RouteDef]:
        """Routes that must come before :class:`RestApi`'s catch-alls."""
        dev1 = "/v1/users/{user}/devices/{device}"
        dev3 = "/v3/users/{user}/devices/{device}"
        return [
            web.get(dev3 + "/resources/api", self.resources_api),
            web.get(dev3 + "/stats", self.device_stats),
            web.get("/v1/users/{user}", self.user_profile),
            web.get("/v1/users/{user}/info/devices/stats", self.devices_info),
            web.get("/v1/server/assets", self.server_assets),
            web.get("/v1/proxies", self.proxies),
            # the v1 form gains the byte counters too (same record)
            web.get(dev1 + "/stats", self.device_stats),
        ]

    def fallback_routes(self) -> list[web.RouteDef]:
        """Return the v1 resource API routes (register them after every other route)."""
        return [
            web.get(V1_RESOURCE, self.api.resource_get),
            web.post(V1_RESOURCE, self.api.resource_post),
        ]
