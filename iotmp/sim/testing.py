"""Virtual devices for tests (the contract in ``docs/architecture.md``).

```python
from iotmp.server.testing import run_test_server
from iotmp.sim.testing import run_virtual_devices

async with run_test_server() as server:
    async with run_virtual_devices(server, profiles=["smart_plug", "rgb_lamp"]) as fleet:
        await fleet.wait_connected()          # our side connected and the server described us
        fleet["rgb-lamp"].state               # {"light": {"on": False, "brightness": 128, ...}}
        fleet["rgb-lamp"].commands            # [Command(resource, value), ...]
        await fleet["counter"].wait_for(lambda s: s["count"] >= 3)
```

``server`` is anything with ``user``, ``tcp_port`` and ``add_device(TestDevice)``
(``iotmp.server.testing.TestServer``); when it also has
``wait_device_connected(id, timeout)`` :meth:`TestFleet.wait_connected` waits
for that too, so REST calls made right after see the devices online.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .fleet import Fleet, Target, make_devices
from .profile import Profile, builtin_profiles, load_profile, profile_for_device_id

DEFAULT_TEST_TICK = 0.05
"""Behaviour period in tests (seconds): counters move 20 times a second."""


class TestFleet(Fleet):
    """A :class:`Fleet` that knows the test server it runs against."""

    __test__ = False  # not a pytest test class

    def __init__(self, server: Any, devices: Iterable[Any] = ()) -> None:
        super().__init__(devices)
        self.server = server

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until every device is connected and (when the server can tell) described."""
        await super().wait_connected(timeout)
        wait = getattr(self.server, "wait_device_connected", None)
        if wait is not None:
            for device in self.devices:
                await wait(device.device_id, timeout=timeout)


def _profiles(
    profiles: Iterable[str | Path | Profile] | None,
    ids: Iterable[str] | None,
    demo: bool,
) -> list[Profile]:
    chosen = [profiles is not None, ids is not None, demo]
    if sum(chosen) != 1:
        raise ValueError("give exactly one of profiles=[...], ids=[...] or demo=True")
    if profiles is not None:
        return [p if isinstance(p, Profile) else load_profile(p) for p in profiles]
    if ids is not None:
        return [profile_for_device_id(device_id) for device_id in ids]
    return list(builtin_profiles().values())


@asynccontextmanager
async def run_virtual_devices(
    server: Any,
    *,
    profiles: Iterable[str | Path | Profile] | None = None,
    ids: Iterable[str] | None = None,
    demo: bool = False,
    count: int = 1,
    tick: float = DEFAULT_TEST_TICK,
    seed: int | None = 0,
    credential: str | None = None,
    register: bool = True,
    reconnect_delay: float = 0.2,
    keep_alive: float = 60.0,
) -> AsyncIterator[TestFleet]:
    """Register devices on ``server`` and run them over TCP to ``127.0.0.1:server.tcp_port``.

    Choose the devices with ``profiles`` (built-in names, paths or
    :class:`Profile` objects), ``ids`` (demo device ids such as ``"rgb-lamp"``)
    or ``demo=True`` (every built-in profile). ``count`` > 1 runs that many of
    each, with ids suffixed ``-1`` .. ``-N``. ``tick`` is the behaviour period.
    Each device's credential is ``credential`` or ``"pw-<id>"``; with
    ``register=False`` nothing is added to the server (e.g. to test refusals).
    On exit every device disconnects and all tasks are gone.
    """
    from iotmp.server.testing import TestDevice  # noqa: PLC0415  (test-only dependency)

    devices = []
    for profile in _profiles(profiles, ids, demo):
        devices.extend(
            make_devices(
                profile,
                user=server.user,
                credential=credential or (lambda device_id: f"pw-{device_id}"),
                count=count,
                seed=seed,
                tick=tick,
                reconnect_delay=reconnect_delay,
                keep_alive=keep_alive,
            )
        )
    for device in devices:
        if register:
            result = server.add_device(
                TestDevice(device.device_id, credential=device.credential, name=device.name)
            )
            if inspect.isawaitable(result):
                await result
    fleet = TestFleet(server, devices)
    await fleet.start(Target("127.0.0.1", server.tcp_port))
    try:
        yield fleet
    finally:
        await fleet.stop()


__all__ = ["DEFAULT_TEST_TICK", "TestFleet", "run_virtual_devices"]
