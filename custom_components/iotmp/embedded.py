"""An IOTMP server running inside Home Assistant (the "run a server here" entry).

:class:`EmbeddedServer` runs :class:`iotmp.server.IotmpServer` in Home Assistant's event
loop, with its device list and credentials in a Home Assistant ``Store`` and its
certificate under the configuration directory (made and loaded in the executor).
:class:`EmbeddedApiClient` gives the connection manager the methods it uses on
:class:`iotmp.client.IotmpApiClient`, answered in process by
:class:`iotmp.server.embedded.LocalAccess` instead of over REST, so remote and embedded
devices go through the same manager and mapping rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.http import KEY_HASS, HomeAssistantView
from homeassistant.helpers.storage import Store

from iotmp.client import (
    DeviceRecord,
    ResourceInfo,
)
from iotmp.client import errors as api_errors
from iotmp.client.models import flatten_resources
from iotmp.protocol.message import ABSENT
from iotmp.protocol.transport import WEBSOCKET_PATH, server_ssl_context
from iotmp.server import DeviceConfig, IotmpServer, ServerConfig, UserConfig
from iotmp.server.certs import make_self_signed
from iotmp.server.embedded import (
    ApiError,
    LocalAccess,
    remove_device,
    replace_device,
    watch_refusals,
)
from iotmp.server.streams import Subscription

from .const import (
    CONF_HOST,
    CONF_TCP_PORT,
    CONF_TLS_CERT,
    CONF_TLS_KEY,
    CONF_TLS_PORT,
    DOMAIN,
    EMBEDDED_USER,
    LOGGER,
)

STORE_VERSION: Final = 1
REFUSAL_LOG_INTERVAL: Final = 60.0
"""Seconds between two log lines (and repair updates) about one refused device id."""
MAX_REFUSAL_TRACKED: Final = 1024
"""Device ids whose last refusal time is remembered (a flood of made-up ids stays bounded)."""
CREDENTIAL_BYTES: Final = 18
SAMPLE_CONCURRENCY: Final = 8
ISSUE_REFUSED: Final = "device_refused"
_UNSAFE_ID_CHARS: Final = re.compile(r"[^A-Za-z0-9_.@-]")


def new_credential() -> str:
    """Make a fresh device credential (24 URL-safe characters)."""
    return secrets.token_urlsafe(CREDENTIAL_BYTES)


@dataclass(slots=True)
class EmbeddedDevice:
    """A device the embedded server accepts (as stored)."""

    device_id: str
    name: str
    credential: str = field(repr=False)


def _error(err: ApiError, what: str) -> api_errors.IotmpApiError:
    """Return the client exception the REST client raises for the same status."""
    text = f"{what} failed with status {err.status}: {err.message}"
    kwargs: dict[str, Any] = {"status": err.status, "server_message": err.message}
    if err.status == 401:
        return api_errors.IotmpAuthError(text, **kwargs)
    if err.status == 403:
        return api_errors.IotmpForbiddenError(text, **kwargs)
    if err.status == 404:
        offline = "not connected" in err.message
        missing = "not found" in err.message
        return api_errors.IotmpNotFoundError(
            text, device_offline=True if offline else (False if missing else None), **kwargs
        )
    if err.status == 504:
        return api_errors.IotmpDeviceTimeoutError(text, **kwargs)
    if 400 <= err.status < 500:
        return api_errors.IotmpRequestError(text, **kwargs)
    return api_errors.IotmpConnectionError(text, **kwargs)


class EmbeddedServer:
    """The IOTMP server of one config entry: storage, certificate, listeners, refusals."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
        """Nothing runs until :meth:`async_start`."""
        self.hass = hass
        self.entry = entry
        self._store: Store[dict[str, Any]] = Store(
            hass, STORE_VERSION, f"{DOMAIN}.{entry.entry_id}.server", private=True
        )
        self._secret = ""
        self.devices: dict[str, EmbeddedDevice] = {}
        self.server: IotmpServer | None = None
        self.access: LocalAccess | None = None
        self._refused_at: OrderedDict[str, float] = OrderedDict()
        self.refused_total = 0
        self._issue_device: str | None = None
        self.tls_error: str | None = None

    # ---------------------------------------------------------------- storage

    async def _async_load(self) -> None:
        data = await self._store.async_load() or {}
        self._secret = str(data.get("secret") or secrets.token_urlsafe(32))
        self.devices = {}
        for item in data.get("devices", []):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                device = EmbeddedDevice(
                    item["id"], str(item.get("name") or item["id"]), str(item["credential"])
                )
                self.devices[device.device_id] = device
        if not data:
            await self._async_save()

    async def _async_save(self) -> None:
        await self._store.async_save(
            {
                "secret": self._secret,
                "devices": [
                    {"id": d.device_id, "name": d.name, "credential": d.credential}
                    for d in self.devices.values()
                ],
            }
        )

    # -------------------------------------------------------------- lifecycle

    def _device_config(self, device: EmbeddedDevice) -> DeviceConfig:
        return DeviceConfig(
            id=device.device_id,
            user=EMBEDDED_USER,
            credential=device.credential,
            name=device.name,
        )

    def _certificate_paths(self) -> tuple[str, str] | None:
        """Certificate and key the TLS listener uses (None: no TLS listener)."""
        data = self.entry.data
        if data.get(CONF_TLS_PORT) is None:
            return None
        cert, key = data.get(CONF_TLS_CERT), data.get(CONF_TLS_KEY)
        if cert and key:
            return str(cert), str(key)
        folder = Path(self.hass.config.path(DOMAIN, self.entry.entry_id))
        return str(folder / "server.crt"), str(folder / "server.key")

    def _prepare_tls(self, cert: str, key: str) -> ssl.SSLContext:
        """Make the certificate on first start, then load it (runs in the executor)."""
        data = self.entry.data
        if not (data.get(CONF_TLS_CERT) and data.get(CONF_TLS_KEY)) and not (
            Path(cert).exists() and Path(key).exists()
        ):
            make_self_signed(cert, key, hosts=("homeassistant.local", "127.0.0.1"))
        return server_ssl_context(cert, key)

    async def async_start(self) -> None:
        """Load the devices, prepare TLS in the executor, bind the listeners.

        Raises ``OSError`` when a port cannot be bound.
        """
        await self._async_load()
        data = self.entry.data
        paths = self._certificate_paths()
        context: ssl.SSLContext | None = None
        if paths is not None:
            try:
                context = await self.hass.async_add_executor_job(self._prepare_tls, *paths)
            except (OSError, ssl.SSLError, ValueError) as err:
                # Devices on plain TCP still work; the diagnostics say why TLS is off.
                self.tls_error = str(err) or type(err).__name__
                LOGGER.warning("IOTMP server TLS listener disabled: %s", self.tls_error)
                paths = None
        config = ServerConfig(
            host=str(data.get(CONF_HOST) or "0.0.0.0"),
            http_port=None,
            tcp_port=data.get(CONF_TCP_PORT),
            tls_port=data.get(CONF_TLS_PORT) if paths is not None else None,
            tls_cert=paths[0] if paths is not None else None,
            tls_key=paths[1] if paths is not None else None,
            secret=self._secret,
            server_name="Home Assistant",
            # The server's database lives with Home Assistant's own storage.
            data_dir=self.hass.config.path(".storage", f"{DOMAIN}_{self.entry.entry_id}"),
            users=(UserConfig(EMBEDDED_USER),),
            devices=tuple(self._device_config(d) for d in self.devices.values()),
        )
        server = IotmpServer(config)
        server.gateway.ssl_context = context
        watch_refusals(server.registry, self._on_refused)
        server.registry.add_listener(self._on_state)
        await server.start()
        self.server = server
        self.access = LocalAccess(server, EMBEDDED_USER)

    async def async_stop(self) -> None:
        """Stop the listeners and close every device connection."""
        server, self.server = self.server, None
        if server is not None:
            await server.stop()
        ir.async_delete_issue(self.hass, DOMAIN, f"{ISSUE_REFUSED}_{self.entry.entry_id}")

    def listener_state(self) -> dict[str, Any]:
        """Return what the diagnostics show: bound ports, devices online, refusals (no secrets)."""
        server = self.server
        return {
            "running": server is not None and server.running,
            "host": self.entry.data.get(CONF_HOST),
            "tcp_port": server.tcp_port if server is not None else None,
            "tls_port": server.tls_port if server is not None else None,
            "tls_error": self.tls_error,
            "devices": sorted(self.devices),
            "online": sorted(server.devices_online()) if server is not None else [],
            "refused_logins": self.refused_total,
        }

    # ---------------------------------------------------------------- devices

    async def async_add_device(
        self, device_id: str, name: str, credential: str | None = None
    ) -> str:
        """Accept a new device; returns its credential (generated unless given)."""
        device = EmbeddedDevice(device_id, name or device_id, credential or new_credential())
        return await self._async_put(device)

    async def async_regenerate(self, device_id: str) -> str:
        """Give a device a new credential (its current connection is closed)."""
        old = self.devices[device_id]
        return await self._async_put(EmbeddedDevice(device_id, old.name, new_credential()))

    async def _async_put(self, device: EmbeddedDevice) -> str:
        assert self.server is not None
        # Validates the id (ValueError) before anything is stored.
        await replace_device(self.server, self._device_config(device))
        self.devices[device.device_id] = device
        await self._async_save()
        return device.credential

    async def async_remove_device(self, device_id: str) -> None:
        """Forget a device and close its connection."""
        self.devices.pop(device_id, None)
        await self._async_save()
        if self.server is not None:
            await remove_device(self.server, device_id)

    # --------------------------------------------------------------- refusals

    @callback
    def _on_state(self, state: Any, connected: bool) -> None:
        """Drop the repair issue once the device it names gets in."""
        if connected and state.id == self._issue_device:
            self._issue_device = None
            ir.async_delete_issue(self.hass, DOMAIN, f"{ISSUE_REFUSED}_{self.entry.entry_id}")

    @callback
    def _on_refused(self, device_id: str) -> None:
        """Log (and raise a repair issue) at most once a minute per device id."""
        self.refused_total += 1
        now = time.monotonic()
        last = self._refused_at.get(device_id)
        if last is not None and now - last < REFUSAL_LOG_INTERVAL:
            return
        self._refused_at[device_id] = now
        self._refused_at.move_to_end(device_id)
        while len(self._refused_at) > MAX_REFUSAL_TRACKED:
            self._refused_at.popitem(last=False)
        known = device_id in self.devices
        # Any text can arrive as an id: show only id characters (no markup in the issue).
        shown = _UNSAFE_ID_CHARS.sub("?", device_id[:64])
        LOGGER.warning(
            "IOTMP device %r was refused: %s",
            shown,
            "wrong credential" if known else "not a device of this server",
        )
        self._issue_device = device_id
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            f"{ISSUE_REFUSED}_{self.entry.entry_id}",
            is_fixable=False,
            is_persistent=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=ISSUE_REFUSED,
            translation_placeholders={"device": shown},
        )


