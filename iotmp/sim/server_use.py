"""What a virtual device asks of its server: bucket records and its configuration property.

Pure mapping between a profile's ``bucket_writes`` / ``config_property`` and
the simulation's values; :class:`~.virtual_device.VirtualDevice` does the I/O
(the SDK's ``write_bucket``, ``get_property`` and ``subscribe_event``).
"""

from __future__ import annotations

import copy
from typing import Any

from .profile import BucketWrite, ConfigProperty
from .simulation import DeviceSimulation


def bucket_record(sim: DeviceSimulation, write: BucketWrite) -> Any:
    """Return the record ``write`` stores now: ``{resource: value}`` or one object value."""
    values = {name: copy.deepcopy(sim.stream_value(name)) for name in write.resources}
    if len(values) == 1:
        (only,) = values.values()
        if isinstance(only, dict):
            return only
    return values


def config_fields(config: ConfigProperty, value: Any) -> list[tuple[str, Any]]:
    """Return the ``(resource, value)`` writes a configuration value asks for, in order.

    A value that is not an object asks for nothing; fields that name no
    configurable resource are ignored.
    """
    if not isinstance(value, dict):
        return []
    return [(name, field) for name, field in value.items() if name in config.resources]


def is_config_update(config: ConfigProperty, device_id: str, event: Any) -> bool:
    """Whether ``event`` updates this device's configuration property."""
    return (
        isinstance(event, dict)
        and event.get("event") in ("device_property_update", "device_property_create")
        and event.get("property") == config.property
        and event.get("device", device_id) == device_id
    )
