"""Known devices, their connection state and their cached descriptions."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .config import DeviceConfig
from .storage.hashing import verify_secret_async

if TYPE_CHECKING:
    from .device_link import DeviceLink

_LOGGER = logging.getLogger(__name__)

StateListener = Callable[["DeviceState", bool], None]
"""Called with (device, connected) after every connect and disconnect."""


def now_ms() -> int:
    """Return the current time in milliseconds since the epoch."""
    return int(time.time() * 1000)


def flatten_description(description: Any) -> dict[str, int | None]:
    """Resource name -> ``fn`` from a whole-device DESCRIBE answer.

    Accepts the current flat form (``{"a/b": {"fn": 3}}``) and the legacy
    nested form (``{"a": {"/": {"b": {"al": 0, "fn": 3}}}}``), joining nested
    names with ``/``. Entries without a usable ``fn`` map to None.
    """
    result: dict[str, int | None] = {}

    def walk(prefix: str, node: Any) -> None:
        if not isinstance(node, dict):
            return
        for name, entry in node.items():
            if not isinstance(name, str):
                continue
            # Interned: thousands of devices of one firmware share their resource names.
            full = sys.intern(f"{prefix}/{name}" if prefix else name)
            fn: int | None = None
            if isinstance(entry, dict):
                raw_fn = entry.get("fn")
                if isinstance(raw_fn, int) and not isinstance(raw_fn, bool):
                    fn = raw_fn
                children = entry.get("/")
                if isinstance(children, dict):
                    walk(full, children)
                    if "fn" not in entry:
                        continue
            result[full] = fn

    walk("", description)
    return result


@dataclass(eq=False)
class DeviceState:
    """A configured device and what the server currently knows about it."""

    config: DeviceConfig
    created_ms: int = field(default_factory=now_ms)
    modified_ms: int | None = None
    # The stored (scrypt) hash of the credential; None until the device is stored.
    credential_hash: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # Keyed digest of the last credential that matched the hash: later logins with
    # the same credential skip the (deliberately slow) hash.
    _verified: bytes | None = None
    link: DeviceLink | None = None
    connection_ts: int | None = None
    ip_address: str | None = None
    transport: str | None = None
    # The cached whole-device DESCRIBE, flattened (the same object as ``resources``:
    # only its names and fns are used, the raw answer is not kept); None = unknown.
    description: dict[str, Any] | None = None
    resources: dict[str, int | None] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    _connected_event: asyncio.Event | None = None
    # (what the record is made of, the record's JSON): built when the device is first
    # listed, rebuilt when any of those fields changed (about 400 B per listed device).
    _record_json: tuple[tuple[Any, ...], bytes] | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        """The device id."""
        return self.config.id

    @property
    def user(self) -> str:
        """The owning user."""
        return self.config.user

    @property
    def connected(self) -> bool:
        """Whether a live, authenticated session is attached."""
        return self.link is not None

    def set_description(self, description: Any) -> None:
        """Cache a whole-device DESCRIBE answer."""
        self.resources = flatten_description(description) if isinstance(description, dict) else {}
        self.description = self.resources

    def clear_description(self) -> None:
        """Forget the cached description (the device's resources are unknown)."""
        self.description = None
        self.resources = {}

    def resource_fn(self, name: str) -> int | None:
        """``fn`` of a resource from the cached description (None if unknown)."""
        return self.resources.get(name)

    def has_resource(self, name: str) -> bool:
        """Whether the cached description lists ``name``."""
        return name in self.resources

    def record(self) -> dict[str, Any]:
        """Return the device as the REST API shows it (list item / device record)."""
        connection: dict[str, Any] = {"active": self.connected}
        if self.connection_ts is not None:
            connection["ts"] = self.connection_ts
        if self.connected and self.ip_address:
            connection["ip_address"] = self.ip_address
        if self.connected and self.transport:
            connection["security"] = "TLS" if self.transport in ("tls", "wss") else ""
        return {
            "device": self.config.id,
            "name": self.config.name,
            "description": self.config.description,
            "type": self.config.type,
            "enabled": self.config.enabled,
            "user": self.config.user,
            **self.attributes,
            "created": self.created_ms,
            "modified": self.modified_ms or self.created_ms,
            "connection": connection,
        }

    def _record_inputs(self) -> tuple[Any, ...]:
        # Everything record() reads. Compared by value, except that a dict
        # compares equal to itself: attributes are replaced, never changed in place.
        return (
            self.config,
            self.attributes,
            self.created_ms,
            self.modified_ms,
            self.link is not None,
            self.connection_ts,
            self.ip_address,
            self.transport,
        )

    def record_json(self) -> bytes:
        """:meth:`record` as compact UTF-8 JSON, cached until the device changes."""
        inputs = self._record_inputs()
        cached = self._record_json
        if cached is not None and cached[0] == inputs:
            return cached[1]
        record = self.record()
        try:
            # A copy of exactly its length: orjson's own result keeps a 1 KiB buffer.
            encoded = memoryview(orjson.dumps(record)).tobytes()
        except TypeError:  # an attribute orjson refuses (bytes, a huge int): the slow path
            from .http_api import dumps  # noqa: PLC0415 - http_api imports this module

            encoded = dumps(record).encode("utf-8")
        self._record_json = (inputs, encoded)
        return encoded


# Record keys of the configured fields the device list filters and sorts on.
_LISTED_CONFIG_FIELDS: dict[str, str] = {"device": "id", "name": "name", "type": "type"}


def listed_values(states: list[DeviceState], key: str) -> list[Any]:
    """Return what :meth:`DeviceState.record` shows under ``key`` for each device.

    ``key`` is device, name, type or created. Without building records:
    attributes override the configured fields and ``created`` overrides
    attributes, as in the record.
    """
    if key == "created":
        return [state.created_ms for state in states]
    name = _LISTED_CONFIG_FIELDS[key]
    return [
        state.attributes[key] if key in state.attributes else getattr(state.config, name)
        for state in states
    ]


class DeviceRegistry:
    """All configured devices, keyed by id (ids are unique across users)."""

    def __init__(self, devices: tuple[DeviceConfig, ...] | list[DeviceConfig] = ()) -> None:
        self._devices: dict[str, DeviceState] = {}
        # user -> {id: device} in registration order: lists without scanning every device.
        self._by_user: dict[str, dict[str, DeviceState]] = {}
        self._digest_key = secrets.token_bytes(32)
        self._listeners: list[StateListener] = []
        for device in devices:
            self.add(device)

    def __iter__(self) -> Iterator[DeviceState]:
        return iter(list(self._devices.values()))

    def __len__(self) -> int:
        return len(self._devices)

    def add(self, config: DeviceConfig) -> DeviceState:
        """Register a device (or update the configuration of a known one)."""
        state = self._devices.get(config.id)
        if state is None:
            state = DeviceState(config)
            self._devices[config.id] = state
        else:
            if config.credential and config.credential != state.config.credential:
                state.credential_hash = None  # the new credential is hashed when stored
                state._verified = None
            if config.user != state.config.user:
                self._unindex(state)
            state.config = config
        self._by_user.setdefault(config.user, {})[config.id] = state
        return state

    def remove(self, device_id: str) -> DeviceState | None:
        """Forget a device; closing its live session is the caller's job."""
        state = self._devices.pop(device_id, None)
        if state is not None:
            self._unindex(state)
        return state

    def _unindex(self, state: DeviceState) -> None:
        devices = self._by_user.get(state.config.user)
        if devices is not None:
            devices.pop(state.config.id, None)
            if not devices:
                del self._by_user[state.config.user]

    def get(self, device_id: str) -> DeviceState | None:
        """Return the device with this id, if configured."""
        return self._devices.get(device_id)

    def for_user(self, user: str) -> list[DeviceState]:
        """Return the user's devices, in configuration order."""
        return list(self._by_user.get(user, {}).values())

    def online(self) -> list[str]:
        """Ids of the connected devices."""
        return [d.id for d in self._devices.values() if d.connected]

    def _digest(self, credential: str) -> bytes:
        return hmac.new(self._digest_key, credential.encode("utf-8"), hashlib.sha256).digest()

    async def authenticate(self, user: Any, device_id: Any, credential: Any) -> DeviceState | None:
        """Return the device if the CONNECT credentials are right, else None.

        A device from the configuration is checked against its configured
        credential (which the stored hash was made from); any other against
        the stored hash, in a worker thread, once per credential.
        """
        if not (
            isinstance(user, str) and isinstance(device_id, str) and isinstance(credential, str)
        ):
            return None
        state = self._devices.get(device_id)
        if state is None or state.config.user != user or not state.config.enabled:
            return None
        expected = state.config.credential
        if expected:  # from the configuration file, which seeded the stored hash
            if hmac.compare_digest(expected.encode("utf-8"), credential.encode("utf-8")):
                return state
            return None
        encoded = state.credential_hash
        if encoded is None:
            return None
        digest = self._digest(credential)
        if state._verified is not None and hmac.compare_digest(state._verified, digest):
            return state
        if not await verify_secret_async(credential, encoded):
            return None
        if state.credential_hash == encoded:  # unchanged while we were hashing
            state._verified = digest
        return state

    # -- connection state -------------------------------------------------

    def add_listener(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener(device, connected)`` on every state change; returns a remover."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def attach(self, state: DeviceState, link: DeviceLink) -> None:
        """Mark ``state`` connected through ``link`` and notify listeners."""
        state.link = link
        state.connection_ts = now_ms()
        state.ip_address = link.peer_address
        state.transport = link.transport_kind
        if state._connected_event is not None:
            state._connected_event.set()
        self._notify(state, True)

    def detach(self, state: DeviceState, link: DeviceLink) -> bool:
        """Mark ``state`` disconnected if ``link`` is still its session."""
        if state.link is not link:
            return False
        state.link = None
        state.connection_ts = now_ms()
        state._connected_event = None
        self._notify(state, False)
        return True

    def _notify(self, state: DeviceState, connected: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(state, connected)
            except Exception:
                _LOGGER.exception("device state listener failed")

    async def wait_connected(
        self,
        device_id: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> DeviceState:
        """Wait until ``device_id`` is connected (TimeoutError after ``timeout`` s)."""
        state = self._devices.get(device_id)
        if state is None:
            raise KeyError(device_id)
        async with asyncio.timeout(timeout):
            while not state.connected:
                if state._connected_event is None or state._connected_event.is_set():
                    state._connected_event = asyncio.Event()
                await state._connected_event.wait()
        return state
