"""Constants for the iotmp integration."""

from __future__ import annotations

import logging
from typing import Final

from homeassistant.const import Platform

DOMAIN: Final = "iotmp"
LOGGER: Final = logging.getLogger(__package__)

DEFAULT_URL: Final = "https://api.thinger.io"
MANUFACTURER: Final = "IOTMP"

# Config entry data.
CONF_AUTH_METHOD: Final = "auth_method"
CONF_REFRESH_TOKEN: Final = "refresh_token"
CONF_EXPIRES_AT: Final = "expires_at"
CONF_ACCOUNT: Final = "account"
AUTH_TOKEN: Final = "token"
AUTH_PASSWORD: Final = "password"

# Config entry data of an embedded-server entry ("run an IOTMP server in Home Assistant").
CONF_MODE: Final = "mode"
MODE_EMBEDDED: Final = "embedded"
CONF_HOST: Final = "host"
CONF_TCP_PORT: Final = "tcp_port"
CONF_TLS_PORT: Final = "tls_port"
CONF_TLS_CERT: Final = "tls_cert"
CONF_TLS_KEY: Final = "tls_key"
EMBEDDED_UNIQUE_ID: Final = "embedded"
EMBEDDED_USER: Final = "homeassistant"
"""The account every device of the embedded server belongs to (the firmware's user)."""
DEFAULT_EMBEDDED_HOST: Final = "0.0.0.0"
DEFAULT_TCP_PORT: Final = 25204
DEFAULT_TLS_PORT: Final = 25206

# Config entry options.
CONF_ALL_DEVICES: Final = "all_devices"
CONF_DEVICES: Final = "devices"
CONF_UPDATE_INTERVAL: Final = "update_interval"
CONF_DEVICE_INTERVALS: Final = "device_intervals"
CONF_OVERRIDES: Final = "overrides"
CONF_PLATFORM: Final = "platform"
CONF_DEVICE_CLASS: Final = "device_class"
CONF_UNIT: Final = "unit"
CONF_NUMBER_MIN: Final = "min"
CONF_NUMBER_MAX: Final = "max"
CONF_NUMBER_STEP: Final = "step"
CONF_NUMBER_MODE: Final = "mode_number"

DEFAULT_UPDATE_INTERVAL: Final = 30
MIN_UPDATE_INTERVAL: Final = 1
MAX_UPDATE_INTERVAL: Final = 86400

# Service.
SERVICE_RUN_RESOURCE: Final = "run_resource"
ATTR_DEVICE: Final = "device"
ATTR_RESOURCE: Final = "resource"
ATTR_PAYLOAD: Final = "payload"

# Keys of entities the integration adds on its own (resource names never start with "$").
CONNECTIVITY_KEY: Final = "$connectivity"

STORAGE_VERSION: Final = 1

PLATFORMS: Final = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.LIGHT,
    Platform.NUMBER,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.TEXT,
]

# Device states from "device_state_change" events that mean the device is online.
ONLINE_STATES: Final = frozenset({"connected", "resumed", "awake"})
