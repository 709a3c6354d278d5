"""MQTT for the server: broker (built in or external), bridge, discovery, MQTT devices.

Needs the ``iotmp[mqtt]`` extra (amqtt, aiomqtt); :mod:`.settings` does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .settings import MqttConfig

if TYPE_CHECKING:
    from ..app import IotmpServer
    from .service import MqttService


def load_service(server: IotmpServer, config: MqttConfig) -> MqttService:
    """Return the MQTT service of ``server``; ConfigError when the extra is not installed."""
    try:
        from .service import MqttService  # noqa: PLC0415
    except ImportError as exc:
        from ..config import ConfigError  # noqa: PLC0415

        raise ConfigError(f"mqtt needs the iotmp[mqtt] extra ({exc.name} is missing)") from exc
    return MqttService(server, config)
