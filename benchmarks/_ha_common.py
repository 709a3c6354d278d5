"""Helpers shared by the Home Assistant benchmarks (``ha_integration.py``, ``ha_vs_mqtt.py``).

Percentiles, event-loop lag and GC pause recorders, the child processes that stream
timed updates (the IOTMP device fleet, the MQTT publisher), and the measurement of one
streaming phase at Home Assistant's ``state_changed`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import statistics
import sys
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def rss_mb() -> float:
    """Resident set size of this process in MiB (``VmRSS``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a list; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def med(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")


class LoopLag:
    """Samples event-loop lag (how late a 20 ms sleep wakes up) while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.02)
            self.samples.append((loop.time() - start - 0.02) * 1000)

    def start(self) -> None:
        self.samples = []
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class GcPauses:
    """Records garbage-collector pauses (ms per generation) while active."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.setdefault(info.get("generation", 2), []).append(
                (time.perf_counter() - self._start) * 1000
            )

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        every = [p for ps in self.pauses.values() for p in ps]
        return {
            "gc_count": {str(g): len(ps) for g, ps in self.pauses.items()},
            "gc_total_ms": sum(every),
            "gc_max_ms": max(every, default=0.0),
        }


class StreamChild:
    """A child process that streams timed updates on command (one JSON object a line).

    It prints ``{"ready": true, ...}`` first, then answers every command read from its
    stdin; ``{"cmd": "stream", "rate": R, "duration": S, "base_ns": B}`` is answered with
    at least ``{"sent": n, "wall": s, "lag_p99_ms": x}``. Used for the device fleet
    (``_ha_fleet.py``) and the MQTT publisher (``_mqtt_publisher.py``).
    """

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}

    async def start(self) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115, ASYNC230 - closed in stop()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
        )
        self.info = await self.reply(timeout=300)
        if not self.info.get("ready"):
            raise RuntimeError(f"{self.argv[0]} did not start: {self.info}")

    async def reply(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.argv[0]} ended; its log:\n{tail}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def command(self, cmd: dict[str, Any], timeout: float = 60) -> dict[str, Any]:  # noqa: ASYNC109
        self.send(cmd)
        return await self.reply(timeout)

    async def stream(self, rate: float, duration: float, base_ns: int) -> dict[str, Any]:
        self.send({"cmd": "stream", "rate": rate, "duration": duration, "base_ns": base_ns})
        return await self.reply(timeout=duration * 5 + 60)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the child used so far, from /proc."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    async def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.send({"cmd": "quit"})
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._log.close()


class FleetProcess(StreamChild):
    """The server + device fleet subprocess (``_ha_fleet.py``)."""

    def __init__(self, devices: int, tick: float, bench_kind: str, log_path: Path) -> None:
        self.devices = devices
        self.tick = tick
        self.bench_kind = bench_kind
        argv = [str(HERE / "_ha_fleet.py"), "--devices", str(devices), "--tick", str(tick)]
        super().__init__([*argv, "--bench-kind", bench_kind], log_path)


async def drain(received: Callable[[], int], expected: int, idle: float = 1.0) -> None:
    """Wait until ``received()`` reaches ``expected`` or stops growing for ``idle`` s."""
    last, since = received(), time.monotonic()
    while received() < expected:
        await asyncio.sleep(0.05)
        now = received()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > idle:
            return


def garbage_summary(top: int = 25) -> list[tuple[str, int]]:
    """Types of the objects the collector found as cyclic garbage (``--gc-garbage``)."""
    gc.collect()
    gc.set_debug(0)
    counts: dict[str, int] = {}
    for obj in gc.garbage:
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        if isinstance(obj, types.FunctionType | types.CoroutineType):
            name += f" {obj.__qualname__}"
        elif isinstance(obj, types.FrameType):
            name += f" {obj.f_code.co_qualname}"
        elif isinstance(obj, types.CellType):
            with contextlib.suppress(ValueError):
                name += f" -> {type(obj.cell_contents).__qualname__}"
        counts[name] = counts.get(name, 0) + 1
    gc.garbage.clear()
    return sorted(counts.items(), key=lambda item: -item[1])[:top]


def use_plain_resolver() -> None:
    """Give HA's shared aiohttp sessions aiohttp's plain resolver, as HA's test harness does.

    The mDNS-capable resolver needs the zeroconf and network integrations; every URL here
    is a literal 127.0.0.1, so nothing resolves anyway.
    """
    from aiohttp.resolver import AsyncResolver  # noqa: PLC0415
    from homeassistant.helpers import aiohttp_client  # noqa: PLC0415

    def plain_resolver(hass: Any) -> Any:
        resolver = AsyncResolver()
        resolver.real_close = resolver.close  # type: ignore[attr-defined]
        return resolver

    aiohttp_client._async_make_resolver = plain_resolver


