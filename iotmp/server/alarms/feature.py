"""Alarm rules and their instances: arming, evaluation, storage, events (issue 11).

A rule watches one source (:mod:`.rules`):

* ``device_resource``: the resource is read every ``interval`` seconds (at
  least ``limits.min_stream_interval``) while the device is online; polling
  stops when it goes offline and starts again when it reconnects;
* ``device_property``: ``device_property_create`` / ``_update`` events;
* ``bucket``: ``bucket_write`` events.

When the condition has held for its duration an instance is raised (stored
with state ``active``), ``alarm_instance_create`` is published and the rule's
endpoint, if any, is called with the instance as payload. When the condition
no longer holds the open instance is cleared (``alarm_instance_normalize``,
Thinger's name). Acknowledging publishes ``alarm_instance_update``. A rule has
at most one open (active or acknowledged) instance. Rules and open instances
are loaded at start, so both survive a restart.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from iotmp.protocol.message import ABSENT

from ..events import make_event, now_ms
from ..feature import FeatureError
from ..http_api import ApiError, DeviceOps, jsonable
from ..storage.alarms import AlarmStore, StoredInstance, StoredRule
from ..storage.records import AlreadyExistsError
from .rules import RuleError, check_rule_id, field_value, parse_condition, parse_source
from .watch import RuleWatch

if TYPE_CHECKING:
    from ..app import IotmpServer
    from ..registry import DeviceState

_LOGGER = logging.getLogger(__name__)

ACTIVE: Final = "active"
ACKNOWLEDGED: Final = "acknowledged"
CLEARED: Final = "cleared"
STATES: Final = (ACTIVE, ACKNOWLEDGED, CLEARED)
RULE_KEYS: Final = frozenset(
    {"rule", "name", "description", "enabled", "severity", "source", "condition", "endpoint"}
)
MAX_TEXT: Final = 255
MAX_ANNOTATION: Final = 512
_PROPERTY_EVENTS: Final = ("device_property_create", "device_property_update")


class AlarmError(FeatureError):
    """An alarm operation cannot be done (REST ``status`` with ``message``)."""


@dataclass(eq=False)
class ArmedRule:
    """An enabled rule being evaluated."""

    rule: StoredRule
    watch: RuleWatch
    poller: asyncio.Task[None] | None = None

    def stop_polling(self) -> None:
        """Cancel the resource poller, if any."""
        if self.poller is not None:
            self.poller.cancel()
            self.poller = None


def rule_record(rule: StoredRule) -> dict[str, Any]:
    """Return the rule as the API shows it."""
    return {
        "rule": rule.rule,
        "name": rule.name,
        "description": rule.description,
        "enabled": rule.enabled,
        "severity": rule.severity,
        "source": rule.source,
        "condition": rule.condition,
        "endpoint": rule.endpoint,
        "created": rule.created,
        "modified": rule.modified,
    }


def instance_record(instance: StoredInstance) -> dict[str, Any]:
    """Return the instance as the API shows it (unset times left out)."""
    record: dict[str, Any] = {
        "instance": instance.instance,
        "rule": instance.rule,
        "state": instance.state,
        "value": instance.value,
        "annotation": instance.annotation,
        "raised": instance.raised,
        "modified": instance.modified,
    }
    if instance.acknowledged is not None:
        record["acknowledged"] = instance.acknowledged
    if instance.cleared is not None:
        record["cleared"] = instance.cleared
    return record


def _text(body: Mapping[str, Any], key: str, default: str, limit: int = MAX_TEXT) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or len(value) > limit:
        raise AlarmError(400, f"{key} must be a text of at most {limit} characters")
    return value


def _severity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
        raise AlarmError(400, "severity must be an integer from 0 to 4")
    return value


class Alarms:
    """Alarm rules and instances: evaluation, events, in-process calls (routes: :mod:`.routes`)."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        self.ops = DeviceOps(server)
        self._armed: dict[str, dict[str, ArmedRule]] = {}
        self._open: dict[tuple[str, str], StoredInstance] = {}
        self._unsubscribe: dict[str, Any] = {}
        self._remove_listener: Any = None
        # Storage writes of raises, clears and acknowledgements happen in this order.
        self._lock = asyncio.Lock()

    @property
    def store(self) -> AlarmStore:
        """The alarm tables."""
        return AlarmStore(self.server.storage.engine)

    def routes(self) -> list[web.RouteDef]:
        """REST routes (added before the v1 resource catch-all)."""
        from .routes import AlarmRoutes  # noqa: PLC0415 - it imports this module

        return AlarmRoutes(self).routes()

    async def start(self) -> None:
        """Load the open instances and arm every enabled rule."""
        self._remove_listener = self.server.registry.add_listener(self._device_state)
        for instance in await self.store.open_instances():
            self._open[(instance.user, instance.rule)] = instance
        for rule in await self.store.all_rules():
            await self._arm(rule)

    async def stop(self) -> None:
        """Disarm everything (safe when never started)."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        for user in list(self._armed):
            for rule in list(self._armed.get(user, {})):
                self._disarm(user, rule)
        self._open.clear()

    # -- arming ------------------------------------------------------------------------

    async def _arm(self, rule: StoredRule) -> None:
        if not rule.enabled:
            return
        user, rule_id = rule.user, rule.rule
        watch = RuleWatch(
            rule.condition,
            lambda value: self._raise(user, rule_id, value),
            lambda value: self._clear(user, rule_id, value),
        )
        armed = ArmedRule(rule, watch)
        self._armed.setdefault(user, {})[rule_id] = armed
        if user not in self._unsubscribe:
            self._unsubscribe[user] = self.server.events.subscribe(
                user, lambda event: self._event(user, event)
            )
        source = rule.source
        device = self._own_device(user, source.get("device"))
        if source["type"] == "device_resource" and device is not None and device.connected:
            armed.poller = self.server.spawn(self._poll(armed))
        elif source["type"] == "device_property" and device is not None:
            try:
                value = await self.server.properties.value(device.id, source["property"])
            except KeyError:
                return
            watch.observe(field_value(value, source.get("field")))

    def _disarm(self, user: str, rule_id: str) -> None:
        rules = self._armed.get(user, {})
        armed = rules.pop(rule_id, None)
        if armed is not None:
            armed.watch.close()
            armed.stop_polling()
        if not rules:
            self._armed.pop(user, None)
            unsubscribe = self._unsubscribe.pop(user, None)
            if unsubscribe is not None:
                unsubscribe()

    def _own_device(self, user: str, device_id: Any) -> DeviceState | None:
        if not isinstance(device_id, str):
            return None
        state = self.server.registry.get(device_id)
        return state if state is not None and state.user == user else None

    # -- sources -----------------------------------------------------------------------

    def _event(self, user: str, event: Mapping[str, Any]) -> None:
        name = event.get("event")
        if name in _PROPERTY_EVENTS:
            kind, match = "device_property", {"device": "device", "property": "property"}
            value = event.get("value", ABSENT)
        elif name == "bucket_write":
            kind, match = "bucket", {"bucket": "bucket"}
            value = event.get("data", ABSENT)
        else:
            return
        for armed in list(self._armed.get(user, {}).values()):
            source = armed.rule.source
            if source["type"] == kind and all(
                event.get(field) == source[key] for key, field in match.items()
            ):
                armed.watch.observe(field_value(value, source.get("field")))

    def _device_state(self, state: DeviceState, connected: bool) -> None:
        for armed in list(self._armed.get(state.user, {}).values()):
            source = armed.rule.source
            if source["type"] != "device_resource" or source["device"] != state.id:
                continue
            armed.stop_polling()
            if connected:
                armed.poller = self.server.spawn(self._poll(armed))

    async def _poll(self, armed: ArmedRule) -> None:
        source = armed.rule.source
        interval = max(float(source["interval"]), self.server.config.limits.min_stream_interval)
        while True:
            state = self._own_device(armed.rule.user, source["device"])
            if state is None or not state.connected:
                return
            try:
                value = await self.ops.read(state, source["resource"])
            except ApiError as exc:
                _LOGGER.debug(
                    "alarm rule %s: reading %s failed: %s",
                    armed.rule.rule,
                    source["resource"],
                    exc.message,
                )
            else:
                armed.watch.observe(field_value(value, source.get("field")))
            await asyncio.sleep(interval)

    # -- raise / clear -----------------------------------------------------------------

    def _raise(self, user: str, rule_id: str, value: Any) -> None:
        key = (user, rule_id)
        armed = self._armed.get(user, {}).get(rule_id)
        if key in self._open or armed is None:
            return
        now = now_ms()
        instance = StoredInstance(
            user=user,
            instance=secrets.token_hex(8),
            rule=rule_id,
            state=ACTIVE,
            value=jsonable(value),
            raised=now,
            modified=now,
        )
        self._open[key] = instance
        self.server.spawn(self._store_raise(armed.rule, instance))

    async def _store_raise(self, rule: StoredRule, instance: StoredInstance) -> None:
        async with self._lock:
            await self.store.add_instance(instance)
        self._publish("alarm_instance_create", instance, instance.value)
        if rule.endpoint:
            await self._notify(rule, instance)

    async def _notify(self, rule: StoredRule, instance: StoredInstance) -> None:
        from ..endpoints import EndpointError  # noqa: PLC0415 - features import each other late

        try:
            result = await self.server.endpoints.call(
                rule.user, str(rule.endpoint), instance_record(instance)
            )
        except EndpointError as exc:
            _LOGGER.info("alarm rule %s: endpoint %s: %s", rule.rule, rule.endpoint, exc.message)
            return
        if not result.ok:
            _LOGGER.info(
                "alarm rule %s: endpoint %s answered %s %s",
                rule.rule,
                rule.endpoint,
                result.status,
                result.error or "",
            )

    def _clear(self, user: str, rule_id: str, value: Any) -> None:
        instance = self._open.pop((user, rule_id), None)
        if instance is None:
            return
        now = now_ms()
        cleared = replace(instance, state=CLEARED, cleared=now, modified=now)
        self.server.spawn(self._store_clear(cleared, jsonable(value)))

    async def _store_clear(self, instance: StoredInstance, value: Any) -> None:
        async with self._lock:
            found = await self.store.change_instance(
                instance.user,
                instance.instance,
                {"state": CLEARED, "cleared": instance.cleared, "modified": instance.modified},
            )
        if found:
            self._publish("alarm_instance_normalize", instance, value)

    def _publish(self, name: str, instance: StoredInstance, value: Any) -> None:
        self.server.events.publish(
            make_event(
                name,
                instance.user,
                rule=instance.rule,
                instance=instance.instance,
                state=instance.state,
                value=value,
            )
        )

    # -- rules (in process and REST) ---------------------------------------------------

    async def create_rule(
        self,
        user: str,
        rule_id: str,
        *,
        source: Mapping[str, Any],
        condition: Mapping[str, Any],
        endpoint: str | None = None,
        name: str = "",
        description: str = "",
        enabled: bool = True,
        severity: int = 0,
    ) -> dict[str, Any]:
        """Create and arm a rule; returns its record (:class:`AlarmError` when refused)."""
        body: dict[str, Any] = {
            "rule": rule_id,
            "source": dict(source),
            "condition": dict(condition),
            "endpoint": endpoint,
            "name": name,
            "description": description,
            "enabled": enabled,
            "severity": severity,
        }
        return await self.create_rule_from(user, body)

    async def _rule_from(
        self, user: str, body: Any, stored: StoredRule | None = None
    ) -> StoredRule:
        if not isinstance(body, dict):
            raise AlarmError(400, "expected a JSON object")
        config = body.get("config")
        if isinstance(config, dict):  # Thinger puts a rule's settings under "config"
            body = {**config, **{k: v for k, v in body.items() if k != "config"}}
        unknown = sorted(set(body) - RULE_KEYS)
        if unknown:
            raise AlarmError(400, f"unknown fields: {', '.join(unknown)}")
        try:
            rule_id = stored.rule if stored else check_rule_id(body.get("rule"))
            if body.get("rule", rule_id) != rule_id:
                raise AlarmError(400, "rule id cannot be changed")
            if stored is None and ("source" not in body or "condition" not in body):
                raise AlarmError(400, "source and condition are required")
            source = (
                parse_source(body["source"])
                if stored is None or "source" in body
                else stored.source
            )
            condition = (
                parse_condition(body["condition"])
                if stored is None or "condition" in body
                else stored.condition
            )
        except RuleError as exc:
            raise AlarmError(400, str(exc)) from None
        if "device" in source and self._own_device(user, source["device"]) is None:
            raise AlarmError(400, f"unknown device {source['device']!r}")
        endpoint = body.get("endpoint", stored.endpoint if stored else None)
        if endpoint is not None and (
            not isinstance(endpoint, str)
            or await self.server.endpoints.store.get(user, endpoint) is None
        ):
            raise AlarmError(400, f"unknown endpoint {endpoint!r}")
        enabled = body.get("enabled", stored.enabled if stored else True)
        if not isinstance(enabled, bool):
            raise AlarmError(400, "enabled must be true or false")
        return StoredRule(
            user=user,
            rule=rule_id,
            source=source,
            condition=condition,
            endpoint=endpoint or None,
            name=_text(body, "name", stored.name if stored else ""),
            description=_text(body, "description", stored.description if stored else ""),
            enabled=enabled,
            severity=_severity(body.get("severity", stored.severity if stored else 0)),
            created=stored.created if stored else 0,
        )

    async def create_rule_from(self, user: str, body: Any) -> dict[str, Any]:
        """Create a rule from a REST body (Thinger's ``config`` envelope accepted)."""
        rule = await self._rule_from(user, body)
        limit = self.server.config.limits.alarm_rules_per_user
        if await self.store.rule_count(user) >= limit:
            raise AlarmError(409, f"at most {limit} alarm rules per user")
        try:
            rule = await self.store.create_rule(rule)
        except AlreadyExistsError:
            raise AlarmError(409, "alarm rule already exists") from None
        await self._arm(rule)
        self.server.events.publish(make_event("alarm_rule_create", user, rule=rule.rule))
        return rule_record(rule)

    async def update_rule(self, user: str, rule_id: str, body: Any) -> dict[str, Any]:
        """Change a rule (only the fields sent) and re-arm it."""
        stored = await self.store.rule(user, rule_id)
        if stored is None:
            raise AlarmError(404, "alarm rule not found")
        rule = await self.store.update_rule(await self._rule_from(user, body, stored))
        if rule is None:
            raise AlarmError(404, "alarm rule not found")
        self._disarm(user, rule_id)
        await self._arm(rule)
        self.server.events.publish(make_event("alarm_rule_update", user, rule=rule_id))
        return rule_record(rule)

    async def delete_rule(self, user: str, rule_id: str) -> None:
        """Delete a rule and its instances."""
        self._disarm(user, rule_id)
        async with self._lock:
            found = await self.store.delete_rule(user, rule_id)
        if not found:
            raise AlarmError(404, "alarm rule not found")
        self._open.pop((user, rule_id), None)
        self.server.events.publish(make_event("alarm_rule_delete", user, rule=rule_id))

    # -- instances ---------------------------------------------------------------------

    async def acknowledge(
        self, user: str, instance_id: str, annotation: str | None = None
    ) -> dict[str, Any]:
        """Acknowledge an instance (an active one becomes ``acknowledged``)."""
        async with self._lock:
            instance = await self.store.instance(user, instance_id)
            if instance is None:
                raise AlarmError(404, "alarm instance not found")
            now = now_ms()
            changes: dict[str, Any] = {"modified": now}
            if instance.state == ACTIVE:
                changes["state"] = ACKNOWLEDGED
            if instance.acknowledged is None:
                changes["acknowledged"] = now
            if annotation is not None:
                changes["annotation"] = annotation
            await self.store.change_instance(user, instance_id, changes)
            updated = replace(instance, **changes)
            key = (user, instance.rule)
            current = self._open.get(key)
            if current is not None and current.instance == instance_id:
                self._open[key] = replace(current, **changes)
        self._publish("alarm_instance_update", updated, updated.value)
        return instance_record(updated)

    async def delete_instance(self, user: str, instance_id: str) -> None:
        """Delete an instance (an open one does not come back until the rule raises anew)."""
        async with self._lock:
            instance = await self.store.instance(user, instance_id)
            if instance is None or not await self.store.delete_instance(user, instance_id):
                raise AlarmError(404, "alarm instance not found")
            key = (user, instance.rule)
            current = self._open.get(key)
            if current is not None and current.instance == instance_id:
                del self._open[key]
        self._publish("alarm_instance_delete", instance, instance.value)


__all__ = ["STATES", "AlarmError", "Alarms", "instance_record", "rule_record"]
