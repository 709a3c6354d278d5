"""The IOTMP server: device listeners (TCP, TLS, WebSocket) and a Thinger.io-compatible API.

No Home Assistant imports. Start it with ``iotmp server --config FILE`` (or
``--demo``); embed it with :class:`IotmpServer`; tests use
:func:`iotmp.server.testing.run_test_server`.
"""

from __future__ import annotations

from .app import IotmpServer
from .config import (
    ConfigError,
    DeviceConfig,
    ServerConfig,
    UserConfig,
    load_config,
    parse_config,
)

__all__ = [
    "ConfigError",
    "DeviceConfig",
    "IotmpServer",
    "ServerConfig",
    "UserConfig",
    "load_config",
    "parse_config",
]
