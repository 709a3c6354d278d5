"""Alarm REST routes (Thinger's paths).

* ``/v1/users/{u}/alarms/rules`` GET (list) / POST (create),
  ``.../rules/{rule}`` GET / PUT / DELETE;
* ``/v1/users/{u}/alarms/instances`` GET (``?rule=``, ``?state=``, ``index``,
  ``count``), ``.../instances/{instance}`` GET / PUT (acknowledge:
  ``{"state": "acknowledged"}``, optional ``annotation``) / DELETE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from ..http_api import (
    empty_response,
    json_response,
    path_user,
    raise_error,
    read_json_body,
)
from .feature import ACKNOWLEDGED, MAX_ANNOTATION, STATES, instance_record, rule_record

if TYPE_CHECKING:
    from .feature import Alarms

INSTANCE_KEYS: Final = frozenset({"state", "annotation"})


def _index(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise_error(400, f"invalid {name}: {raw!r}")
    return int(raw)


class AlarmRoutes:
    """The routes of the module docstring."""

    def __init__(self, alarms: Alarms) -> None:
        self.alarms = alarms
        self.server = alarms.server

    def _user(self, request: web.Request) -> str:
        return path_user(self.server, request)

    async def _body(self, request: web.Request) -> Any:
        return await read_json_body(request, self.server.config.max_body_bytes)

    # -- rules -----------------------------------------------------------------------

    async def list_rules(self, request: web.Request) -> web.Response:
        """``GET .../alarms/rules``."""
        user = self._user(request)
        return json_response([rule_record(r) for r in await self.alarms.store.rules_of(user)])

    async def create_rule(self, request: web.Request) -> web.Response:
        """``POST .../alarms/rules``."""
        user = self._user(request)
        body = await self._body(request)
        return json_response(await self.alarms.create_rule_from(user, body))

    async def get_rule(self, request: web.Request) -> web.Response:
        """``GET .../alarms/rules/{rule}``."""
        user = self._user(request)
        rule = await self.alarms.store.rule(user, request.match_info["rule"])
        if rule is None:
            raise_error(404, "alarm rule not found")
        return json_response(rule_record(rule))

    async def update_rule(self, request: web.Request) -> web.Response:
        """``PUT .../alarms/rules/{rule}``."""
        user = self._user(request)
        body = await self._body(request)
        return json_response(await self.alarms.update_rule(user, request.match_info["rule"], body))

    async def delete_rule(self, request: web.Request) -> web.Response:
        """``DELETE .../alarms/rules/{rule}`` (its instances go too)."""
        user = self._user(request)
        await self.alarms.delete_rule(user, request.match_info["rule"])
        return empty_response()

    # -- instances -------------------------------------------------------------------

    async def list_instances(self, request: web.Request) -> web.Response:
        """``GET .../alarms/instances`` (newest first)."""
        user = self._user(request)
        state = request.query.get("state") or None
        if state is not None and state not in STATES:
            raise_error(400, f"state must be one of {', '.join(STATES)}")
        index = _index(request, "index") or 0
        count = _index(request, "count")
        found = await self.alarms.store.instances_of(
            user, rule=request.query.get("rule") or None, state=state
        )
        found = found[index:] if not count else found[index : index + count]
        return json_response([instance_record(i) for i in found])

    async def get_instance(self, request: web.Request) -> web.Response:
        """``GET .../alarms/instances/{instance}``."""
        user = self._user(request)
        instance = await self.alarms.store.instance(user, request.match_info["instance"])
        if instance is None:
            raise_error(404, "alarm instance not found")
        return json_response(instance_record(instance))

    async def update_instance(self, request: web.Request) -> web.Response:
        """``PUT .../alarms/instances/{instance}``: acknowledge, annotate."""
        user = self._user(request)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise_error(400, "expected a JSON object")
        unknown = sorted(set(body) - INSTANCE_KEYS)
        if unknown:
            raise_error(400, f"unknown fields: {', '.join(unknown)}")
        if body.get("state", ACKNOWLEDGED) != ACKNOWLEDGED:
            raise_error(400, f'state can only be set to "{ACKNOWLEDGED}"')
        annotation = body.get("annotation")
        if annotation is not None and (
            not isinstance(annotation, str) or len(annotation) > MAX_ANNOTATION
        ):
            raise_error(400, f"annotation must be a text of at most {MAX_ANNOTATION} characters")
        record = await self.alarms.acknowledge(user, request.match_info["instance"], annotation)
        return json_response(record)

    async def delete_instance(self, request: web.Request) -> web.Response:
        """``DELETE .../alarms/instances/{instance}``."""
        user = self._user(request)
        await self.alarms.delete_instance(user, request.match_info["instance"])
        return empty_response()

    def routes(self) -> list[web.RouteDef]:
        """Return the route table."""
        rules = "/v1/users/{user}/alarms/rules"
        instances = "/v1/users/{user}/alarms/instances"
        return [
            web.get(rules, self.list_rules),
            web.post(rules, self.create_rule),
            web.get(rules + "/{rule}", self.get_rule),
            web.put(rules + "/{rule}", self.update_rule),
            web.delete(rules + "/{rule}", self.delete_rule),
            web.get(instances, self.list_instances),
            web.get(instances + "/{instance}", self.get_instance),
            web.put(instances + "/{instance}", self.update_instance),
            web.delete(instances + "/{instance}", self.delete_instance),
        ]


__all__ = ["AlarmRoutes"]
