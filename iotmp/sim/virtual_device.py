"""One virtual device: a profile's simulation served over real IOTMP.

:class:`VirtualDevice` declares the profile's resources on the protocol
library's :class:`~iotmp.device.Device`, advances the
behaviours every ``tick`` seconds, streams values that changed (for resources
whose profile says ``"stream": true``) and keeps reconnecting until stopped.

What the server sees matches real firmware (reference-device observations):

* inputs answer RUN with OK (no payload) and report their state through
  DESCRIBE (``{"in": state}``) and streams; after a write the new state is
  streamed on the resource's open streams;
* outputs answer RUN / DESCRIBE / stream samples with the current value;
* input_output resources answer RUN with the output computed from the input
  (a RUN without payload returns the current output);
* run resources count their runs in ``state``.

A profile may also make the device use its server (:mod:`.server_use`):
``bucket_writes`` writes resource values to a data bucket every N seconds;
``config_property`` reads a property at every login and on each update
(``device_property_create`` / ``device_property_update`` subscriptions) and
writes its fields to the device's input resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

from iotmp.device import (
    DEFAULT_RECONNECT_DELAY,
    Device,
    Resource,
    ResourceKind,
    TransportKind,
)
from iotmp.device import ResourceError as DeviceResourceError
from iotmp.protocol.errors import IotmpError
from iotmp.protocol.message import ABSENT

from .behaviours import ResourceError
from .profile import BucketWrite, Profile
from .server_use import bucket_record, config_fields, is_config_update
from .simulation import Command, DeviceSimulation

_LOGGER = logging.getLogger(__name__)

DEFAULT_TICK = 1.0
"""Seconds between behaviour updates."""


class _InputOutput(Resource):
    """An input_output resource reading its values from the simulation.

    The library's generic one runs the handler with a sample input to DESCRIBE
    and stream; here the handler runs only for real RUNs / stream inputs, so a
    read never counts as a command.
    """

    __slots__ = ("owner",)

    owner: VirtualDevice

    async def current_value(self) -> Any:
        return self.owner.sim.output_value(self.name)

    async def describe(self) -> Any:
        sim = self.owner.sim
        return {"in": sim.input_value(self.name), "out": sim.output_value(self.name)}

    async def apply_input(self, value: Any) -> Any:
        self.owner._write(self.name, value)
        return await self.current_value()


class VirtualDevice:
    """A device made from a :class:`Profile`, run with :meth:`run` until :meth:`stop`.

    ``state`` (resource name -> value, see ``ResourceSpec.initial``) and
    ``commands`` (every input / run received, oldest first) are live views for
    tests. ``tick`` is the behaviour period in seconds; ``seed`` makes the
    simulated physics reproducible.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        user: str,
        credential: str,
        device_id: str | None = None,
        name: str | None = None,
        tick: float = DEFAULT_TICK,
        seed: int | None = None,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        keep_alive: float = 60.0,
        on_connection: Callable[[VirtualDevice, bool, str], Any] | None = None,
    ) -> None:
        if tick <= 0:
            raise ValueError("tick must be a positive number of seconds")
        self.profile = profile
        self.device_id = device_id or profile.device_id
        self.name = name or profile.device_name
        self.user = user
        self.credential = credential
        self.tick = tick
        self.keep_alive = keep_alive
        self.on_connection = on_connection
        """Called with ``(device, connected, detail)`` on every connect / disconnect."""
        self.sim = DeviceSimulation(profile, seed=seed)
        self.device = Device(
            user,
            self.device_id,
            credential,
            reconnect_delay=reconnect_delay,
            name=self.device_id,
        )
        self._changed = asyncio.Event()
        self._reported_up = False
        self.buckets_written = 0
        """Bucket records the server accepted (``bucket_writes``)."""
        self.configs_applied: list[Any] = []
        """Configuration values applied so far (``config_property``), oldest first."""
        self._bucket_failing: set[str] = set()
        self._declare()
        self._subscribe_config()

    # ------------------------------------------------------------------ views

    @property
    def state(self) -> dict[str, Any]:
        """Current values by resource name (inputs, outputs, run counts, ``{"in","out"}``)."""
        return self.sim.state

    @property
    def commands(self) -> list[Command]:
        """Inputs and runs received from the server, oldest first."""
        return self.sim.commands

    @property
    def connected(self) -> bool:
        """Whether an authenticated session is up."""
        return self.device.connected.is_set()

    @property
    def connections(self) -> int:
        """How many times the device has connected so far."""
        return self.device.connections

    def __repr__(self) -> str:
        return f"<VirtualDevice {self.device_id} ({self.profile.name}) connected={self.connected}>"

    # ------------------------------------------------------------ resources

    def _declare(self) -> None:
        sim = self.sim
        for spec in self.profile.resources:
            name = spec.name
            if spec.kind == "run":
                self.device.run_resource(name, self._runner(name))
            elif spec.kind == "input":
                self.device.input_resource(
                    name, self._reader(sim.input_value, name), self._writer(name)
                )
            elif spec.kind == "output":
                self.device.output_resource(name, self._reader(sim.output_value, name))
            else:
                resource = _InputOutput(
                    name, ResourceKind.INPUT_OUTPUT, fn=self._calculator(name), sample_input=ABSENT
                )
                resource.owner = self
                self.device.resources[name] = resource

    @staticmethod
    def _reader(read: Callable[[str], Any], name: str) -> Callable[[], Any]:
        return lambda: read(name)

    def _runner(self, name: str) -> Callable[[], None]:
        def run() -> None:
            self.sim.run(name)
            self._notify()

        return run

    def _writer(self, name: str) -> Callable[[Any], None]:
        def write(value: Any) -> None:
            self._write(name, value)

        return write

    def _calculator(self, name: str) -> Callable[[Any], Any]:
        def calculate(value: Any) -> Any:
            if value is ABSENT:  # RUN without payload: report, don't compute
                return self.sim.output_value(name)
            return self._write(name, value)

        return calculate

    def _write(self, name: str, value: Any) -> Any:
        try:
            output = self.sim.write(name, value)
        except ResourceError as exc:
            _LOGGER.debug("%s: %s refused %r: %s", self.device_id, name, value, exc.message)
            raise DeviceResourceError(exc.message, exc.code) from None
        finally:
            self._notify()
        _LOGGER.debug("%s: %s <- %r", self.device_id, name, value)
        return output

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until ``predicate(state)`` is true (checked after every change)."""
        async with asyncio.timeout(timeout):
            while not predicate(self.state):
                await self._changed.wait()

    # ------------------------------------------------------------ server use

    def _subscribe_config(self) -> None:
        config = self.profile.config_property
        if config is None:
            return
        for event in ("device_property_create", "device_property_update"):
            self.device.subscribe_event(event, self._on_config_event, {"property": config.property})

    async def _on_config_event(self, event: Any) -> None:
        config = self.profile.config_property
        if config is not None and is_config_update(config, self.device_id, event):
            await self.apply_config(event.get("value"))

    async def _read_config(self) -> None:
        """Apply the configuration property as it is now (after a login)."""
        config = self.profile.config_property
        if config is None:
            return
        try:
            value = await self.device.get_property(config.property)
        except IotmpError as exc:
            _LOGGER.debug("%s: no configuration %r: %s", self.device_id, config.property, exc)
            return
        await self.apply_config(value)

    async def apply_config(self, value: Any) -> list[str]:
        """Write the configuration's fields to their resources; returns the names written."""
        config = self.profile.config_property
        if config is None:
            return []
        written: list[str] = []
        for name, field in config_fields(config, value):
            try:
                self._write(name, field)
            except DeviceResourceError as exc:
                _LOGGER.info("%s: config %s=%r refused: %s", self.device_id, name, field, exc)
                continue
            written.append(name)
            try:
                await self.device.stream(name)
            except IotmpError as exc:
                _LOGGER.debug("%s: streaming %s failed: %s", self.device_id, name, exc)
        self.configs_applied.append(value)
        self._notify()
        return written

    async def _bucket_loop(self, write: BucketWrite) -> None:
        """Write ``write``'s record every ``write.every`` seconds while connected."""
        while True:
            await asyncio.sleep(write.every)
            if not self.connected:
                continue
            try:
                await self.device.write_bucket(write.bucket, bucket_record(self.sim, write))
            except IotmpError as exc:
                # Once per failure spell at INFO: a missing bucket must not flood the log.
                level = logging.DEBUG if write.bucket in self._bucket_failing else logging.INFO
                self._bucket_failing.add(write.bucket)
                _LOGGER.log(
                    level, "%s: write to bucket %s failed: %s", self.device_id, write.bucket, exc
                )
                continue
            self._bucket_failing.discard(write.bucket)
            self.buckets_written += 1
            self._notify()

    # ------------------------------------------------------------ behaviour

    async def step(self) -> list[str]:
        """Advance the behaviours by one tick and stream what changed; returns the names."""
        changed = self.sim.tick(self.tick)
        if changed:
            self._notify()
        for name in changed:
            if self.profile[name].stream:
                try:
                    await self.device.stream(name)
                except Exception as exc:  # a dropped link must not stop the physics
                    _LOGGER.debug("%s: streaming %s failed: %s", self.device_id, name, exc)
        return changed

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.tick
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if loop.time() - next_at > 10 * self.tick:
                next_at = loop.time()  # we fell far behind (suspend): don't catch up
            try:
                await self.step()
            except Exception:
                _LOGGER.exception("%s: behaviour tick failed; simulation stopped", self.device_id)
                return

    async def _watch_connection(self) -> None:
        """Report each connect and disconnect (one log line each)."""
        while True:
            await self.device.connected.wait()
            session = self.device.session
            if session is None:
                await asyncio.sleep(0)
                continue
            self._report(True, session.transport.peer)
            if self.profile.config_property is not None:
                with contextlib.suppress(IotmpError):
                    session.spawn(self._read_config(), "read config")
            reason = await session.wait_closed()
            self._report(False, reason)
            while self.device.session is session:  # noqa: ASYNC110 (no event for "cleared")
                await asyncio.sleep(0.01)

    def _report(self, up: bool, detail: str) -> None:
        if up == self._reported_up:
            return
        self._reported_up = up
        if self.on_connection is not None:
            self.on_connection(self, up, detail)
        elif up:
            _LOGGER.info("%s: connected to %s", self.device_id, detail)
        else:
            _LOGGER.info("%s: disconnected (%s)", self.device_id, detail)

    # ------------------------------------------------------------ running

    async def run(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        transport: TransportKind = "tcp",
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        url: str | None = None,
    ) -> None:
        """Connect (reconnecting after drops) and simulate until :meth:`stop`.

        ``transport`` is ``"tcp"``, ``"tls"`` (with ``ssl_context``), ``"ws"``
        or ``"wss"`` (``url``, or ``host``/``port`` with path ``/iotmp``).
        """
        async with asyncio.TaskGroup() as group:
            ticker = group.create_task(self._tick_loop(), name=f"{self.device_id} tick")
            watcher = group.create_task(self._watch_connection(), name=f"{self.device_id} watch")
            writers = [
                group.create_task(self._bucket_loop(write), name=f"{self.device_id} bucket")
                for write in self.profile.bucket_writes
            ]
            try:
                await self.device.run(
                    host,
                    port,
                    transport=transport,
                    ssl_context=ssl_context,
                    server_hostname=server_hostname,
                    url=url,
                    keep_alive=self.keep_alive,
                )
            finally:
                ticker.cancel()
                for writer in writers:
                    writer.cancel()
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                self._report(False, "stopped")

    async def stop(self) -> None:
        """Disconnect and stop reconnecting; :meth:`run` returns soon after."""
        await self.device.stop()

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the device is connected."""
        await self.device.wait_connected(timeout)
