"""Device-to-device calls (CALL_DEVICE) and sync locks (LOCK_SYNC / UNLOCK_SYNC).

CALL_DEVICE (code 3): the target is ``[device_id, resource]`` (longer arrays
name a nested resource, joined with ``/`` as [Embedded] does), the optional
PAYLOAD is the input. Only a device of the caller's own user can be called,
and it must be online; the server RUNs the resource on it through its
:class:`~.device_link.DeviceLink` (bounded by ``request_timeout``) and answers
OK with the output, or ERROR saying what went wrong.

LOCK_SYNC / UNLOCK_SYNC (codes 6, 7): see :mod:`.syncs` for the semantics;
this module reads the requests and releases a device's locks when it goes
offline (registry listener).
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from iotmp.protocol.errors import ConnectionClosedError, RemoteError, RequestTimeoutError
from iotmp.protocol.message import ABSENT
from iotmp.protocol.server_resources import ServerResource, ServerResourceCall

from .device_requests import ServerResourceError
from .syncs import SyncError, SyncTable, SyncTimeout

if TYPE_CHECKING:
    from .app import IotmpServer
    from .registry import DeviceState

MAX_ID_LENGTH: Final = 256
"""Longest sync id / lock id / resource name accepted (characters)."""


def remote_message(exc: RemoteError) -> str:
    """Return the text of a device's ERROR: its ``{"error": ...}``, the code, or a default."""
    payload = exc.payload
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])
    if isinstance(payload, str) and payload:
        return payload
    if exc.code is not None:
        return f"error code {exc.code}"
    return "no such resource, or it failed"


def parse_call_target(target: Any) -> tuple[str, str]:
    """``[device, resource...]`` -> ``(device, "resource/...")``; ServerResourceError if not."""
    if (
        not isinstance(target, list)
        or len(target) < 2
        or not all(isinstance(part, str) and part for part in target)
    ):
        raise ServerResourceError('CALL_DEVICE needs the target ["device_id", "resource"]')
    device, resource = target[0], "/".join(target[1:])
    if len(device) > MAX_ID_LENGTH or len(resource) > MAX_ID_LENGTH:
        raise ServerResourceError(f"device id and resource are at most {MAX_ID_LENGTH} characters")
    return device, resource


def _text_id(value: Any, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise ServerResourceError(f"{what} must be a string of 1-{MAX_ID_LENGTH} characters")
    return value


def parse_sync_request(
    call: ServerResourceCall, *, default_timeout: float, max_timeout: float, max_slots: int
) -> tuple[str, str, int, float]:
    """``(sync, lock, slots, timeout)`` of a LOCK_SYNC / UNLOCK_SYNC; ServerResourceError if bad.

    PAYLOAD is optional: ``{"lock": id, "slots": n, "timeout": seconds}``,
    each key optional (lock ``""``, slots 1, timeout ``default_timeout``).
    """
    sync = _text_id(call.target, "the sync id")
    payload = call.payload
    if payload is ABSENT or payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ServerResourceError('the payload must be {"lock": id, "slots": n, "timeout": s}')
    lock = "" if payload.get("lock") is None else _text_id(payload["lock"], "lock")
    slots = payload.get("slots", 1)
    if isinstance(slots, float) and slots.is_integer():
        slots = int(slots)
    if not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= max_slots:
        raise ServerResourceError(f"slots must be a whole number from 1 to {max_slots}")
    timeout = payload.get("timeout", default_timeout)
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout < 0
    ):
        raise ServerResourceError("timeout must be a number of seconds >= 0")
    return sync, lock, slots, min(float(timeout), max_timeout)


class DeviceCalls:
    """CALL_DEVICE, LOCK_SYNC and UNLOCK_SYNC for the devices of one user."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        limits = server.config.limits
        self.syncs = SyncTable(limits.sync_locks_per_device)
        table = server.server_resources
        table.register(ServerResource.CALL_DEVICE, self.call_device)
        table.register(ServerResource.LOCK_SYNC, self.lock_sync)
        table.register(ServerResource.UNLOCK_SYNC, self.unlock_sync)
        server.registry.add_listener(self._device_state_changed)

    def routes(self) -> list[web.RouteDef]:
        """REST routes (none: these are device-side calls only)."""
        return []

    async def start(self) -> None:
        """Nothing to load: locks live in memory only."""

    async def stop(self) -> None:
        """Nothing to stop (waiting locks end with their device sessions)."""

    def _device_state_changed(self, state: DeviceState, connected: bool) -> None:
        if not connected:
            self.syncs.release_device(state.id)

    # -- CALL_DEVICE ---------------------------------------------------------

    async def call_device(self, caller: DeviceState, call: ServerResourceCall) -> Any:
        """RUN ``resource`` on another online device of the caller's user."""
        device_id, resource = parse_call_target(call.target)
        target = self.server.registry.get(device_id)
        # Another user's device answers like a missing one: ids are not revealed.
        if target is None or target.user != caller.user:
            raise ServerResourceError(f"device {device_id!r} not found")
        link = target.link
        if link is None:
            raise ServerResourceError(f"device {device_id!r} is offline")
        try:
            return await link.run(resource, call.payload)
        except RemoteError as exc:
            raise ServerResourceError(
                f"device {device_id!r} refused {resource!r}: {remote_message(exc)}"
            ) from None
        except RequestTimeoutError:
            raise ServerResourceError(
                f"device {device_id!r} did not answer {resource!r} "
                f"within {link.request_timeout:g} s"
            ) from None
        except ConnectionClosedError:
            raise ServerResourceError(
                f"device {device_id!r} went offline during the call"
            ) from None

    # -- LOCK_SYNC / UNLOCK_SYNC ---------------------------------------------

    def _parse(self, call: ServerResourceCall) -> tuple[str, str, int, float]:
        limits = self.server.config.limits
        return parse_sync_request(
            call,
            default_timeout=limits.sync_lock_timeout,
            max_timeout=limits.sync_lock_max_timeout,
            max_slots=limits.sync_max_slots,
        )

    async def lock_sync(self, device: DeviceState, call: ServerResourceCall) -> Any:
        """Wait until the sync has a free slot for this device's lock (OK), or time out (ERROR)."""
        sync, lock, slots, timeout = self._parse(call)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not device.connected:
            # A LOCK sent before the server finished describing the device waits until
            # it is online: locks are released when a device goes offline, so one taken
            # before could outlive a connection that never came online.
            try:
                await self.server.registry.wait_connected(device.id, timeout)
            except (TimeoutError, KeyError):
                raise ServerResourceError(f"sync {sync!r}: the device is not online") from None
        try:
            await self.syncs.lock(
                device.user,
                sync,
                (device.id, lock),
                slots=slots,
                timeout=max(0.0, deadline - loop.time()),
            )
        except SyncTimeout:  # name the timeout asked for, not what was left of it
            raise ServerResourceError(f"sync {sync!r} still locked after {timeout:g} s") from None
        except SyncError as exc:
            raise ServerResourceError(str(exc)) from None
        return ABSENT

    async def unlock_sync(self, device: DeviceState, call: ServerResourceCall) -> Any:
        """Release this device's lock on the sync."""
        sync, lock, _slots, _timeout = self._parse(call)
        try:
            self.syncs.unlock(device.user, sync, (device.id, lock))
        except SyncError as exc:
            raise ServerResourceError(str(exc)) from None
        return ABSENT