class EmbeddedApiClient:
    """The part of :class:`iotmp.client.IotmpApiClient` the manager uses, in process."""

    def __init__(self, access: LocalAccess) -> None:
        """Serve the devices of ``access.user``."""
        self._access = access

    @property
    def base_url(self) -> str:
        """A name for log lines (there is no URL)."""
        return "embedded IOTMP server"

    @property
    def user(self) -> str:
        """The account the devices belong to."""
        return self._access.user

    async def server_version(self) -> str | None:
        """Return the server's version string."""
        return self._access.version

    async def list_properties(self, device_id: str) -> list[dict[str, Any]]:
        """Return a device's property objects, as ``GET .../properties`` answers them."""
        return await self._access.properties(device_id)

    async def list_devices(self) -> list[DeviceRecord]:
        """Every device the server accepts, with its connection state."""
        return [DeviceRecord.from_json(record) for record in self._access.records()]

    async def get_resources(self, device_id: str) -> dict[str, ResourceInfo]:
        """Resources of a connected device with their samples (as the REST client gives)."""
        try:
            description = await self._access.describe(device_id)
        except ApiError as err:
            raise _error(err, f"describe {device_id}") from None
        entries = flatten_resources(description)
        semaphore = asyncio.Semaphore(SAMPLE_CONCURRENCY)

        async def sample(name: str) -> dict[str, Any]:
            async with semaphore:
                try:
                    return await self._access.sample(device_id, name)
                except ApiError as err:
                    LOGGER.debug("No sample for %s/%s: %s", device_id, name, err.message)
                    return {}

        samples = await asyncio.gather(*(sample(name) for name in entries))
        return {
            name: ResourceInfo(
                name=name,
                fn=entry["fn"],
                sample_in=got.get("in", ABSENT),
                sample_out=got.get("out", ABSENT),
                raw=entry,
            )
            for (name, entry), got in zip(entries.items(), samples, strict=True)
        }

    async def get_resource_sample(self, device_id: str, resource: str) -> dict[str, Any]:
        """Return the resource's current ``{"in"?, "out"?}`` sample."""
        try:
            return await self._access.sample(device_id, resource)
        except ApiError as err:
            raise _error(err, f"sample {device_id}/{resource}") from None

    async def write(self, device_id: str, resource: str, value: Any = ABSENT) -> Any:
        """Run a resource with ``value``; its output, or None."""
        try:
            return await self._access.write(device_id, resource, value)
        except ApiError as err:
            raise _error(err, f"write {device_id}/{resource}") from None

    def resource_stream(
        self,
        device_id: str,
        on_data: Callable[[str, Any], None],
        on_connection: Callable[[bool], None],
        **_kwargs: Any,
    ) -> EmbeddedResourceStream:
        """Make a live-value stream of one device (nothing to reconnect in process)."""
        return EmbeddedResourceStream(self._access, device_id, on_data, on_connection)

    def event_stream(
        self,
        on_event: Callable[[dict[str, Any]], None],
        on_connection: Callable[[bool], None],
        **_kwargs: Any,
    ) -> EmbeddedEventStream:
        """Device connect/disconnect events, shaped as the REST event stream's frames."""
        return EmbeddedEventStream(self._access, on_event, on_connection)


