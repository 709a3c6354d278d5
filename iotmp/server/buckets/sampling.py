"""Device-resource buckets: the server samples a device's resource into the bucket.

A bucket with ``config = {"source": "device", "device": d, "resource": r,
"update": "interval", "interval": seconds}`` gets one record per interval
while device ``d`` (of the bucket's user) is online: the resource is read
the way ``GET /v3/.../devices/d/r`` reads it. A sample is taken at once when
the device connects, and sampling resumes after every reconnect and server
restart (the samplers are made at start from the stored buckets). An object
output is the record; any other value ``v`` is stored as ``{r: v}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from iotmp.protocol.message import ABSENT

from ..http_api import ApiError, DeviceOps
from ..storage.buckets import StoredBucket
from .model import is_sampled

if TYPE_CHECKING:
    from ..app import IotmpServer
    from ..registry import DeviceState

_LOGGER = logging.getLogger(__name__)

Write = Callable[[str, str, Any], Awaitable[None]]
Key = tuple[str, str]


def sample_record(resource: str, value: Any) -> Any:
    """Return the record stored for a sampled value."""
    return value if isinstance(value, dict) else {resource: value}


class Samplers:
    """One sampling task per device-resource bucket."""

    def __init__(self, server: IotmpServer, write: Write) -> None:
        self.server = server
        self._write = write
        self._ops = DeviceOps(server)
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._wakes: dict[Key, asyncio.Event] = {}
        self._devices: dict[Key, str] = {}

    def sync(self, bucket: StoredBucket) -> None:
        """(Re)start or stop the bucket's sampler to match its settings."""
        key = (bucket.user, bucket.bucket)
        self.remove(key)
        if not is_sampled(bucket):
            return
        self._wakes[key] = asyncio.Event()
        self._devices[key] = str(bucket.config["device"])
        self._tasks[key] = asyncio.get_running_loop().create_task(
            self._loop(bucket), name=f"bucket-sampler-{bucket.user}-{bucket.bucket}"
        )

    def remove(self, key: Key) -> None:
        """Stop the sampler of a bucket (if any)."""
        task = self._tasks.pop(key, None)
        self._wakes.pop(key, None)
        self._devices.pop(key, None)
        if task is not None:
            task.cancel()

    def device_changed(self, state: DeviceState, _connected: bool) -> None:
        """Registry listener: wake the samplers of a device that (dis)connected."""
        for key, device in self._devices.items():
            if device == state.id and key[0] == state.user:
                self._wakes[key].set()

    async def stop(self) -> None:
        """Stop every sampler."""
        tasks = list(self._tasks.values())
        for key in list(self._tasks):
            self.remove(key)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, bucket: StoredBucket) -> None:
        key = (bucket.user, bucket.bucket)
        wake = self._wakes[key]
        device = str(bucket.config["device"])
        resource = str(bucket.config["resource"])
        interval = float(bucket.config["interval"])
        while True:
            wake.clear()
            state = self.server.registry.get(device)
            if state is None or state.user != bucket.user or not state.connected:
                await wake.wait()
                continue
            await self._sample(bucket, state, resource)
            # the interval, or sooner when the device disconnects or reconnects
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await wake.wait()

    async def _sample(self, bucket: StoredBucket, state: DeviceState, resource: str) -> None:
        try:
            value = await self._ops.read(state, resource)
        except ApiError as exc:
            _LOGGER.debug(
                "bucket %s: sampling %s/%s failed: %s",
                bucket.bucket,
                state.id,
                resource,
                exc.message,
            )
            return
        if value is ABSENT:
            return
        try:
            await self._write(bucket.user, bucket.bucket, sample_record(resource, value))
        except Exception as exc:
            _LOGGER.debug("bucket %s: storing a sample failed: %r", bucket.bucket, exc)


__all__ = ["Samplers", "sample_record"]
