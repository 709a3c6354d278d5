"""Run many virtual devices against one server.

>>> fleet = Fleet([VirtualDevice(profile, user="alice", credential="pw"), ...])
>>> await fleet.start(Target("127.0.0.1", 25204))
>>> await fleet.wait_connected()
>>> fleet["smart-plug"].state
>>> await fleet.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from iotmp.device import TransportKind

from .profile import Profile
from .virtual_device import VirtualDevice

_LOGGER = logging.getLogger(__name__)

_STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where devices connect: host/port over tcp or tls, or a WebSocket URL."""

    host: str | None = None
    port: int | None = None
    transport: TransportKind = "tcp"
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    url: str | None = None

    def describe(self) -> str:
        """Human-readable address, for log lines."""
        if self.url:
            return self.url
        return f"{self.transport}://{self.host}:{self.port}"


def numbered(base: str, index: int, count: int, sep: str = "-") -> str:
    """Return ``base`` when ``count`` is 1, else ``base<sep><index>`` (index from 1)."""
    return base if count == 1 else f"{base}{sep}{index}"


def make_devices(
    profile: Profile,
    *,
    user: str,
    credential: str | Callable[[str], str],
    count: int = 1,
    device_id: str | None = None,
    name: str | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> list[VirtualDevice]:
    """``count`` devices of one profile; ids (and names) get ``-1`` .. ``-N`` when count > 1.

    ``credential`` is one credential for all, or a function of the device id.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    base_id = device_id or profile.device_id
    base_name = name or profile.device_name
    ids = [numbered(base_id, i, count) for i in range(1, count + 1)]
    return [
        VirtualDevice(
            profile,
            user=user,
            credential=credential if isinstance(credential, str) else credential(ids[i - 1]),
            device_id=ids[i - 1],
            name=numbered(base_name, i, count, " "),
            seed=None if seed is None else seed + i,
            **kwargs,
        )
        for i in range(1, count + 1)
    ]


class Fleet:
    """A set of virtual devices started and stopped together."""

    def __init__(self, devices: Iterable[VirtualDevice] = ()) -> None:
        self.devices: list[VirtualDevice] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        for device in devices:
            self.add(device)

    def add(self, device: VirtualDevice) -> VirtualDevice:
        """Add a device (ids must be unique); it starts with the next :meth:`start`."""
        if any(d.device_id == device.device_id for d in self.devices):
            raise ValueError(f"duplicate device id {device.device_id!r}")
        self.devices.append(device)
        return device

    def __getitem__(self, device_id: str) -> VirtualDevice:
        """Return the device with this id (KeyError if none)."""
        for device in self.devices:
            if device.device_id == device_id:
                return device
        raise KeyError(device_id)

    def __iter__(self) -> Iterator[VirtualDevice]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def ids(self) -> list[str]:
        """Device ids in order."""
        return [d.device_id for d in self.devices]

    async def start(self, target: Target) -> None:
        """Start every device not yet running (each connects and reconnects on its own)."""
        for device in self.devices:
            task = self._tasks.get(device.device_id)
            if task is not None and not task.done():
                continue
            self._tasks[device.device_id] = asyncio.create_task(
                self._run(device, target), name=f"virtual device {device.device_id}"
            )

    @staticmethod
    async def _run(device: VirtualDevice, target: Target) -> None:
        try:
            await device.run(
                target.host,
                target.port,
                transport=target.transport,
                ssl_context=target.ssl_context,
                server_hostname=target.server_hostname,
                url=target.url,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("%s: stopped by an error", device.device_id)

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until every device is connected (TimeoutError names the missing ones)."""
        try:
            async with asyncio.timeout(timeout):
                for device in self.devices:
                    await device.device.connected.wait()
        except TimeoutError:
            missing = [d.device_id for d in self.devices if not d.connected]
            raise TimeoutError(
                f"devices not connected after {timeout:g} s: {', '.join(missing)}"
            ) from None

    async def wait_stopped(self) -> None:
        """Wait until every device task has ended."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks)

    async def stop(self) -> None:
        """Disconnect every device and wait for their tasks; nothing is left running."""
        await asyncio.gather(*(d.stop() for d in self.devices), return_exceptions=True)
        tasks = list(self._tasks.values())
        self._tasks.clear()
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=_STOP_TIMEOUT)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