async def measure_ha_stream(
    hass: Any,
    counted_ids: set[str],
    bench_ids: set[str],
    child: StreamChild,
    *,
    rate: float,
    duration: float,
    profile_path: str | None = None,
    gc_garbage: bool = False,
) -> dict[str, Any]:
    """Have ``child`` stream ``rate`` updates/s for ``duration`` s; time them in HA.

    Latency = the ``state_changed`` event of a ``bench_ids`` entity minus the send time
    its state carries (µs of CLOCK_MONOTONIC after ``base_ns``). Every state change of a
    ``counted_ids`` entity counts for the CPU per 1,000 updates (this process's CPU time,
    all threads: HA and its integrations).
    """
    from homeassistant.const import EVENT_STATE_CHANGED  # noqa: PLC0415
    from homeassistant.core import callback  # noqa: PLC0415

    latencies: list[float] = []
    counts = {"all": 0}
    base_ns = time.monotonic_ns()

    @callback
    def on_state_changed(event: Any) -> None:
        data = event.data
        entity_id = data["entity_id"]
        if entity_id not in counted_ids:
            return
        counts["all"] += 1
        if entity_id in bench_ids:
            new_state = data["new_state"]
            if new_state is None:
                return
            try:
                sent_us = int(float(new_state.state))
            except ValueError:
                return
            now_us = (time.monotonic_ns() - base_ns) // 1000
            latencies.append((now_us - sent_us) / 1000)

    unsub = hass.bus.async_listen(EVENT_STATE_CHANGED, on_state_changed)
    result: dict[str, Any] = {}
    gc.collect()
    lag = LoopLag()
    profiler = None
    if profile_path:
        import cProfile  # noqa: PLC0415

        profiler = cProfile.Profile()
        profiler.enable()
    if gc_garbage:
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collector frees, to count it
    cpu0, ccpu0 = time.process_time(), child.cpu_seconds()
    lag.start()
    with GcPauses() as pauses:
        sent = await child.stream(rate, duration, base_ns)
        await drain(lambda: len(latencies), sent["sent"])
    cpu = time.process_time() - cpu0
    child_cpu = child.cpu_seconds() - ccpu0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_path)
    if gc_garbage:
        result["gc_garbage"] = garbage_summary()
    await lag.stop()
    unsub()
    received = len(latencies)
    result.update(
        {
            "sent": sent["sent"],
            "received": received,
            "state_changes": counts["all"],
            "median_ms": med(latencies),
            "p99_ms": pct(latencies, 99),
            "max_ms": max(latencies, default=float("nan")),
            "cpu_s": cpu,
            "cpu_per_1000": cpu / counts["all"] * 1000 if counts["all"] else float("nan"),
            "fleet_cpu_per_1000": child_cpu / received * 1000 if received else float("nan"),
            "fleet_cpu_util": child_cpu / sent["wall"],
            "send_lag_p99_ms": sent["lag_p99_ms"],
            "sender_gc_max_ms": sent.get("sender_gc_max_ms", float("nan")),
            "loop_lag_p99_ms": pct(lag.samples, 99),
            **pauses.summary(),
        }
    )
    return result


async def paced_stream(
    send: Callable[[int, int], Awaitable[None]], rate: float, duration: float, base_ns: int
) -> dict[str, Any]:
    """Call ``send(index, value)`` ``rate`` times a second for ``duration`` s.

    ``index`` counts the updates from 0 (the caller spreads them round-robin); ``value``
    is the send time in µs of CLOCK_MONOTONIC after ``base_ns``. Returns what the
    ``stream`` command of a :class:`StreamChild` answers.
    """
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    start = loop.time()
    sent = 0
    lags: list[float] = []
    total = int(rate * duration)
    with GcPauses() as pauses:
        while sent < total:
            now = loop.time()
            due = min(total, int(rate * (now - start)) + 1)
            if due > sent:
                # how late the oldest due update is against the ideal schedule
                lags.append(max(0.0, now - (start + sent / rate)))
            while sent < due:
                await send(sent, (time.monotonic_ns() - base_ns) // 1000)
                sent += 1
            await asyncio.sleep(0.002)
    wall = loop.time() - start
    lags.sort()
    return {
        "sent": sent,
        "cpu": time.process_time() - cpu0,
        "wall": wall,
        "lag_p99_ms": 1000 * lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
        "lag_max_ms": 1000 * lags[-1] if lags else 0.0,
        "lag_median_ms": 1000 * statistics.median(lags) if lags else 0.0,
        # the sender's own collector (for the fleet: the server's too, same process)
        "sender_gc_max_ms": pauses.summary()["gc_max_ms"],
    }


def emit(obj: dict[str, Any]) -> None:
    """Answer the parent of a :class:`StreamChild` (one JSON object a line on stdout)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve_commands(handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]) -> None:
    """The child side of :class:`StreamChild`: run stdin's commands until ``quit`` or EOF.

    A handler's result, unless None, is the reply.
    """
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            return
        reply = await handlers[cmd["cmd"]](cmd)
        if reply is not None:
            emit(reply)
