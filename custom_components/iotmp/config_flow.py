"""Config flow for iotmp: server + credentials, device selection, reauth, reconfigure, options."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import voluptuous as vol
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import (
    CONF_PASSWORD,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VERIFY_SSL,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.network import NoURLAvailableError, get_url
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from yarl import URL

from iotmp.client import (
    DeviceRecord,
    IotmpApiClient,
    IotmpApiError,
    IotmpAuthError,
    IotmpConnectionError,
    IotmpForbiddenError,
    normalize_base_url,
)
from iotmp.ha_mapping import (
    ResourceOverride,
    device_classes_for,
    map_resource,
    map_resource_with_notes,
    prettify,
    valid_platforms,
)
from iotmp.server.config import DEVICE_ID_RE

from .const import (
    AUTH_PASSWORD,
    AUTH_TOKEN,
    CONF_ACCOUNT,
    CONF_ALL_DEVICES,
    CONF_AUTH_METHOD,
    CONF_DEVICE_CLASS,
    CONF_DEVICE_INTERVALS,
    CONF_DEVICES,
    CONF_EXPIRES_AT,
    CONF_HOST,
    CONF_MODE,
    CONF_NUMBER_MAX,
    CONF_NUMBER_MIN,
    CONF_NUMBER_MODE,
    CONF_NUMBER_STEP,
    CONF_OVERRIDES,
    CONF_PLATFORM,
    CONF_REFRESH_TOKEN,
    CONF_TCP_PORT,
    CONF_TLS_CERT,
    CONF_TLS_KEY,
    CONF_TLS_PORT,
    CONF_UNIT,
    CONF_UPDATE_INTERVAL,
    DEFAULT_EMBEDDED_HOST,
    DEFAULT_TCP_PORT,
    DEFAULT_TLS_PORT,
    DEFAULT_UPDATE_INTERVAL,
    DEFAULT_URL,
    DOMAIN,
    EMBEDDED_UNIQUE_ID,
    EMBEDDED_USER,
    LOGGER,
    MAX_UPDATE_INTERVAL,
    MIN_UPDATE_INTERVAL,
    MODE_EMBEDDED,
)
from .coordinator import IotmpConfigEntry, IotmpManager
from .embedded import EmbeddedServer

CONF_DEVICE = "device"
CONF_DEVICE_ID = "device_id"
CONF_NAME = "name"
CONF_TLS = "tls"
CONF_INTERVAL = "interval"
CONF_RESOURCE = "resource"
PLATFORM_AUTO = "auto"

_URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
_SECRET_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_TEXT_SELECTOR = TextSelector()
_INTERVAL_SELECTOR = NumberSelector(
    NumberSelectorConfig(
        min=MIN_UPDATE_INTERVAL,
        max=MAX_UPDATE_INTERVAL,
        step=1,
        mode=NumberSelectorMode.BOX,
        unit_of_measurement="s",
    )
)

TOKEN_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_URL, default=DEFAULT_URL): _URL_SELECTOR,
        vol.Required(CONF_TOKEN): _SECRET_SELECTOR,
        vol.Required(CONF_VERIFY_SSL, default=True): BooleanSelector(),
    }
)
PASSWORD_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_URL, default=DEFAULT_URL): _URL_SELECTOR,
        vol.Required(CONF_USERNAME): _TEXT_SELECTOR,
        vol.Required(CONF_PASSWORD): _SECRET_SELECTOR,
        vol.Required(CONF_VERIFY_SSL, default=True): BooleanSelector(),
    }
)
RECONFIGURE_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_URL): _URL_SELECTOR,
        vol.Required(CONF_VERIFY_SSL): BooleanSelector(),
    }
)


_ANY_NUMBER_SELECTOR = NumberSelector(NumberSelectorConfig(mode=NumberSelectorMode.BOX, step="any"))
_PORT_SELECTOR = NumberSelector(
    NumberSelectorConfig(min=1, max=65535, step=1, mode=NumberSelectorMode.BOX)
)
EMBEDDED_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_HOST, default=DEFAULT_EMBEDDED_HOST): _TEXT_SELECTOR,
        vol.Required(CONF_TCP_PORT, default=DEFAULT_TCP_PORT): _PORT_SELECTOR,
        vol.Required(CONF_TLS, default=True): BooleanSelector(),
        vol.Required(CONF_TLS_PORT, default=DEFAULT_TLS_PORT): _PORT_SELECTOR,
        vol.Optional(CONF_TLS_CERT): _TEXT_SELECTOR,
        vol.Optional(CONF_TLS_KEY): _TEXT_SELECTOR,
    }
)


async def embedded_entry_data(
    hass: HomeAssistant, user_input: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Entry data of an embedded server from the form, or the form's errors."""
    host = str(user_input.get(CONF_HOST) or "").strip()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None, {CONF_HOST: "invalid_host"}
    tls = bool(user_input.get(CONF_TLS))
    tcp_port = int(user_input[CONF_TCP_PORT])
    tls_port = int(user_input[CONF_TLS_PORT]) if tls else None
    if tls_port is not None and tls_port == tcp_port:
        return None, {CONF_TLS_PORT: "same_port"}
    cert = str(user_input.get(CONF_TLS_CERT) or "").strip() or None
    key = str(user_input.get(CONF_TLS_KEY) or "").strip() or None
    if tls and (cert is None) != (key is None):
        return None, {"base": "cert_and_key"}
    if tls and cert is not None and key is not None:
        paths = (hass.config.path(cert), hass.config.path(key))
        if not await hass.async_add_executor_job(_files_exist, paths):
            return None, {"base": "cert_not_found"}
        cert, key = paths
    data = {
        CONF_MODE: MODE_EMBEDDED,
        CONF_HOST: host,
        CONF_TCP_PORT: tcp_port,
        CONF_TLS_PORT: tls_port,
        CONF_TLS_CERT: cert if tls else None,
        CONF_TLS_KEY: key if tls else None,
    }
    return data, {}