class _LocalStream:
    """``run()`` reports the stream up and waits for ``close()``."""

    def __init__(self, on_connection: Callable[[bool], None]) -> None:
        self._on_connection = on_connection
        self._closed = asyncio.Event()

    @property
    def connected(self) -> bool:
        return not self._closed.is_set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _open(self) -> None:
        """Start delivering (subclasses)."""

    def _shut(self) -> None:
        """Stop delivering (subclasses)."""

    async def run(self) -> None:
        if self._closed.is_set():
            return
        self._open()
        self._on_connection(True)
        try:
            await self._closed.wait()
        finally:
            self._shut()

    async def close(self) -> None:
        self._closed.set()
        self._shut()


class EmbeddedResourceStream(_LocalStream):
    """Subscriptions to one device's resources on the server's stream hub."""

    def __init__(
        self,
        access: LocalAccess,
        device_id: str,
        on_data: Callable[[str, Any], None],
        on_connection: Callable[[bool], None],
    ) -> None:
        super().__init__(on_connection)
        self._access = access
        self._device_id = device_id
        self._on_data = on_data
        self._subs: dict[str, Subscription] = {}

    @property
    def device_id(self) -> str:
        """The device this stream is for."""
        return self._device_id

    @property
    def subscriptions(self) -> dict[str, float]:
        """Current subscriptions: resource -> interval (s)."""
        return {name: sub.interval for name, sub in self._subs.items()}

    def subscribe(self, resource: str, interval: float = 0) -> None:
        """Stream ``resource`` every ``interval`` s (0: pushes and echoes only)."""
        if self.closed:
            return
        old = self._subs.pop(resource, None)
        if old is not None:
            self._access.unsubscribe(old)
        try:
            self._subs[resource] = self._access.subscribe(
                self._device_id, resource, interval, self._deliver
            )
        except ApiError as err:
            LOGGER.debug("Cannot stream %s/%s: %s", self._device_id, resource, err.message)

    def unsubscribe(self, resource: str) -> None:
        """Stop streaming ``resource``."""
        sub = self._subs.pop(resource, None)
        if sub is not None:
            self._access.unsubscribe(sub)

    def _deliver(self, resource: str, value: Any) -> None:
        if not self.closed:
            self._on_data(resource, value)

    def _shut(self) -> None:
        for resource in list(self._subs):
            self.unsubscribe(resource)


