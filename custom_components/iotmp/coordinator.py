"""Connection manager: one per config entry, owns the server connection and device state.

The manager takes a REST snapshot of the selected devices, keeps one resource stream
per device and one account event stream open (the client reconnects them with capped
exponential backoff), re-snapshots after every reconnect, and tells entities when
values or availability change. It never polls where a stream serves.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_TOKEN, CONF_URL, CONF_VERIFY_SSL
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryNotReady,
    HomeAssistantError,
)
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.storage import Store
from homeassistant.util import ssl as ssl_util
from yarl import URL

from iotmp.client import (
    AccountEventStream,
    Backoff,
    DeviceRecord,
    DeviceResourceStream,
    IotmpApiClient,
    ResourceInfo,
)
from iotmp.client import errors as api_errors
from iotmp.ha_mapping import EntitySpec, ResourceOverride, firmware_version, map_device
from iotmp.protocol.message import ABSENT

from .const import (
    AUTH_PASSWORD,
    CONF_ALL_DEVICES,
    CONF_AUTH_METHOD,
    CONF_DEVICE_CLASS,
    CONF_DEVICE_INTERVALS,
    CONF_DEVICES,
    CONF_EXPIRES_AT,
    CONF_MODE,
    CONF_NUMBER_MAX,
    CONF_NUMBER_MIN,
    CONF_NUMBER_MODE,
    CONF_NUMBER_STEP,
    CONF_OVERRIDES,
    CONF_PLATFORM,
    CONF_REFRESH_TOKEN,
    CONF_UNIT,
    CONF_UPDATE_INTERVAL,
    CONNECTIVITY_KEY,
    DEFAULT_UPDATE_INTERVAL,
    DOMAIN,
    LOGGER,
    MANUFACTURER,
    MODE_EMBEDDED,
    ONLINE_STATES,
    STORAGE_VERSION,
)

if TYPE_CHECKING:
    from .embedded import (
        EmbeddedApiClient,
        EmbeddedEventStream,
        EmbeddedResourceStream,
        EmbeddedServer,
    )

type IotmpConfigEntry = ConfigEntry[IotmpRuntimeData]
type EntityFactory = Callable[[IotmpManager, str, EntitySpec], Entity]

# Stream reconnect delays (seconds): capped exponential backoff with equal jitter;
# the first retry after a drop comes within STREAM_BACKOFF_INITIAL.
STREAM_BACKOFF_INITIAL = 0.5
STREAM_BACKOFF_MAX = 30.0
# Retry delays (seconds) for snapshots that fail while the streams are connected.
SNAPSHOT_RETRY_MIN = 2.0
SNAPSHOT_RETRY_MAX = 300.0
# Delay before a stream task that died on an unexpected error is started again.
STREAM_RESTART_DELAY = 30.0
# Concurrent REST describes during a snapshot.
DESCRIBE_CONCURRENCY = 4


@dataclass(slots=True)
class IotmpRuntimeData:
    """What a loaded config entry keeps in ``entry.runtime_data``."""

    client: IotmpApiClient | EmbeddedApiClient
    manager: IotmpManager
    options: dict[str, Any] = field(default_factory=dict)
    """The options the entry was set up with (only their change reloads it)."""
    server: EmbeddedServer | None = None
    """The server an embedded-server entry runs (None for a remote server)."""


@dataclass(slots=True)
class IotmpDevice:
    """What the manager knows about one IOTMP device."""

    device_id: str
    name: str
    model: str | None = None
    sw_version: str | None = None
    """The firmware version from the device's properties (None: not known)."""
    connected: bool = False
    described: bool = False
    """Whether the resources are known (from the server or from the cache)."""
    resources: dict[str, ResourceInfo] = field(default_factory=dict)
    specs: list[EntitySpec] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    stream: DeviceResourceStream | EmbeddedResourceStream | None = None
    stream_task: asyncio.Task[None] | None = None
    stream_connected_once: bool = False
    subscriptions: dict[str, int] = field(default_factory=dict)
    added: set[tuple[str, str]] = field(default_factory=set)
    """(platform, key) of the entities already handed to Home Assistant."""


def connectivity_spec() -> EntitySpec:
    """Spec of the diagnostic connectivity binary sensor every device gets."""
    return EntitySpec(
        key=CONNECTIVITY_KEY,
        platform="binary_sensor",
        resource="",
        path=(),
        direction="out",
        name="Connectivity",
        device_class="connectivity",
        unit=None,
        state_class=None,
        number=None,
        light=None,
        fn=0,
    )


def value_at(value: Any, path: Iterable[str]) -> Any:
    """Walk ``path`` into nested objects; ``None`` when anything is missing."""
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if value is ABSENT:
        return None
    return value