def firmware_host(hass: HomeAssistant, data: Mapping[str, Any]) -> tuple[str, int]:
    """Address and port a device on the LAN uses to reach the embedded server."""
    host = str(data.get(CONF_HOST) or DEFAULT_EMBEDDED_HOST)
    if host in ("0.0.0.0", "::"):
        try:
            host = URL(get_url(hass, allow_external=False, allow_cloud=False)).host or host
        except NoURLAvailableError:
            host = "homeassistant.local"
    return host, int(data.get(CONF_TCP_PORT) or DEFAULT_TCP_PORT)


def firmware_lines(device_id: str, credential: str, host: str, port: int) -> str:
    """Return the IOTMP-Arduino lines (ESP32 here) that connect a device to the embedded server."""
    return (
        "#include <thinger/iotmp/arduino/ThingerESP32.h>\n"
        f'thinger::iotmp::ThingerESP32 thing("{EMBEDDED_USER}", "{device_id}", "{credential}");\n'
        f'// in setup(): thing.set_host("{host}", {port});'
    )


def _override_options(
    device_id: str, device_name: str, resource: str, info: Any
) -> list[SelectOptionDict]:
    """Picker entries of one resource: the whole resource, then each of its values.

    Labels are the entity names a user sees (not raw resource ids).
    """
    specs = map_resource(info)
    if not valid_platforms(info) or not specs:
        return []
    if len(specs) == 1:
        return [
            SelectOptionDict(
                value=json.dumps([device_id, resource]), label=f"{device_name}: {specs[0].name}"
            )
        ]
    options = [
        SelectOptionDict(
            value=json.dumps([device_id, resource]),
            label=f"{device_name}: {prettify(resource) or resource} (every value)",
        )
    ]
    options += [
        SelectOptionDict(
            value=json.dumps([device_id, resource, spec.key]), label=f"{device_name}: {spec.name}"
        )
        for spec in specs
        if valid_platforms(info, spec.key)
    ]
    return options


def _value_label(info: Any, key: str) -> str:
    """Friendly name of a resource or of one of its values."""
    for spec in map_resource(info):
        if spec.key == key:
            return spec.name
    return prettify(key) or key


def _files_exist(paths: tuple[str, ...]) -> bool:
    return all(Path(path).is_file() for path in paths)


# hassfest forbids URLs inside translation strings; the examples come in as placeholders.
URL_EXAMPLES: Final = {"cloud_url": DEFAULT_URL, "local_url": "http://192.168.1.10:25280"}


class FlowError(Exception):
    """A form error (its message is the translation key under ``error``)."""


def entry_unique_id(url: str, account: str) -> str:
    """Return the unique id of an entry: server host (with explicit port) and account."""
    parsed = URL(url)
    host = (parsed.host or "").lower()
    if parsed.explicit_port is not None:
        host = f"{host}:{parsed.explicit_port}"
    return f"{host}:{account}"


