"""Virtual IOTMP devices driven by profile files.

A *profile* (``iotmp_devices/profiles/*.json``) declares a device's resources:
their kind (run / input / output / input_output), initial values and the
*behaviour* that simulates them (a drifting sensor, a plug's power draw, an
energy meter, a counter ...). :class:`~iotmp_devices.virtual_device.VirtualDevice`
runs one profile over real IOTMP with the protocol library's device-side API;
:mod:`iotmp_devices.fleet` runs many; ``python -m iotmp_devices`` is the CLI.

Nothing here imports Home Assistant.
"""

from __future__ import annotations

from .profile import Profile, ProfileError, ResourceSpec, builtin_profiles, load_profile

__all__ = ["Profile", "ProfileError", "ResourceSpec", "builtin_profiles", "load_profile"]
