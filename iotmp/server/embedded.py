"""In-process access to an :class:`IotmpServer` for one user, without the REST hop.

An application running in the same event loop as the server (the Home
Assistant integration's "run a server here" entry) uses :class:`LocalAccess`
instead of HTTP: the same device operations the REST routes and app WebSockets
run (:class:`~.http_api.DeviceOps`, :class:`~.streams.StreamHub`), raising the
same :class:`~.http_api.ApiError` statuses the REST API answers, so a client
adapter maps them exactly as it maps HTTP errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from iotmp.protocol.message import ABSENT

from .config import DeviceConfig
from .http_api import SERVER_VERSION, ApiError, DeviceOps, jsonable
from .properties.rules import property_json
from .registry import DeviceRegistry, DeviceState
from .streams import Subscription

if TYPE_CHECKING:
    from .app import IotmpServer

RefusalListener = Callable[[str], None]
"""Called with the device id of every refused device login."""


def watch_refusals(registry: DeviceRegistry, on_refused: RefusalListener) -> None:
    """Call ``on_refused(device_id)`` whenever ``registry`` refuses a device login.

    Wraps the instance's ``authenticate`` (whatever the class does to check a
    credential), so the server modules need no hook for it.
    """
    authenticate = registry.authenticate

    async def watched(user: Any, device_id: Any, credential: Any) -> DeviceState | None:
        state = await authenticate(user, device_id, credential)
        if state is None and isinstance(device_id, str):
            on_refused(device_id)
        return state

    registry.authenticate = watched  # type: ignore[method-assign]


class LocalAccess:
    """The REST client's operations on the server's devices of ``user``, in process.

    Values are JSON-safe (as the REST API would return them).
    """

    def __init__(self, server: IotmpServer, user: str) -> None:
        self.server = server
        self.user = user
        self._ops = DeviceOps(server)

    @property
    def version(self) -> str:
        """The server's version string (``/v1/server/version``)."""
        return SERVER_VERSION

    async def properties(self, device_id: str) -> list[dict[str, Any]]:
        """Return the device's property objects (``GET .../properties``); [] for others'."""
        state = self.server.registry.get(device_id)
        if state is None or state.user != self.user:
            return []
        return [property_json(p) for p in await self.server.properties.list_properties(device_id)]

    def records(self) -> list[dict[str, Any]]:
        """Device records as ``GET /v1/users/{user}/devices`` lists them."""
        return [state.record() for state in self.server.registry.for_user(self.user)]

    def _device(self, device_id: str) -> DeviceState:
        return self._ops.device(self.user, device_id)

    async def describe(self, device_id: str) -> Any:
        """Return the resource description (``GET /v3/.../resources``)."""
        return jsonable(await self._ops.describe(self._device(device_id)))

    async def sample(self, device_id: str, resource: str) -> dict[str, Any]:
        """Return the ``{"in"?, "out"?}`` sample (``GET .../{resource}/api``)."""
        sample: dict[str, Any] = jsonable(await self._ops.sample(self._device(device_id), resource))
        return sample

    async def write(self, device_id: str, resource: str, value: Any = ABSENT) -> Any:
        """RUN with ``value`` (``POST .../{resource}``); the output, or None for none."""
        state = self._device(device_id)
        output = await self._ops.write(state, resource, value)
        if output is ABSENT or state.resource_fn(resource) == 2:
            return None
        return jsonable(output)

    def subscribe(
        self,
        device_id: str,
        resource: str,
        interval: float,
        deliver: Callable[[str, Any], None],
    ) -> Subscription:
        """Stream a resource as a resource WebSocket subscription would.

        ``deliver(resource, value)`` gets JSON-safe values; call
        :meth:`unsubscribe` with the returned subscription to stop.
        """
        self._device(device_id)  # 404 for another user's device

        def _deliver(name: str, value: Any) -> None:
            deliver(name, jsonable(value))

        sub = Subscription(device_id, resource, interval, _deliver)
        self.server.hub.subscribe(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop a subscription made by :meth:`subscribe`."""
        self.server.hub.unsubscribe(sub)

    def add_state_listener(self, listener: Callable[[str, bool], None]) -> Callable[[], None]:
        """Call ``listener(device_id, connected)`` for this user's devices; returns a remover."""

        def on_change(state: DeviceState, connected: bool) -> None:
            if state.user == self.user:
                listener(state.id, connected)

        return self.server.registry.add_listener(on_change)


async def _disconnect(server: IotmpServer, state: DeviceState, reason: str) -> None:
    link = state.link
    if link is None:
        return
    if server.registry.detach(state, link):
        server.hub.device_disconnected(state.id)
    await link.close(reason)


async def remove_device(server: IotmpServer, device_id: str) -> bool:
    """Forget a device at runtime and close its connection; False when it is unknown."""
    state = server.registry.remove(device_id)
    if state is None:
        return False
    server.config = replace(
        server.config, devices=tuple(d for d in server.config.devices if d.id != device_id)
    )
    await _disconnect(server, state, "device removed")
    return True


async def replace_device(server: IotmpServer, device: DeviceConfig) -> DeviceState:
    """Register or update a device; a live session made with the old settings is closed."""
    state = server.add_device(device)
    await _disconnect(server, state, "device settings changed")
    return state


__all__ = [
    "ApiError",
    "LocalAccess",
    "RefusalListener",
    "remove_device",
    "replace_device",
    "watch_refusals",
]