class EmbeddedEventStream(_LocalStream):
    """``device_state_change`` events from the server's registry."""

    def __init__(
        self,
        access: LocalAccess,
        on_event: Callable[[dict[str, Any]], None],
        on_connection: Callable[[bool], None],
    ) -> None:
        super().__init__(on_connection)
        self._access = access
        self._on_event = on_event
        self._remove: Callable[[], None] | None = None

    def _open(self) -> None:
        self._remove = self._access.add_state_listener(self._changed)

    def _changed(self, device_id: str, connected: bool) -> None:
        if not self.closed:
            self._on_event(
                {
                    "event": "device_state_change",
                    "device": device_id,
                    "state": "connected" if connected else "disconnected",
                }
            )

    def _shut(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None


DATA_DEVICE_VIEW: Final = f"{DOMAIN}_device_websocket"
"""hass.data key: the embedded server the ``/iotmp`` view hands devices to (or None)."""


class DeviceWebSocketView(HomeAssistantView):
    """Devices over WebSocket on Home Assistant's own HTTP port (``/iotmp``).

    Registered once per Home Assistant (views cannot be removed); it answers 404 while
    no embedded server runs. Devices authenticate with IOTMP CONNECT, not HA's auth.
    """

    url = WEBSOCKET_PATH
    name = "api:iotmp:device"
    requires_auth = False

    async def get(self, request: web.Request) -> web.StreamResponse:
        """Hand the connection to the embedded server's device gateway."""
        hass: HomeAssistant = request.app[KEY_HASS]
        embedded: EmbeddedServer | None = hass.data.get(DATA_DEVICE_VIEW)
        if embedded is None or embedded.server is None:
            return web.Response(status=404)
        return await embedded.server.gateway.websocket(request)


@callback
def _async_serve_on_http_port(hass: HomeAssistant, embedded: EmbeddedServer) -> None:
    """Let devices reach the server through Home Assistant's HTTP port too."""
    http = getattr(hass, "http", None)
    if http is None:
        return  # HTTP not loaded (tests, minimal setups): TCP/TLS only
    if DATA_DEVICE_VIEW not in hass.data:
        http.register_view(DeviceWebSocketView())
    hass.data[DATA_DEVICE_VIEW] = embedded

    @callback
    def _detach() -> None:
        if hass.data.get(DATA_DEVICE_VIEW) is embedded:
            hass.data[DATA_DEVICE_VIEW] = None

    embedded.entry.async_on_unload(_detach)


async def async_start_embedded(
    hass: HomeAssistant, entry: ConfigEntry[Any]
) -> tuple[EmbeddedServer, EmbeddedApiClient]:
    """Start the entry's server; ``ConfigEntryNotReady`` when a port is taken."""
    server = EmbeddedServer(hass, entry)
    try:
        await server.async_start()
    except OSError as err:
        await server.async_stop()
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="listen_failed",
            translation_placeholders={"error": str(err) or type(err).__name__},
        ) from err
    assert server.access is not None
    _async_serve_on_http_port(hass, server)
    return server, EmbeddedApiClient(server.access)


async def async_remove_embedded_data(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """Delete a removed entry's device list and generated certificate."""
    await Store[Any](hass, STORE_VERSION, f"{DOMAIN}.{entry.entry_id}.server").async_remove()
    folder = Path(hass.config.path(DOMAIN, entry.entry_id))

    def _remove() -> None:
        for name in ("server.crt", "server.key"):
            (folder / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()

    await hass.async_add_executor_job(_remove)