def _normalize_url(url: str) -> str:
    try:
        return normalize_base_url(url)
    except ValueError as err:
        raise FlowError("invalid_url") from err


async def _async_list_devices(client: IotmpApiClient) -> list[DeviceRecord]:
    """List the account's devices, mapping failures to form errors."""
    try:
        return await client.list_devices()
    except IotmpAuthError as err:
        raise FlowError("invalid_auth") from err
    except IotmpForbiddenError as err:
        raise FlowError("forbidden") from err
    except IotmpConnectionError as err:
        LOGGER.debug("Cannot connect: %s", err)
        raise FlowError("cannot_connect") from err
    except IotmpApiError as err:
        LOGGER.debug("Unexpected answer from the server: %s", err)
        raise FlowError("cannot_connect") from err


def _device_options(devices: list[DeviceRecord]) -> list[SelectOptionDict]:
    return [
        SelectOptionDict(
            value=device.device_id,
            label=(
                f"{device.name or device.device_id} ({device.device_id}) · "
                f"{'online' if device.connected else 'offline'}"
            ),
        )
        for device in sorted(devices, key=lambda d: (d.name or d.device_id).lower())
    ]


def _devices_schema(
    devices: list[DeviceRecord], all_devices: bool, selected: list[str]
) -> vol.Schema:
    known = {device.device_id for device in devices}
    options = _device_options(devices)
    # Keep chosen devices the server no longer lists visible, so they can be unticked.
    options += [
        SelectOptionDict(value=device_id, label=f"{device_id} · not on the server")
        for device_id in selected
        if device_id not in known
    ]
    # With "All devices" on every device is in: ticked boxes say so (empty ones read as
    # "none selected"), and turning the switch off starts from all of them.
    ticked = [device.device_id for device in devices] if all_devices else selected
    return vol.Schema(
        {
            vol.Required(CONF_ALL_DEVICES, default=all_devices): BooleanSelector(),
            vol.Optional(CONF_DEVICES, default=ticked): SelectSelector(
                SelectSelectorConfig(options=options, multiple=True, mode=SelectSelectorMode.LIST)
            ),
        }
    )


class IotmpConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add an IOTMP server account."""

    VERSION = 1
    MINOR_VERSION = 1

    def __init__(self) -> None:
        """Start with nothing known."""
        self._data: dict[str, Any] = {}
        self._devices: list[DeviceRecord] = []

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> IotmpOptionsFlow:
        """Options: device selection, intervals and per-resource overrides."""
        return IotmpOptionsFlow()

    # ---------------------------------------------------------------- helpers

    async def _async_connect(
        self,
        url: str,
        verify_ssl: bool,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> tuple[dict[str, Any], list[DeviceRecord]]:
        """Log in (password) or check the token, then list the devices.

        Returns the entry data (url, TLS switch, credentials, account) and the devices.
        """
        url = _normalize_url(url)
        session = async_get_clientsession(self.hass, verify_ssl=verify_ssl)
        data: dict[str, Any] = {CONF_URL: url, CONF_VERIFY_SSL: verify_ssl}
        try:
            if token is None:
                assert username is not None
                assert password is not None
                tokens = await IotmpApiClient.password_login(
                    session, url, username, password, verify_ssl=verify_ssl
                )
                data |= {
                    CONF_AUTH_METHOD: AUTH_PASSWORD,
                    CONF_USERNAME: username,
                    CONF_TOKEN: tokens.access_token,
                    CONF_REFRESH_TOKEN: tokens.refresh_token,
                    CONF_EXPIRES_AT: tokens.expires_at,
                }
                token = tokens.access_token
            else:
                data |= {CONF_AUTH_METHOD: AUTH_TOKEN, CONF_TOKEN: token}
            account = IotmpApiClient.token_user(token)
        except IotmpAuthError as err:
            raise FlowError("invalid_auth") from err
        except IotmpConnectionError as err:
            LOGGER.debug("Cannot connect: %s", err)
            raise FlowError("cannot_connect") from err
        except IotmpApiError as err:
            LOGGER.debug("Login failed: %s", err)
            raise FlowError("cannot_connect") from err
        client = IotmpApiClient(session, url, token, verify_ssl=verify_ssl)
        devices = await _async_list_devices(client)
        data[CONF_ACCOUNT] = account
        return data, devices

    async def _async_try(
        self, **kwargs: Any
    ) -> tuple[dict[str, Any] | None, list[DeviceRecord], dict[str, str]]:
        """:meth:`_async_connect` with errors turned into form errors."""
        try:
            data, devices = await self._async_connect(**kwargs)
        except FlowError as err:
            return None, [], {"base": str(err)}
        except Exception:
            LOGGER.exception("Unexpected error while connecting to the server")
            return None, [], {"base": "unknown"}
        return data, devices, {}

    @callback
    def _async_update_and_reload(
        self, entry: ConfigEntry, data: Mapping[str, Any], reason: str
    ) -> ConfigFlowResult:
        """Store new data, reload the entry and finish (works on every HA version)."""
        self.hass.config_entries.async_update_entry(entry, data={**entry.data, **data})
        self.hass.config_entries.async_schedule_reload(entry.entry_id)
        return self.async_abort(reason=reason)

    # --------------------------------------------------------------- user flow

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose how to sign in: an access token or username and password."""
        return self.async_show_menu(step_id="user", menu_options=["token", "password", "embedded"])

    async def async_step_embedded(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Run an IOTMP server inside Home Assistant: address, ports and certificate."""
        await self.async_set_unique_id(EMBEDDED_UNIQUE_ID)
        self._abort_if_unique_id_configured()
        errors: dict[str, str] = {}
        if user_input is not None:
            data, errors = await embedded_entry_data(self.hass, user_input)
            if data is not None:
                return self.async_create_entry(
                    title="IOTMP server in Home Assistant",
                    data=data,
                    options={
                        CONF_ALL_DEVICES: True,
                        CONF_DEVICES: [],
                        CONF_UPDATE_INTERVAL: DEFAULT_UPDATE_INTERVAL,
                    },
                )
        return self.async_show_form(
            step_id="embedded",
            data_schema=self.add_suggested_values_to_schema(EMBEDDED_SCHEMA, user_input),
            errors=errors,
        )

    async def async_step_token(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Server URL, access token and TLS switch."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data, devices, errors = await self._async_try(
                url=user_input[CONF_URL],
                verify_ssl=user_input[CONF_VERIFY_SSL],
                token=user_input[CONF_TOKEN].strip(),
            )
            if data is not None:
                return await self._async_account_found(data, devices)
        return self.async_show_form(
            step_id="token",
            data_schema=self.add_suggested_values_to_schema(TOKEN_SCHEMA, user_input),
            errors=errors,
            description_placeholders=URL_EXAMPLES,
        )

    async def async_step_password(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Server URL, username and password (the session token is refreshed later)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data, devices, errors = await self._async_try(
                url=user_input[CONF_URL],
                verify_ssl=user_input[CONF_VERIFY_SSL],
                username=user_input[CONF_USERNAME],
                password=user_input[CONF_PASSWORD],
            )
            if data is not None:
                return await self._async_account_found(data, devices)
        suggested = (
            {k: v for k, v in user_input.items() if k != CONF_PASSWORD} if user_input else None
        )
        return self.async_show_form(
            step_id="password",
            data_schema=self.add_suggested_values_to_schema(PASSWORD_SCHEMA, suggested),
            errors=errors,
            description_placeholders=URL_EXAMPLES,
        )

    async def _async_account_found(
        self, data: dict[str, Any], devices: list[DeviceRecord]
    ) -> ConfigFlowResult:
        await self.async_set_unique_id(entry_unique_id(data[CONF_URL], data[CONF_ACCOUNT]))
        self._abort_if_unique_id_configured()
        self._data = data
        self._devices = devices
        return await self.async_step_devices()

    async def async_step_devices(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick all devices (including later ones) or some of them."""
        errors: dict[str, str] = {}
        if user_input is not None:
            all_devices = bool(user_input[CONF_ALL_DEVICES])
            selected = list(user_input.get(CONF_DEVICES, []))
            if not all_devices and not selected:
                errors["base"] = "no_devices_selected"
            else:
                host = URL(self._data[CONF_URL]).host
                return self.async_create_entry(
                    title=f"{self._data[CONF_ACCOUNT]} @ {host}",
                    data=self._data,
                    options={
                        CONF_ALL_DEVICES: all_devices,
                        CONF_DEVICES: [] if all_devices else selected,
                        CONF_UPDATE_INTERVAL: DEFAULT_UPDATE_INTERVAL,
                    },
                )
        return self.async_show_form(
            step_id="devices",
            data_schema=_devices_schema(self._devices, True, []),
            errors=errors,
            description_placeholders={
                "count": str(len(self._devices)),
                "online": str(sum(1 for device in self._devices if device.connected)),
            },
        )

    # ------------------------------------------------------------------ reauth

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Start a reauth: the server refused the stored credentials."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for a new token (or the password again) for the same account."""
        entry = self._get_reauth_entry()
        password_method = entry.data.get(CONF_AUTH_METHOD) == AUTH_PASSWORD
        errors: dict[str, str] = {}
        if user_input is not None:
            credentials: dict[str, Any] = (
                {
                    "username": user_input[CONF_USERNAME],
                    "password": user_input[CONF_PASSWORD],
                }
                if password_method
                else {"token": user_input[CONF_TOKEN].strip()}
            )
            data, _, errors = await self._async_try(
                url=entry.data[CONF_URL],
                verify_ssl=entry.data[CONF_VERIFY_SSL],
                **credentials,
            )
            if data is not None:
                await self.async_set_unique_id(entry_unique_id(data[CONF_URL], data[CONF_ACCOUNT]))
                self._abort_if_unique_id_mismatch(reason="wrong_account")
                return self._async_update_and_reload(entry, data, "reauth_successful")
        if password_method:
            schema = vol.Schema(
                {
                    vol.Required(
                        CONF_USERNAME, default=entry.data.get(CONF_USERNAME, "")
                    ): _TEXT_SELECTOR,
                    vol.Required(CONF_PASSWORD): _SECRET_SELECTOR,
                }
            )
        else:
            schema = vol.Schema({vol.Required(CONF_TOKEN): _SECRET_SELECTOR})
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=schema,
            errors=errors,
            description_placeholders={
                "account": entry.data[CONF_ACCOUNT],
                "url": entry.data[CONF_URL],
            },
        )

    # ------------------------------------------------------------- reconfigure

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the server URL or the TLS switch of an existing entry."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                data = await self._async_reconnect(
                    entry, user_input[CONF_URL], user_input[CONF_VERIFY_SSL]
                )
            except FlowError as err:
                errors["base"] = str(err)
            except Exception:
                LOGGER.exception("Unexpected error while connecting to the server")
                errors["base"] = "unknown"
            else:
                if data[CONF_ACCOUNT] != entry.data[CONF_ACCOUNT]:
                    return self.async_abort(reason="wrong_account")
                new_id = entry_unique_id(data[CONF_URL], data[CONF_ACCOUNT])
                if any(
                    other.unique_id == new_id and other.entry_id != entry.entry_id
                    for other in self._async_current_entries(include_ignore=False)
                ):
                    return self.async_abort(reason="already_configured")
                return self._async_update_and_reload(entry, data, "reconfigure_successful")
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                RECONFIGURE_SCHEMA, user_input or dict(entry.data)
            ),
            errors=errors,
        )

    async def _async_reconnect(
        self, entry: ConfigEntry, url: str, verify_ssl: bool
    ) -> dict[str, Any]:
        """Check the stored credentials against a new URL / TLS setting."""
        url = _normalize_url(url)
        session = async_get_clientsession(self.hass, verify_ssl=verify_ssl)
        data: dict[str, Any] = {CONF_URL: url, CONF_VERIFY_SSL: verify_ssl}
        token: str = entry.data[CONF_TOKEN]
        client = IotmpApiClient(session, url, token, verify_ssl=verify_ssl)
        try:
            await _async_list_devices(client)
        except FlowError as err:
            refresh_token = entry.data.get(CONF_REFRESH_TOKEN)
            if str(err) != "invalid_auth" or not refresh_token:
                raise
            # A password login's session token expires: trade the refresh token.
            try:
                tokens = await IotmpApiClient.refresh_login(
                    session, url, refresh_token, verify_ssl=verify_ssl
                )
            except IotmpAuthError as refresh_err:
                raise FlowError("invalid_auth") from refresh_err
            except IotmpApiError as refresh_err:
                raise FlowError("cannot_connect") from refresh_err
            token = tokens.access_token
            data |= {
                CONF_TOKEN: token,
                CONF_REFRESH_TOKEN: tokens.refresh_token or refresh_token,
                CONF_EXPIRES_AT: tokens.expires_at,
            }
            await _async_list_devices(IotmpApiClient(session, url, token, verify_ssl=verify_ssl))
        try:
            data[CONF_ACCOUNT] = IotmpApiClient.token_user(token)
        except IotmpAuthError as err:
            raise FlowError("invalid_auth") from err
        return data


