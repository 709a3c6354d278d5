"""Virtual IOTMP devices driven by profile files.

A *profile* (``iotmp/sim/profiles/*.json``) declares a device's resources:
their kind (run / input / output / input_output), initial values and the
*behaviour* that simulates them (a drifting sensor, a plug's power draw, an
energy meter, a counter ...). :class:`~iotmp.sim.virtual_device.VirtualDevice`
runs one profile over real IOTMP with the protocol library's device-side API;
:mod:`iotmp.sim.fleet` runs many; ``iotmp sim`` is the CLI.

Nothing here imports Home Assistant.
"""

from __future__ import annotations

from .profile import Profile, ProfileError, ResourceSpec, builtin_profiles, load_profile

__all__ = ["Profile", "ProfileError", "ResourceSpec", "builtin_profiles", "load_profile"]