def merged_value(base: Any, path: tuple[str, ...], changes: Mapping[str, Any]) -> Any:
    """Copy of ``base`` with ``changes`` applied to the object at ``path``.

    Missing intermediate objects are created (and a base that is no object is replaced).
    """
    root: Any = copy.deepcopy(base) if isinstance(base, dict) else {}
    target = root
    for part in path:
        child = target.get(part)
        if not isinstance(child, dict):
            child = {}
            target[part] = child
        target = child
    target.update(changes)
    return root


def _shape(value: Any) -> Any:
    """Type structure of a sample, to notice description changes without value churn."""
    if isinstance(value, Mapping):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return "list"
    if value is ABSENT:
        return "absent"
    return type(value).__name__


class IotmpManager:
    """Owns the server connection of one config entry."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: IotmpConfigEntry,
        client: IotmpApiClient | EmbeddedApiClient,
    ) -> None:
        """Initialise from the entry's options; nothing is started yet."""
        self.hass = hass
        self.entry = entry
        self.client = client
        assert entry.unique_id is not None
        self.entry_key: str = entry.unique_id
        self.server_available = True
        self.devices: dict[str, IotmpDevice] = {}
        self.hub_device_id: str | None = None
        self.server_version: str | None = None
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, f"{DOMAIN}.{entry.entry_id}"
        )
        self._cache: dict[str, Any] = {}
        self._cache_dirty = False
        self._platforms: dict[str, tuple[EntityFactory, AddEntitiesCallback]] = {}
        self._listeners: dict[str, dict[str, set[CALLBACK_TYPE]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self._events: AccountEventStream | EmbeddedEventStream | None = None
        self._events_connected_once = False
        self._started = False
        self._stopping = False
        self._auth_failed = False
        self._refresh_event = asyncio.Event()
        self._pending_full = False
        self._pending_devices: set[str] = set()
        self._pending_presence = False
        self._snapshot_lock = asyncio.Lock()

    @property
    def server_label(self) -> str:
        """The server's URL (or what the embedded server is) for log lines."""
        return str(self.entry.data.get(CONF_URL) or "in Home Assistant")

    @callback
    def async_request_full_refresh(self) -> None:
        """List the devices again soon (after the embedded server's devices changed)."""
        self._async_request_refresh()

    # ------------------------------------------------------------------ options

    @property
    def all_devices(self) -> bool:
        """Whether every device of the account is selected, including later ones."""
        return bool(self.entry.options.get(CONF_ALL_DEVICES, True))

    @property
    def selected_devices(self) -> list[str]:
        """Explicitly selected device ids (when not all devices)."""
        return list(self.entry.options.get(CONF_DEVICES, []))

    def output_interval(self, device_id: str) -> int:
        """Seconds between output samples for one device."""
        per_device: Mapping[str, Any] = self.entry.options.get(CONF_DEVICE_INTERVALS, {})
        if device_id in per_device:
            return int(per_device[device_id])
        return int(self.entry.options.get(CONF_UPDATE_INTERVAL, DEFAULT_UPDATE_INTERVAL))

    def overrides(self, device_id: str) -> dict[str, ResourceOverride]:
        """Per-resource overrides chosen in the options flow for one device."""
        raw: Mapping[str, Mapping[str, Any]] = self.entry.options.get(CONF_OVERRIDES, {}).get(
            device_id, {}
        )
        return {
            resource: ResourceOverride(
                platform=item.get(CONF_PLATFORM) or None,
                device_class=item.get(CONF_DEVICE_CLASS) or None,
                unit=item.get(CONF_UNIT) or None,
                number_min=item.get(CONF_NUMBER_MIN),
                number_max=item.get(CONF_NUMBER_MAX),
                number_step=item.get(CONF_NUMBER_STEP),
                number_mode=item.get(CONF_NUMBER_MODE) or None,
            )
            for resource, item in raw.items()
        }

    def device_identifier(self, device_id: str) -> str:
        """Device-registry identifier of an IOTMP device: ``host:user:device``."""
        return f"{self.entry_key}:{device_id}"

    def unique_id(self, device_id: str, key: str) -> str:
        """Entity unique id."""
        return f"{self.entry_key}-{device_id}-{key}"

    def device_id_from_identifier(self, identifier: str) -> str | None:
        """Inverse of :meth:`device_identifier`; ``None`` for other identifiers."""
        prefix = f"{self.entry_key}:"
        if identifier.startswith(prefix) and len(identifier) > len(prefix):
            return identifier[len(prefix) :]
        return None

    @callback
    def registry_device(self, device_id: str) -> dr.DeviceEntry | None:
        """Return the device-registry entry of an IOTMP device of this entry, if any."""
        identifier = (DOMAIN, self.device_identifier(device_id))
        for dev_entry in dr.async_entries_for_config_entry(
            dr.async_get(self.hass), self.entry.entry_id
        ):
            if identifier in dev_entry.identifiers:
                return dev_entry
        return None

    # --------------------------------------------------------------- lifecycle

    async def async_setup(self) -> None:
        """Load the cache and take the first snapshot; raise for setup to retry/reauth."""
        self._cache = await self._store.async_load() or {}
        try:
            await self._async_full_snapshot(initial=True)
        except api_errors.IotmpAuthError as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from err
        except api_errors.IotmpForbiddenError as err:
            # A token without the permission to list devices: a new token is needed.
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="insufficient_permissions"
            ) from err
        except api_errors.IotmpApiError as err:
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(err) or type(err).__name__},
            ) from err
        try:
            self.server_version = await self.client.server_version()
        except api_errors.IotmpApiError as err:
            LOGGER.debug("Server version not available: %s", err)
        await self._async_save_cache()

    @callback
    def async_setup_hub_device(self) -> None:
        """Create the service device for the server that IOTMP devices hang off."""
        dev_reg = dr.async_get(self.hass)
        embedded = self.entry.data.get(CONF_MODE) == MODE_EMBEDDED
        hub = dev_reg.async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={(DOMAIN, self.entry_key)},
            name=self.entry.title,
            manufacturer=MANUFACTURER,
            model="IOTMP server in Home Assistant" if embedded else "IOTMP server",
            sw_version=self.server_version,
            configuration_url=None
            if embedded
            else hub_configuration_url(self.entry.data[CONF_URL], self.server_version),
            entry_type=dr.DeviceEntryType.SERVICE,
        )
        self.hub_device_id = hub.id

    @callback
    def async_start(self) -> None:
        """Open the event stream, the device streams and the snapshot worker."""
        self._started = True
        self.entry.async_create_background_task(
            self.hass, self._async_refresh_loop(), f"{DOMAIN} snapshots {self.entry_key}"
        )
        self._events = self.client.event_stream(
            on_event=self._async_handle_event,
            on_connection=self._async_handle_events_connection,
            backoff=_stream_backoff(),
            outage_log_level=logging.DEBUG,
        )
        self.entry.async_create_background_task(
            self.hass,
            self._async_run_stream(self._events, "events"),
            f"{DOMAIN} events {self.entry_key}",
        )
        for device in self.devices.values():
            self._async_start_device_stream(device)

    async def async_stop(self) -> None:
        """Close every stream; background tasks are cancelled by the entry."""
        self._stopping = True
        closers: list[Awaitable[None]] = []
        if self._events is not None:
            closers.append(self._events.close())
        for device in self.devices.values():
            if device.stream is not None:
                closers.append(device.stream.close())
                device.stream = None
        await asyncio.gather(*closers, return_exceptions=True)
        await self._async_save_cache()

    # -------------------------------------------------------------- listeners

    @callback
    def async_register_platform(
        self, platform: str, factory: EntityFactory, add_entities: AddEntitiesCallback
    ) -> None:
        """Let a platform receive entities for current and future devices."""
        self._platforms[platform] = (factory, add_entities)
        for device in self.devices.values():
            self._async_add_entities(device, only_platform=platform)

    @callback
    def async_add_listener(
        self, device_id: str, resource: str, update: CALLBACK_TYPE
    ) -> CALLBACK_TYPE:
        """Call ``update`` when ``resource`` (``""``: availability only) changes."""
        listeners = self._listeners[device_id][resource]
        listeners.add(update)

        @callback
        def _remove() -> None:
            listeners.discard(update)

        return _remove

    @callback
    def _async_notify(self, device_id: str, resource: str | None = None) -> None:
        """Tell the entities of one device (of one resource) to write their state."""
        by_resource = self._listeners.get(device_id)
        if not by_resource:
            return
        if resource is None:
            targets = [cb for cbs in by_resource.values() for cb in cbs]
        else:
            targets = list(by_resource.get(resource, ()))
        for update in targets:
            update()

    @callback
    def _async_notify_all(self) -> None:
        for device_id in list(self._listeners):
            self._async_notify(device_id)

    # ---------------------------------------------------------------- values

    def available(self, device_id: str) -> bool:
        """Whether the server is reachable and the device is connected."""
        device = self.devices.get(device_id)
        return self.server_available and device is not None and device.connected

    def value(self, device_id: str, spec: EntitySpec) -> Any:
        """Return the current value for an entity spec (``None`` when unknown)."""
        device = self.devices.get(device_id)
        if device is None:
            return None
        source = device.inputs if spec.direction == "in" else device.outputs
        if spec.resource not in source:
            return None
        return value_at(source[spec.resource], spec.path)

    # --------------------------------------------------------------- commands

    async def async_write(self, device_id: str, resource: str, value: Any = ABSENT) -> Any:
        """Write an input / run a resource; raise a translated error when it fails."""
        placeholders = {"device": device_id, "resource": resource}
        try:
            result = await self.client.write(device_id, resource, value)
        except api_errors.IotmpNotFoundError as err:
            if err.device_offline is None:
                key = "not_found"
            else:
                key = "device_offline" if err.device_offline else "resource_not_found"
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key=key,
                translation_placeholders=placeholders,
            ) from err
        except api_errors.IotmpDeviceTimeoutError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="device_timeout",
                translation_placeholders=placeholders,
            ) from err
        except api_errors.IotmpRequestError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="write_rejected",
                translation_placeholders={**placeholders, "status": str(err.status)},
            ) from err
        except api_errors.IotmpForbiddenError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="forbidden",
                translation_placeholders=placeholders,
            ) from err
        except api_errors.IotmpAuthError as err:
            self._async_auth_failed()
            raise HomeAssistantError(
                translation_domain=DOMAIN, translation_key="auth_failed"
            ) from err
        except api_errors.IotmpConnectionError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(err) or type(err).__name__},
            ) from err
        except api_errors.IotmpApiError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="write_failed",
                translation_placeholders={**placeholders, "error": str(err)},
            ) from err
        device = self.devices.get(device_id)
        info = device.resources.get(resource) if device is not None else None
        if device is not None and info is not None and info.fn == 4:
            await self._async_refresh_resource(device, resource, result)
        return result

    async def async_write_fields(
        self,
        device_id: str,
        resource: str,
        path: tuple[str, ...],
        changes: Mapping[str, Any],
    ) -> None:
        """Write fields of an input object: the last known input merged with ``changes``."""
        device = self.devices.get(device_id)
        base = device.inputs.get(resource) if device is not None else None
        await self.async_write(device_id, resource, merged_value(base, path, changes))

    async def _async_refresh_resource(
        self, device: IotmpDevice, resource: str, output: Any
    ) -> None:
        """After writing an input+output resource: store its output and re-read its input."""
        if output is not None:
            device.outputs[resource] = output
        try:
            sample = await self.client.get_resource_sample(device.device_id, resource)
        except api_errors.IotmpApiError as err:
            LOGGER.debug("Could not re-read %s/%s: %s", device.device_id, resource, err)
        else:
            if "in" in sample:
                device.inputs[resource] = sample["in"]
            if output is None and "out" in sample:
                device.outputs[resource] = sample["out"]
        self._async_notify(device.device_id, resource)

    # --------------------------------------------------------------- snapshots

    def _selected_ids(self, records: Mapping[str, DeviceRecord]) -> list[str]:
        if self.all_devices:
            return list(records)
        return [device_id for device_id in self.selected_devices if device_id in records]

    async def _async_full_snapshot(self, *, initial: bool = False) -> None:
        """List devices, describe the connected ones, add/remove devices and entities."""
        async with self._snapshot_lock:
            records = {record.device_id: record for record in await self.client.list_devices()}
            wanted = self._selected_ids(records)
            for device_id in [d for d in self.devices if d not in wanted]:
                self._async_remove_device(device_id)
            self._async_remove_stale_registry_devices(set(wanted))
            for device_id in wanted:
                record = records[device_id]
                device = self.devices.get(device_id)
                if device is None:
                    device = self._async_create_device(device_id)
                device.name = record.name or device_id
                device.model = device_model(record)
                device.connected = record.connected and record.enabled
            semaphore = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

            async def _describe(device: IotmpDevice) -> None:
                async with semaphore:
                    device.connected = await self._async_describe(device)

            await asyncio.gather(
                *(
                    _describe(self.devices[device_id])
                    for device_id in wanted
                    if self.devices[device_id].connected
                )
            )
            for device_id in wanted:
                self._async_device_changed(self.devices[device_id], initial=initial)
        self._async_set_server_available(True)
        if not initial:
            await self._async_save_cache()

    async def _async_presence_check(self) -> None:
        """Bring every device's online state in line with the server's device list."""
        async with self._snapshot_lock:
            records = {record.device_id: record for record in await self.client.list_devices()}
        for device_id, device in list(self.devices.items()):
            record = records.get(device_id)
            if record is None:
                self._async_request_refresh()  # deleted meanwhile: a full snapshot removes it
                continue
            online = record.connected and record.enabled
            if online and not device.connected:
                self._async_request_refresh(device_id)
            elif device.connected and not online:
                device.connected = False
                self._async_notify(device_id)

    async def _async_device_snapshot(self, device_id: str) -> None:
        """Re-describe one device (after its stream reconnected or it came online)."""
        async with self._snapshot_lock:
            device = self.devices.get(device_id)
            if device is None:
                return
            device.connected = await self._async_describe(device)
            self._async_device_changed(device)
        await self._async_save_cache()

    async def _async_describe(self, device: IotmpDevice) -> bool:
        """Fetch resources and current samples; False when the device is offline."""
        try:
            resources = await self.client.get_resources(device.device_id)
        except api_errors.IotmpNotFoundError:
            return False
        except (
            api_errors.IotmpDeviceTimeoutError,
            api_errors.IotmpForbiddenError,
            api_errors.IotmpRequestError,
        ) as err:
            LOGGER.debug("Could not describe %s: %s", device.device_id, err)
            return True
        self._async_apply_resources(device, resources)
        await self._async_read_firmware_version(device)
        return True

    async def _async_read_firmware_version(self, device: IotmpDevice) -> None:
        """Take the firmware version from the device's properties (kept when unreadable)."""
        try:
            properties = await self.client.list_properties(device.device_id)
        except api_errors.IotmpApiError as err:
            LOGGER.debug("No properties of %s: %s", device.device_id, err)
            return
        version = firmware_version(properties)
        if version != device.sw_version:
            device.sw_version = version
            cached = self._cache.get("devices", {}).get(device.device_id)
            if cached is not None:
                cached["sw_version"] = version
                self._cache_dirty = True
            self._async_ensure_registry_device(device)

    @callback
    def _async_apply_resources(
        self, device: IotmpDevice, resources: Mapping[str, ResourceInfo]
    ) -> None:
        device.resources = dict(resources)
        device.described = True
        for name, info in resources.items():
            if info.sample_in is not ABSENT:
                device.inputs[name] = info.sample_in
            if info.sample_out is not ABSENT:
                device.outputs[name] = info.sample_out
        device.specs = map_device(device.resources, self.overrides(device.device_id))
        cached = {
            "name": device.name,
            "model": device.model,
            "sw_version": device.sw_version,
            "resources": {name: _info_to_cache(info) for name, info in device.resources.items()},
        }
        old = self._cache.setdefault("devices", {}).get(device.device_id)
        if old is None or _cache_shape(old) != _cache_shape(cached):
            self._cache["devices"][device.device_id] = cached
            self._cache_dirty = True

    @callback
    def _async_create_device(self, device_id: str) -> IotmpDevice:
        """Start tracking a device, restoring its description from the cache."""
        device = IotmpDevice(device_id=device_id, name=device_id)
        cached: Mapping[str, Any] | None = self._cache.get("devices", {}).get(device_id)
        if cached is not None:
            device.name = cached.get("name") or device_id
            device.model = cached.get("model")
            device.sw_version = cached.get("sw_version")
            device.resources = {
                name: _info_from_cache(name, item)
                for name, item in cached.get("resources", {}).items()
            }
            device.described = True
            device.specs = map_device(device.resources, self.overrides(device_id))
        self.devices[device_id] = device
        return device

    @callback
    def _async_device_changed(self, device: IotmpDevice, *, initial: bool = False) -> None:
        """Bring registry, entities and subscriptions in line with the device's state."""
        if device.described:
            self._async_remove_stale_entities(device)
        self._async_add_entities(device)
        self._async_update_subscriptions(device)
        if self._started:
            self._async_start_device_stream(device)
        if not initial:
            self._async_notify(device.device_id)

    @callback
    def _async_ensure_registry_device(self, device: IotmpDevice) -> None:
        dev_reg = dr.async_get(self.hass)
        entry = dev_reg.async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={(DOMAIN, self.device_identifier(device.device_id))},
            name=device.name,
            manufacturer=MANUFACTURER,
            model=device.model or "IOTMP device",
            sw_version=device.sw_version,
        )
        if entry.via_device_id != self.hub_device_id:
            dev_reg.async_update_device(entry.id, via_device_id=self.hub_device_id)

    @callback
    def _async_add_entities(self, device: IotmpDevice, only_platform: str | None = None) -> None:
        """Hand entities for new specs of a device to their (loaded) platforms."""
        if self.hub_device_id is not None:
            self._async_ensure_registry_device(device)
        new: dict[str, list[Entity]] = defaultdict(list)
        for spec in (connectivity_spec(), *device.specs):
            if only_platform is not None and spec.platform != only_platform:
                continue
            key = (spec.platform, spec.key)
            if key in device.added or spec.platform not in self._platforms:
                continue
            factory, _ = self._platforms[spec.platform]
            device.added.add(key)
            new[spec.platform].append(factory(self, device.device_id, spec))
        for platform, entities in new.items():
            self._platforms[platform][1](entities)

    @callback
    def _async_remove_stale_entities(self, device: IotmpDevice) -> None:
        """Remove registry entities of a device whose spec is gone (or moved platform)."""
        ent_reg = er.async_get(self.hass)
        dev_entry = self.registry_device(device.device_id)
        if dev_entry is None:
            return
        expected = {
            (spec.platform, self.unique_id(device.device_id, spec.key))
            for spec in (connectivity_spec(), *device.specs)
        }
        prefix = self.unique_id(device.device_id, "")
        for ent in er.async_entries_for_device(
            ent_reg, dev_entry.id, include_disabled_entities=True
        ):
            if ent.platform != DOMAIN:
                continue  # another integration's entity attached to this device
            if (ent.domain, ent.unique_id) in expected:
                continue
            LOGGER.debug("Removing entity %s: no longer described", ent.entity_id)
            ent_reg.async_remove(ent.entity_id)
            if ent.unique_id.startswith(prefix):
                device.added.discard((ent.domain, ent.unique_id[len(prefix) :]))

    @callback
    def _async_remove_device(self, device_id: str) -> None:
        """Stop tracking a device that left the selection or the server."""
        device = self.devices.pop(device_id)
        LOGGER.debug("Device %s is gone from the server or the selection", device_id)
        if device.stream is not None:
            stream = device.stream
            device.stream = None
            self.entry.async_create_background_task(
                self.hass, stream.close(), f"{DOMAIN} close {device_id}"
            )
        self._cache.get("devices", {}).pop(device_id, None)
        self._cache_dirty = True
        dev_entry = self.registry_device(device_id)
        if dev_entry is not None:
            dr.async_get(self.hass).async_remove_device(dev_entry.id)
        self._listeners.pop(device_id, None)

    @callback
    def _async_remove_stale_registry_devices(self, wanted: set[str]) -> None:
        """Remove registry devices of this entry that are neither selected nor listed."""
        dev_reg = dr.async_get(self.hass)
        for dev_entry in dr.async_entries_for_config_entry(dev_reg, self.entry.entry_id):
            ids = [
                self.device_id_from_identifier(ident)
                for domain, ident in dev_entry.identifiers
                if domain == DOMAIN
            ]
            device_ids = [device_id for device_id in ids if device_id is not None]
            if device_ids and not any(d in wanted for d in device_ids):
                LOGGER.debug("Removing stale device %s", dev_entry.name)
                dev_reg.async_remove_device(dev_entry.id)

    # ----------------------------------------------------------------- streams

    @callback
    def _async_start_device_stream(self, device: IotmpDevice) -> None:
        if device.stream is not None or self._stopping:
            return
        device_id = device.device_id

        @callback
        def _on_data(resource: str, value: Any) -> None:
            self._async_handle_data(device_id, resource, value)

        @callback
        def _on_connection(up: bool) -> None:
            self._async_handle_device_connection(device_id, up)

        device.stream = self.client.resource_stream(
            device_id,
            on_data=_on_data,
            on_connection=_on_connection,
            backoff=_stream_backoff(),
            outage_log_level=logging.DEBUG,
        )
        device.subscriptions = {}
        self._async_update_subscriptions(device)
        device.stream_task = self.entry.async_create_background_task(
            self.hass,
            self._async_run_stream(device.stream, device_id),
            f"{DOMAIN} stream {self.entry_key} {device_id}",
        )

    @callback
    def _async_update_subscriptions(self, device: IotmpDevice) -> None:
        """Subscribe inputs with interval 0 and outputs at the chosen interval."""
        if device.stream is None:
            return
        wanted: dict[str, int] = {}
        interval = self.output_interval(device.device_id)
        for spec in device.specs:
            info = device.resources.get(spec.resource)
            if info is None or info.fn not in (2, 3, 4):
                continue
            if spec.direction == "out" and info.fn != 2:
                wanted[spec.resource] = interval
            else:
                wanted.setdefault(spec.resource, 0)
        for resource in set(device.subscriptions) - set(wanted):
            device.stream.unsubscribe(resource)
        for resource, seconds in wanted.items():
            if device.subscriptions.get(resource) != seconds:
                device.stream.subscribe(resource, interval=seconds)
        device.subscriptions = wanted

    async def _async_run_stream(
        self,
        stream: DeviceResourceStream
        | AccountEventStream
        | EmbeddedResourceStream
        | EmbeddedEventStream,
        what: str,
    ) -> None:
        """Run a stream until closed; start reauth on 401; restart after a crash."""
        while True:
            try:
                await stream.run()
            except api_errors.IotmpAuthError:
                self._async_auth_failed()
                return
            except Exception:
                LOGGER.exception("Stream %s stopped unexpectedly; restarting", what)
                await asyncio.sleep(STREAM_RESTART_DELAY)
                continue
            return

    @callback
    def _async_handle_data(self, device_id: str, resource: str, value: Any) -> None:
        device = self.devices.get(device_id)
        if device is None or value is ABSENT:
            return
        info = device.resources.get(resource)
        if info is not None and info.fn == 2:
            device.inputs[resource] = value
        else:
            device.outputs[resource] = value
        self._async_notify(device_id, resource)

    @callback
    def _async_handle_device_connection(self, device_id: str, up: bool) -> None:
        device = self.devices.get(device_id)
        if device is None or not up:
            return
        if not device.stream_connected_once:
            device.stream_connected_once = True
            return
        self._async_request_refresh(device_id)

    @callback
    def _async_handle_events_connection(self, up: bool) -> None:
        if not up:
            self._async_set_server_available(False)
            return
        if not self._events_connected_once:
            self._events_connected_once = True
            if self.server_available:
                # The setup snapshot was taken before this subscription existed: a
                # device that went on- or offline in between told nobody. One list
                # request finds it (no describes).
                self._pending_presence = True
                self._refresh_event.set()
                return
        self._async_request_refresh()

    @callback
    def _async_handle_event(self, event: Mapping[str, Any]) -> None:
        if event.get("event") != "device_state_change":
            return
        device_id = event.get("device")
        if not isinstance(device_id, str):
            return
        online = event.get("state") in ONLINE_STATES
        device = self.devices.get(device_id)
        if device is None:
            if online and (self.all_devices or device_id in self.selected_devices):
                LOGGER.debug("New device %s on the server", device_id)
                self._async_request_refresh()
            return
        if online:
            self._async_request_refresh(device_id)
            return
        if device.connected:
            device.connected = False
            self._async_notify(device_id)

    # ------------------------------------------------------------- refreshing

    @callback
    def _async_request_refresh(self, device_id: str | None = None) -> None:
        """Queue a full snapshot (``None``) or one device's snapshot."""
        if device_id is None:
            self._pending_full = True
        else:
            self._pending_devices.add(device_id)
        self._refresh_event.set()

    async def _async_refresh_loop(self) -> None:
        """Run queued snapshots one at a time, retrying with backoff while they fail."""
        delay = SNAPSHOT_RETRY_MIN
        while True:
            await self._refresh_event.wait()
            self._refresh_event.clear()
            full, self._pending_full = self._pending_full, False
            devices, self._pending_devices = self._pending_devices, set()
            presence, self._pending_presence = self._pending_presence, False
            try:
                if full:
                    await self._async_full_snapshot()
                else:
                    if presence:
                        await self._async_presence_check()
                    for device_id in devices:
                        await self._async_device_snapshot(device_id)
            except api_errors.IotmpAuthError:
                self._async_auth_failed()
                return
            except api_errors.IotmpApiError as err:
                LOGGER.debug("Snapshot failed: %s", err)
                self._pending_full |= full
                self._pending_presence |= presence
                self._pending_devices |= devices
                if isinstance(err, api_errors.IotmpConnectionError):
                    # The server is unreachable: everything needs a fresh look.
                    self._pending_full = True
                    self._async_set_server_available(False)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, SNAPSHOT_RETRY_MAX)
                self._refresh_event.set()
                continue
            delay = SNAPSHOT_RETRY_MIN

    # ---------------------------------------------------------- availability

    @callback
    def _async_set_server_available(self, available: bool) -> None:
        if available == self.server_available or self.hass.is_stopping:
            return  # no burst of state writes while Home Assistant shuts down
        self.server_available = available
        url = self.server_label
        if available:
            LOGGER.info("Connection to IOTMP server %s restored", url)
        else:
            LOGGER.info("Lost connection to IOTMP server %s", url)
        if not self._stopping:
            self._async_notify_all()

    @callback
    def _async_auth_failed(self) -> None:
        if self._auth_failed or self._stopping:
            return
        self._auth_failed = True
        LOGGER.info(
            "IOTMP server %s rejected the credentials; re-authentication needed",
            self.server_label,
        )
        self.server_available = False
        self._async_notify_all()
        self.entry.async_start_reauth(self.hass)

    # ------------------------------------------------------------------ cache

    async def _async_save_cache(self) -> None:
        if self._cache_dirty:
            self._cache_dirty = False
            await self._store.async_save(self._cache)