class IotmpOptionsFlow(OptionsFlow):
    """Device selection, update intervals and per-resource overrides."""

    def __init__(self) -> None:
        """Nothing chosen yet."""
        self._devices: list[DeviceRecord] = []
        self._override_target: tuple[str, str, str] | None = None
        self._credential: tuple[str, str, str] | None = None

    @property
    def _manager(self) -> IotmpManager:
        entry: IotmpConfigEntry = self.config_entry
        return entry.runtime_data.manager

    def _save(self, **changes: Any) -> ConfigFlowResult:
        return self.async_create_entry(data={**self.config_entry.options, **changes})

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose what to change."""
        if self.config_entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="not_loaded")
        menu = ["settings", "device_interval", "override"]
        if self.config_entry.data.get(CONF_MODE) == MODE_EMBEDDED:
            menu = ["add_device", "remove_device", "regenerate", *menu]
        return self.async_show_menu(step_id="init", menu_options=menu)

    # ------------------------------------------------ embedded server's devices

    @property
    def _server(self) -> EmbeddedServer:
        entry: IotmpConfigEntry = self.config_entry
        server = entry.runtime_data.server
        assert server is not None
        return server

    def _unchanged(self) -> ConfigFlowResult:
        """Finish without changing the options (the server's devices are stored apart)."""
        return self.async_create_entry(data=dict(self.config_entry.options))

    def _server_device_schema(self) -> vol.Schema:
        options = [
            SelectOptionDict(value=device.device_id, label=f"{device.name} ({device.device_id})")
            for device in sorted(self._server.devices.values(), key=lambda d: d.name.lower())
        ]
        return vol.Schema(
            {
                vol.Required(CONF_DEVICE): SelectSelector(
                    SelectSelectorConfig(options=options, mode=SelectSelectorMode.DROPDOWN)
                )
            }
        )

    async def async_step_add_device(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Add a device: its id and name (the credential is generated)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            device_id = str(user_input[CONF_DEVICE_ID]).strip()
            name = str(user_input.get(CONF_NAME) or "").strip() or device_id
            if not DEVICE_ID_RE.match(device_id):
                errors[CONF_DEVICE_ID] = "invalid_device_id"
            elif device_id in self._server.devices:
                errors[CONF_DEVICE_ID] = "device_exists"
            else:
                credential = await self._server.async_add_device(device_id, name)
                self._credential = (device_id, name, credential)
                return await self.async_step_credential()
        schema = vol.Schema(
            {
                vol.Required(CONF_DEVICE_ID): _TEXT_SELECTOR,
                vol.Optional(CONF_NAME): _TEXT_SELECTOR,
            }
        )
        return self.async_show_form(
            step_id="add_device",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )

    async def async_step_regenerate(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Give a device a new credential (the old one stops working now)."""
        if not self._server.devices:
            return self.async_abort(reason="no_devices")
        if user_input is not None:
            device_id = user_input[CONF_DEVICE]
            credential = await self._server.async_regenerate(device_id)
            self._credential = (device_id, self._server.devices[device_id].name, credential)
            return await self.async_step_credential()
        return self.async_show_form(step_id="regenerate", data_schema=self._server_device_schema())

    async def async_step_credential(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show the credential once, with the firmware lines that use it."""
        assert self._credential is not None
        if user_input is not None:
            self._credential = None
            return self._unchanged()
        device_id, name, credential = self._credential
        host, port = firmware_host(self.hass, self.config_entry.data)
        return self.async_show_form(
            step_id="credential",
            data_schema=vol.Schema({}),
            description_placeholders={
                "device": name,
                "device_id": device_id,
                "user": EMBEDDED_USER,
                "credential": credential,
                "host": host,
                "port": str(port),
                "firmware": firmware_lines(device_id, credential, host, port),
            },
        )

    async def async_step_remove_device(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Forget a device: it is disconnected and its entities are removed."""
        if not self._server.devices:
            return self.async_abort(reason="no_devices")
        if user_input is not None:
            await self._server.async_remove_device(user_input[CONF_DEVICE])
            self._manager.async_request_full_refresh()
            return self._unchanged()
        return self.async_show_form(
            step_id="remove_device", data_schema=self._server_device_schema()
        )

    async def async_step_settings(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Device selection and the default output update interval."""
        options = self.config_entry.options
        errors: dict[str, str] = {}
        if user_input is not None:
            all_devices = bool(user_input[CONF_ALL_DEVICES])
            selected = list(user_input.get(CONF_DEVICES, []))
            if not all_devices and not selected:
                errors["base"] = "no_devices_selected"
            else:
                return self._save(
                    **{
                        CONF_ALL_DEVICES: all_devices,
                        CONF_DEVICES: [] if all_devices else selected,
                        CONF_UPDATE_INTERVAL: int(user_input[CONF_UPDATE_INTERVAL]),
                    }
                )
        else:
            try:
                self._devices = await self._manager.client.list_devices()
            except IotmpApiError as err:
                LOGGER.debug("Listing devices for the options failed: %s", err)
                errors["base"] = "cannot_connect"
                self._devices = [
                    DeviceRecord(
                        device_id=device.device_id,
                        name=device.name,
                        description="",
                        type=device.model or "",
                        enabled=True,
                        connected=device.connected,
                        connection_ts=None,
                        raw={},
                    )
                    for device in self._manager.devices.values()
                ]
        schema = _devices_schema(
            self._devices,
            bool(options.get(CONF_ALL_DEVICES, True)),
            list(options.get(CONF_DEVICES, [])),
        ).extend(
            {
                vol.Required(
                    CONF_UPDATE_INTERVAL,
                    default=options.get(CONF_UPDATE_INTERVAL, DEFAULT_UPDATE_INTERVAL),
                ): _INTERVAL_SELECTOR,
            }
        )
        return self.async_show_form(step_id="settings", data_schema=schema, errors=errors)

    def _known_device_options(self) -> list[SelectOptionDict]:
        return [
            SelectOptionDict(value=device.device_id, label=f"{device.name} ({device.device_id})")
            for device in sorted(self._manager.devices.values(), key=lambda d: d.name.lower())
        ]

    async def async_step_device_interval(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Output update interval of one device (empty: use the default)."""
        if not self._manager.devices:
            return self.async_abort(reason="no_devices")
        if user_input is not None:
            intervals = dict(self.config_entry.options.get(CONF_DEVICE_INTERVALS, {}))
            device_id = user_input[CONF_DEVICE]
            if user_input.get(CONF_INTERVAL) is None:
                intervals.pop(device_id, None)
            else:
                intervals[device_id] = int(user_input[CONF_INTERVAL])
            return self._save(**{CONF_DEVICE_INTERVALS: intervals})
        schema = vol.Schema(
            {
                vol.Required(CONF_DEVICE): SelectSelector(
                    SelectSelectorConfig(
                        options=self._known_device_options(),
                        mode=SelectSelectorMode.DROPDOWN,
                    )
                ),
                vol.Optional(CONF_INTERVAL): _INTERVAL_SELECTOR,
            }
        )
        return self.async_show_form(step_id="device_interval", data_schema=schema)

    async def async_step_override(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick the resource (or one value of it) whose platform, class or unit to change."""
        options = [
            option
            for device in sorted(self._manager.devices.values(), key=lambda d: d.name.lower())
            for name, info in sorted(device.resources.items())
            for option in _override_options(device.device_id, device.name, name, info)
        ]
        if not options:
            return self.async_abort(reason="no_resources")
        if user_input is not None:
            device_id, resource, *key = json.loads(user_input[CONF_RESOURCE])
            self._override_target = (device_id, resource, key[0] if key else resource)
            return await self.async_step_override_settings()
        schema = vol.Schema(
            {
                vol.Required(CONF_RESOURCE): SelectSelector(
                    SelectSelectorConfig(options=options, mode=SelectSelectorMode.DROPDOWN)
                )
            }
        )
        return self.async_show_form(step_id="override", data_schema=schema)

    async def async_step_override_settings(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Platform, device class and unit for the chosen resource (empty: guessed)."""
        assert self._override_target is not None
        device_id, resource, key = self._override_target
        device = self._manager.devices[device_id]
        info = device.resources[resource]
        platforms = list(valid_platforms(info, None if key == resource else key))
        all_overrides: dict[str, dict[str, dict[str, Any]]] = {
            key: dict(value)
            for key, value in self.config_entry.options.get(CONF_OVERRIDES, {}).items()
        }
        current: dict[str, Any] = all_overrides.get(device_id, {}).get(key, {})
        device_classes = sorted(
            {
                device_class
                for platform in platforms
                for device_class in device_classes_for(platform)
            }
        )
        errors: dict[str, str] = {}
        placeholders = {
            "device": device.name,
            "resource": _value_label(info, key),
            "notes": "",
        }
        if user_input is not None:
            platform = user_input[CONF_PLATFORM]
            device_class = (user_input.get(CONF_DEVICE_CLASS) or "").strip() or None
            unit = (user_input.get(CONF_UNIT) or "").strip() or None
            number_fields = {
                name: float(user_input[name])
                for name in (CONF_NUMBER_MIN, CONF_NUMBER_MAX, CONF_NUMBER_STEP)
                if user_input.get(name) is not None
            }
            number_mode = user_input.get(CONF_NUMBER_MODE)
            number_mode = None if number_mode in (None, PLATFORM_AUTO) else number_mode
            if device_class is not None and device_class not in (
                device_classes if platform == PLATFORM_AUTO else device_classes_for(platform)
            ):
                errors[CONF_DEVICE_CLASS] = "invalid_device_class"
            else:
                override = ResourceOverride(
                    platform=None if platform == PLATFORM_AUTO else platform,
                    device_class=device_class,
                    unit=unit,
                    number_min=number_fields.get(CONF_NUMBER_MIN),
                    number_max=number_fields.get(CONF_NUMBER_MAX),
                    number_step=number_fields.get(CONF_NUMBER_STEP),
                    number_mode=number_mode,
                )
                if key == resource:
                    result = map_resource_with_notes(info, override)
                else:
                    result = map_resource_with_notes(info, overrides={key: override})
                if result.notes and result.specs == map_resource_with_notes(info).specs:
                    # Nothing of the resource took the override: say why.
                    notes = result.notes
                    errors["base"] = "override_not_applied"
                    placeholders["notes"] = "; ".join(notes)
            if not errors:
                item = {
                    key: value
                    for key, value in (
                        (CONF_PLATFORM, None if platform == PLATFORM_AUTO else platform),
                        (CONF_DEVICE_CLASS, device_class),
                        (CONF_UNIT, unit),
                        *number_fields.items(),
                        (CONF_NUMBER_MODE, number_mode),
                    )
                    if value is not None
                }
                per_device = all_overrides.setdefault(device_id, {})
                if item:
                    per_device[key] = item
                else:
                    per_device.pop(key, None)
                    if not per_device:
                        all_overrides.pop(device_id)
                return self._save(**{CONF_OVERRIDES: all_overrides})
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_PLATFORM, default=current.get(CONF_PLATFORM, PLATFORM_AUTO)
                ): SelectSelector(
                    SelectSelectorConfig(
                        options=[PLATFORM_AUTO, *platforms],
                        mode=SelectSelectorMode.DROPDOWN,
                        translation_key="platform",
                    )
                ),
                vol.Optional(CONF_DEVICE_CLASS): SelectSelector(
                    SelectSelectorConfig(
                        options=device_classes,
                        mode=SelectSelectorMode.DROPDOWN,
                        custom_value=True,
                    )
                ),
                vol.Optional(CONF_UNIT): _TEXT_SELECTOR,
            }
        )
        if "number" in platforms:
            schema = schema.extend(
                {
                    vol.Optional(CONF_NUMBER_MIN): _ANY_NUMBER_SELECTOR,
                    vol.Optional(CONF_NUMBER_MAX): _ANY_NUMBER_SELECTOR,
                    vol.Optional(CONF_NUMBER_STEP): _ANY_NUMBER_SELECTOR,
                    vol.Optional(
                        CONF_NUMBER_MODE, default=current.get(CONF_NUMBER_MODE, PLATFORM_AUTO)
                    ): SelectSelector(
                        SelectSelectorConfig(
                            options=[PLATFORM_AUTO, "slider", "box"],
                            mode=SelectSelectorMode.DROPDOWN,
                            translation_key="number_mode",
                        )
                    ),
                }
            )
        suggested = user_input or {
            CONF_DEVICE_CLASS: current.get(CONF_DEVICE_CLASS),
            CONF_UNIT: current.get(CONF_UNIT),
            CONF_NUMBER_MIN: current.get(CONF_NUMBER_MIN),
            CONF_NUMBER_MAX: current.get(CONF_NUMBER_MAX),
            CONF_NUMBER_STEP: current.get(CONF_NUMBER_STEP),
        }
        return self.async_show_form(
            step_id="override_settings",
            data_schema=self.add_suggested_values_to_schema(
                schema, {k: v for k, v in suggested.items() if v is not None}
            ),
            errors=errors,
            description_placeholders=placeholders,
        )
