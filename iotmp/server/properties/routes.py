"""REST routes of device properties (Thinger's ``/v3/users/{u}/devices/{d}/properties``).

* ``GET .../properties`` -> array of property objects (by id);
* ``POST .../properties`` with one property object or an array -> the created
  object(s); 409 when one exists (nothing is created then);
* ``GET .../properties/{p}`` -> the object;
* ``PUT .../properties/{p}`` with ``{"value": ...}`` (+ name, description,
  type, perm, form) -> creates or replaces; the object;
* ``PATCH .../properties/{p}`` with a fragment of the object -> the value
  merged by RFC 7386 merge patch, other members named replaced; the object;
* ``DELETE .../properties/{p}`` -> 200, empty.

Errors: 400 bad id or body, 404 unknown device or property (another user's
device included), 409 a property too many, 413 a value or all values too big.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from iotmp.protocol.message import ABSENT

from ..http_api import (
    MSG_DEVICE_NOT_FOUND,
    authorize,
    empty_response,
    json_response,
    raise_error,
    read_json_body,
)
from .rules import (
    body_id,
    check_id,
    parse_create,
    parse_fields,
    property_json,
)

if TYPE_CHECKING:
    from ..registry import DeviceState
    from .core import Properties

Handler = Callable[[web.Request], Awaitable[web.Response]]


class PropertyRoutes:
    """The routes of the module docstring for one server."""

    def __init__(self, properties: Properties) -> None:
        self.properties = properties
        self.server = properties.server

    def _device(self, request: web.Request) -> DeviceState:
        user = request.match_info["user"]
        authorize(self.server, request, user)
        state = self.server.registry.get(request.match_info["device"])
        if state is None or state.user != user:
            raise_error(404, MSG_DEVICE_NOT_FOUND)
        return state

    async def _body(self, request: web.Request) -> Any:
        body = await read_json_body(request, self.server.config.max_body_bytes)
        if body is ABSENT:
            raise_error(400, "expected a JSON body")
        return body

    @staticmethod
    def _prop(request: web.Request) -> str:
        return check_id(request.match_info["property"])

    async def list_all(self, request: web.Request) -> web.Response:
        """``GET .../properties``."""
        state = self._device(request)
        stored = await self.properties.list_properties(state.id)
        return json_response([property_json(item) for item in stored])

    async def create(self, request: web.Request) -> web.Response:
        """``POST .../properties`` (one object or an array)."""
        state = self._device(request)
        body = await self._body(request)
        created = await self.properties.create(state.id, parse_create(body))
        records = [property_json(item) for item in created]
        return json_response(records if isinstance(body, list) else records[0])

    async def get(self, request: web.Request) -> web.Response:
        """``GET .../properties/{property}``."""
        state = self._device(request)
        stored = await self.properties.get_property(state.id, self._prop(request))
        if stored is None:
            raise_error(404, "property not found")
        return json_response(property_json(stored))

    async def put(self, request: web.Request) -> web.Response:
        """``PUT .../properties/{property}``: create or replace."""
        state = self._device(request)
        prop = self._prop(request)
        body = await self._body(request)
        fields = parse_fields(body, require_value=True)
        body_id(body, prop)
        return json_response(property_json(await self.properties.put(state.id, prop, fields)))

    async def patch(self, request: web.Request) -> web.Response:
        """``PATCH .../properties/{property}``: merge a fragment."""
        state = self._device(request)
        prop = self._prop(request)
        body = await self._body(request)
        if isinstance(body, list):
            raise_error(
                400, "expected a JSON object to merge (JSON Patch arrays are not supported)"
            )
        fields = parse_fields(body, require_value=False)
        body_id(body, prop)
        return json_response(property_json(await self.properties.patch(state.id, prop, fields)))

    async def delete(self, request: web.Request) -> web.Response:
        """``DELETE .../properties/{property}``."""
        state = self._device(request)
        if not await self.properties.delete_property(state.id, self._prop(request)):
            raise_error(404, "property not found")
        return empty_response()

    def routes(self) -> list[web.RouteDef]:
        """Return the table (no other route uses these paths)."""
        base = "/v3/users/{user}/devices/{device}/properties"
        item = base + "/{property}"
        return [
            web.get(base, self.list_all),
            web.post(base, self.create),
            web.get(item, self.get),
            web.put(item, self.put),
            web.patch(item, self.patch),
            web.delete(item, self.delete),
        ]


__all__ = ["PropertyRoutes"]