MAX_MODEL_LENGTH: Final = 64


def device_model(record: DeviceRecord) -> str | None:
    """Model shown for a device: its type, else its (short) description, else None.

    Servers give every device the type "Generic" unless told otherwise, which says
    nothing; a short description ("ESP32 greenhouse node") says more.
    """
    if record.type and record.type.lower() != "generic":
        return record.type
    description = record.description.strip()
    if description and len(description) <= MAX_MODEL_LENGTH and "\n" not in description:
        return description
    return None


THINGER_CLOUD_API: Final = "api.thinger.io"
THINGER_CONSOLE: Final = "https://console.thinger.io"


def hub_configuration_url(url: str, server_version: str | None) -> str | None:
    """Return the server's web page for the hub's "Visit" link, None when it has none.

    The Thinger.io cloud's console is on its own host; a self-hosted Thinger.io server
    serves its console at the API's address; the iotmp server has no web page (its
    root answers 404), so it gets no link.
    """
    host = (URL(url).host or "").lower()
    if host == THINGER_CLOUD_API:
        return THINGER_CONSOLE
    if server_version is not None and server_version.startswith("iotmp"):
        return None
    return url


def _stream_backoff() -> Backoff:
    return Backoff(
        initial=STREAM_BACKOFF_INITIAL, factor=2.0, maximum=STREAM_BACKOFF_MAX, jitter=0.5
    )


