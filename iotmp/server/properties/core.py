"""Device properties: what the server keeps for each device (configuration and state).

One :class:`Properties` per server (``server.properties``). Writes come from
the REST routes (:mod:`.routes`), from devices (READ_DEVICE_PROPERTY = 1,
SET_DEVICE_PROPERTY = 2) and from other features (:meth:`Properties.set_value`);
all go through :meth:`Properties._write`, which holds the device's lock from
the read to the published event: concurrent writes to a device are applied
one after the other (no lost PATCH) and their events leave in commit order.
A new property publishes ``device_property_create``; a changed value
``device_property_update``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from iotmp.protocol.message import ABSENT
from iotmp.protocol.server_resources import ServerResource, ServerResourceCall

from ..device_requests import ServerResourceError
from ..events import make_event
from ..storage.property_records import (
    Change,
    DeviceTotals,
    PropertyConflictError,
    StoredProperty,
)
from .rules import (
    MISSING,
    PropertyError,
    PropertyFields,
    PropertyNotFoundError,
    check_id,
    check_value,
    merge_patch,
    same_value,
    to_json_value,
)

if TYPE_CHECKING:
    from ..app import IotmpServer
    from ..registry import DeviceState
    from ..storage.properties import PropertyStore

_WRITE_ATTEMPTS = 3
"""A write that collides (another process created the row, the device row is
still being stored) is tried this many times in all."""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _DeviceLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Properties:
    """A device's properties: REST routes, READ/SET_DEVICE_PROPERTY, events."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        self._store: PropertyStore | None = None
        self._locks: dict[str, _DeviceLock] = {}
        resources = server.server_resources
        resources.register(ServerResource.READ_DEVICE_PROPERTY, self._device_read)
        resources.register(ServerResource.SET_DEVICE_PROPERTY, self._device_set)

    # -- feature -----------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """REST routes (added before the v1 resource catch-all)."""
        from .routes import PropertyRoutes  # noqa: PLC0415 - routes import this module

        return PropertyRoutes(self).routes()

    async def start(self) -> None:
        """Run after the storage opened (load state, start background work)."""
        from ..storage.properties import PropertyStore  # noqa: PLC0415 - loads SQLAlchemy

        self._store = PropertyStore(self.server.storage.engine)

    async def stop(self) -> None:
        """Run before the storage closes (stop background work)."""
        self._store = None

    @property
    def store(self) -> PropertyStore:
        """The queries (RuntimeError before :meth:`start`)."""
        if self._store is None:
            raise RuntimeError("properties: the server's storage is not open")
        return self._store

    # -- reads ---------------------------------------------------------------------

    async def value(self, device_id: str, prop: str) -> Any:
        """Return the value of property ``prop`` of ``device_id``; KeyError when it has none.

        Other features (event subscriptions with ``current``, alarms) read through this.
        """
        stored = await self.get_property(device_id, prop)
        if stored is None:
            raise PropertyNotFoundError(prop)
        return stored.value

    async def get_property(self, device_id: str, prop: str) -> StoredProperty | None:
        """Return one property (None when the device has no such property)."""
        return await self.store.get(device_id, prop)

    async def list_properties(self, device_id: str) -> list[StoredProperty]:
        """Return a device's properties, ordered by id."""
        return await self.store.of_device(device_id)

    # -- writes --------------------------------------------------------------------

    async def set_value(self, device_id: str, prop: str, value: Any) -> None:
        """Create or replace property ``prop`` (publishes device_property_create/update).

        Raises KeyError for an unknown device and :class:`~.rules.PropertyError`
        for a bad id or a value over a limit.
        """
        await self.put(device_id, prop, PropertyFields(value=value))

    async def put(self, device_id: str, prop: str, fields: PropertyFields) -> StoredProperty:
        """Create the property or replace its value.

        Name, description, type and ``perm``/``form`` change only where
        ``fields`` names them.
        """
        check_id(prop)
        value, size = self._checked_value(fields.value)

        def change(old: StoredProperty | None) -> StoredProperty:
            return self._build(device_id, prop, old, fields, value=value, size=size)

        return (await self._write(device_id, [(prop, change)]))[0]

    async def patch(self, device_id: str, prop: str, fields: PropertyFields) -> StoredProperty:
        """Merge ``fields`` into an existing property (404 when missing).

        The value is merged by RFC 7386 merge patch; the other members named
        replace theirs.
        """
        check_id(prop)
        patch = MISSING if fields.value is MISSING else to_json_value(fields.value)

        def change(old: StoredProperty | None) -> StoredProperty:
            if old is None:
                raise PropertyNotFoundError(prop)
            if patch is MISSING:
                value, size = old.value, old.size
            else:
                value, size = self._checked_value(merge_patch(old.value, patch))
            return self._build(device_id, prop, old, fields, value=value, size=size)

        return (await self._write(device_id, [(prop, change)]))[0]

    async def create(
        self, device_id: str, items: Sequence[tuple[str, PropertyFields]]
    ) -> list[StoredProperty]:
        """Create new properties, all or none (409 when one exists already)."""
        changes: list[tuple[str, Change]] = []
        for prop, fields in items:
            check_id(prop)
            value, size = self._checked_value(fields.value)
            changes.append((prop, self._creator(device_id, prop, fields, value, size)))
        return await self._write(device_id, changes)

    def _creator(
        self, device_id: str, prop: str, fields: PropertyFields, value: Any, size: int
    ) -> Change:
        def change(old: StoredProperty | None) -> StoredProperty:
            if old is not None:
                raise PropertyError(409, f"property {prop!r} already exists")
            return self._build(device_id, prop, None, fields, value=value, size=size)

        return change

    async def delete_property(self, device_id: str, prop: str) -> bool:
        """Delete one property; False when the device had no such property."""
        async with self._device_lock(device_id):
            return await self.store.delete(device_id, prop)

    # -- the one write path ----------------------------------------------------------

    def _checked_value(self, raw: Any) -> tuple[Any, int]:
        if raw is MISSING:
            raise PropertyError(400, 'missing "value"')
        limits = self.server.config.limits
        value = to_json_value(raw)
        return value, check_value(value, limits.property_max_bytes, limits.value_limits)

    @staticmethod
    def _build(
        device_id: str,
        prop: str,
        old: StoredProperty | None,
        fields: PropertyFields,
        *,
        value: Any,
        size: int,
    ) -> StoredProperty:
        now = _now_ms()

        def member(given: str | None, kept: str | None) -> str:
            return given if given is not None else (kept or "")

        extra = old.extra if old is not None else None
        if fields.extra:
            extra = {**(extra or {}), **fields.extra}
        return StoredProperty(
            device=device_id,
            property=prop,
            name=member(fields.name, old.name if old else None),
            description=member(fields.description, old.description if old else None),
            type=member(fields.type, old.type if old else None),
            value=value,
            size=size,
            extra=extra,
            created=old.created if old is not None else now,
            modified=now,
        )

    def _check_quota(self, before: DeviceTotals, after: DeviceTotals) -> None:
        # A device over a limit (lowered in the configuration) may still shrink.
        limits = self.server.config.limits
        if after.count > limits.properties_per_device and after.count > before.count:
            raise PropertyError(
                409, f"a device can have at most {limits.properties_per_device} properties"
            )
        maximum = limits.device_properties_max_bytes
        if after.size > maximum and after.size > before.size:
            raise PropertyError(
                413, f"a device's property values can take at most {maximum} bytes in all"
            )

    async def _write(
        self, device_id: str, changes: Sequence[tuple[str, Change]]
    ) -> list[StoredProperty]:
        state = self.server.registry.get(device_id)
        if state is None:
            raise KeyError(device_id)
        async with self._device_lock(device_id):
            for attempt in range(1, _WRITE_ATTEMPTS + 1):
                try:
                    results = await self.store.write(device_id, changes, self._check_quota)
                    break
                except PropertyConflictError:
                    if self.server.registry.get(device_id) is None:
                        raise KeyError(device_id) from None  # deleted meanwhile
                    if attempt == _WRITE_ATTEMPTS:
                        raise PropertyError(
                            409, "the property changed meanwhile, try again"
                        ) from None
                    # A device added at runtime is stored behind: wait for it.
                    await self.server.accounts.flush()
            for old, new in results:
                self._publish(state, old, new)
        return [new for _old, new in results]

    def _publish(self, state: DeviceState, old: StoredProperty | None, new: StoredProperty) -> None:
        if old is not None and same_value(old.value, new.value):
            return
        name = "device_property_create" if old is None else "device_property_update"
        self.server.events.publish(
            make_event(name, state.user, device=state.id, property=new.property, value=new.value)
        )

    @contextlib.asynccontextmanager
    async def _device_lock(self, device_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(device_id)
        if entry is None:
            entry = self._locks[device_id] = _DeviceLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[device_id]

    # -- devices (spec 11, codes 1 and 2) ------------------------------------------

    @staticmethod
    def _device_target(call: ServerResourceCall) -> str:
        try:
            return check_id(call.target)
        except PropertyError as exc:
            raise ServerResourceError(exc.message) from None

    async def _device_read(self, device: DeviceState, call: ServerResourceCall) -> Any:
        """READ_DEVICE_PROPERTY: OK with the value, ERROR when there is none."""
        prop = self._device_target(call)
        stored = await self.get_property(device.id, prop)
        if stored is None:
            raise ServerResourceError("property not found")
        return stored.value

    async def _device_set(self, device: DeviceState, call: ServerResourceCall) -> Any:
        """SET_DEVICE_PROPERTY: create or replace the value with the PAYLOAD."""
        prop = self._device_target(call)
        if call.payload is ABSENT:
            raise ServerResourceError("a property value (PAYLOAD) is required")
        try:
            await self.put(device.id, prop, PropertyFields(value=call.payload))
        except PropertyError as exc:
            raise ServerResourceError(exc.message) from None
        except KeyError:
            raise ServerResourceError("device not found") from None
        return ABSENT


__all__ = ["Properties"]