def _info_to_cache(info: ResourceInfo) -> dict[str, Any]:
    item: dict[str, Any] = {"fn": info.fn}
    if info.sample_in is not ABSENT:
        item["in"] = info.sample_in
    if info.sample_out is not ABSENT:
        item["out"] = info.sample_out
    return item


def _info_from_cache(name: str, item: Mapping[str, Any]) -> ResourceInfo:
    return ResourceInfo(
        name=name,
        fn=int(item.get("fn", 0)),
        sample_in=item.get("in", ABSENT),
        sample_out=item.get("out", ABSENT),
        raw={"fn": item.get("fn", 0)},
    )


def _cache_shape(cached: Mapping[str, Any]) -> Any:
    return (
        cached.get("name"),
        cached.get("model"),
        {
            name: (item.get("fn"), _shape(item.get("in", ABSENT)), _shape(item.get("out", ABSENT)))
            for name, item in cached.get("resources", {}).items()
        },
    )


# ---------------------------------------------------------------- client setup


def create_client(hass: HomeAssistant, entry: IotmpConfigEntry) -> IotmpApiClient:
    """Build the API client: REST on Home Assistant's shared session, streams on their own.

    The shared session allows 100 connections per host, and the integration keeps
    one WebSocket per device open, so the streams get a session without that limit;
    it is closed when the entry unloads (or fails to set up).
    """
    verify_ssl = bool(entry.data.get(CONF_VERIFY_SSL, True))
    session = async_get_clientsession(hass, verify_ssl=verify_ssl)
    stream_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            ssl=ssl_util.get_default_context()
            if verify_ssl
            else ssl_util.get_default_no_verify_context(),
        )
    )
    entry.async_on_unload(stream_session.close)
    refresher: Callable[[], Awaitable[str]] | None = None
    if entry.data.get(CONF_AUTH_METHOD) == AUTH_PASSWORD and entry.data.get(CONF_REFRESH_TOKEN):
        refresher = TokenRefresher(hass, entry).async_refresh
    return IotmpApiClient(
        session,
        entry.data[CONF_URL],
        entry.data[CONF_TOKEN],
        verify_ssl=verify_ssl,
        token_refresher=refresher,
        stream_session=stream_session,
    )


class TokenRefresher:
    """Refresh a password login's session token, storing the rotated tokens in the entry.

    The client calls it on a 401 and never concurrently (a refresh token works once).
    """

    def __init__(self, hass: HomeAssistant, entry: IotmpConfigEntry) -> None:
        """Remember the entry whose tokens are refreshed."""
        self._hass = hass
        self._entry = entry

    async def async_refresh(self) -> str:
        """Return a fresh access token; IotmpAuthError when the refresh token is refused."""
        data = self._entry.data
        verify_ssl = bool(data.get(CONF_VERIFY_SSL, True))
        tokens = await IotmpApiClient.refresh_login(
            async_get_clientsession(self._hass, verify_ssl=verify_ssl),
            data[CONF_URL],
            data[CONF_REFRESH_TOKEN],
            verify_ssl=verify_ssl,
        )
        self._hass.config_entries.async_update_entry(
            self._entry,
            data={
                **data,
                CONF_TOKEN: tokens.access_token,
                CONF_REFRESH_TOKEN: tokens.refresh_token or data[CONF_REFRESH_TOKEN],
                CONF_EXPIRES_AT: tokens.expires_at,
            },
        )
        LOGGER.debug("Refreshed the session token")
        return tokens.access_token
