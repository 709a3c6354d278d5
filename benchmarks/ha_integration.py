"""Home Assistant integration benchmark: setup time, push latency, CPU and memory.

Run (defaults: 200 devices, 1,000 updates/s, 20 s per streaming phase, 1 repeat):

    python benchmarks/ha_integration.py [--devices N] [--rate R] [--duration S] [--repeats K]
    python benchmarks/ha_integration.py --leg minimum|latest [...]   # HA 2025.4 / HA 2026.10 venvs

Design (see docs/benchmarks.md, "Home Assistant integration"):

* A subprocess (``benchmarks/_ha_fleet.py``, same interpreter) runs the local server
  (``iotmp.server.testing.run_test_server``) and N virtual devices over TCP, cycling
  through the seven demo profiles at their normal 1 s behaviour tick. Every device has
  one extra resource ``bench`` (by default an input, a number entity in HA, which the
  integration subscribes at interval 0; ``--bench-kind output`` makes it a sensor,
  subscribed at the entry's update interval) whose value is the send time
  (CLOCK_MONOTONIC, system-wide); on command the fleet streams R values per second
  round-robin over the devices. So the measuring process (this one) holds only Home
  Assistant, and its CPU time (``time.process_time``, all threads) and RSS are HA's.
* Home Assistant is a real ``HomeAssistant`` built by
  ``pytest_homeassistant_custom_component.common.async_test_home_assistant`` (outside
  pytest: no asyncio debug mode, no socket guard; registries in memory, a temp config
  dir), with the integration loaded from ``custom_components/`` and one config entry
  (token login, all devices, default 30 s output interval).
* Per repeat, side by side in this process:
    1. baseline snapshot: the project's REST client alone lists and describes every
       device (same concurrency as the integration, 4),
    2. baseline stream: plain aiohttp WebSockets (one per device, as the integration
       opens them) subscribe ``bench`` and time the same R/s for S seconds,
    3. a fresh HA: config-entry setup until every entity has a state,
    4. HA stream: the same R/s for S seconds, timed at HA's ``state_changed`` event.
  Latency = arrival time - send time embedded in the value.

Prints a table; ``--json FILE`` writes every figure. Needs the test venv (HA + the
pytest-homeassistant-custom-component package); ``--leg`` re-runs this script with the
venv of a test leg (``scripts/setup`` makes them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _ha_common import (
    FleetProcess,
    GcPauses,
    LoopLag,
    drain,
    measure_ha_stream,
    med,
    pct,
    rss_mb,
    use_plain_resolver,
)

ROOT = Path(__file__).resolve().parents[1]

BENCH = "bench"
HA_PLATFORMS = ("binary_sensor", "button", "light", "number", "sensor", "switch", "text")


# ------------------------------------------------------------------------- baselines


async def baseline_snapshot(info: dict[str, Any]) -> dict[str, Any]:
    """List and describe every device with the project's client alone (no HA)."""
    import aiohttp  # noqa: PLC0415

    from iotmp.client import IotmpApiClient  # noqa: PLC0415

    async with aiohttp.ClientSession() as session:
        client = IotmpApiClient(session, info["http_url"], info["token"])
        start = time.perf_counter()
        records = await client.list_devices()
        semaphore = asyncio.Semaphore(4)  # the integration's DESCRIBE_CONCURRENCY

        async def describe(device_id: str) -> int:
            async with semaphore:
                return len(await client.get_resources(device_id))

        counts = await asyncio.gather(*(describe(r.device_id) for r in records))
        return {"seconds": time.perf_counter() - start, "resources": sum(counts)}


async def baseline_stream(
    info: dict[str, Any], fleet: FleetProcess, rate: float, duration: float
) -> dict[str, Any]:
    """Plain aiohttp WebSockets (one per device) receive the same updates; no HA."""
    import aiohttp  # noqa: PLC0415

    url = info["http_url"]
    user = info["user"]
    params = {"authorization": info["token"]}
    latencies: list[float] = []
    recording = False
    base_ns = 0
    echoed: set[int] = set()

    # No per-host limit, so every device gets its socket (see the notes in the docs).
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = await asyncio.gather(
            *(
                session.ws_connect(
                    f"{url}/v3/users/{user}/devices/{device_id}/resources",
                    params=params,
                    autoping=True,
                )
                for device_id in info["devices"]
            )
        )

        async def receive(index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if frame.get("resource") != BENCH or "payload" not in frame:
                    continue
                if recording:
                    now_us = (time.monotonic_ns() - base_ns) // 1000
                    latencies.append((now_us - int(frame["payload"])) / 1000)
                else:
                    echoed.add(index)

        tasks = [asyncio.create_task(receive(i, ws)) for i, ws in enumerate(sockets)]
        for ws in sockets:
            await ws.send_str(json.dumps({"resource": BENCH, "interval": 0, "enabled": True}))
        deadline = time.monotonic() + 30
        while len(echoed) < len(sockets) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        gc.collect()
        lag = LoopLag()
        base_ns = time.monotonic_ns()
        recording = True
        cpu0, fcpu0 = time.process_time(), fleet.cpu_seconds()
        lag.start()
        with GcPauses() as pauses:
            sent = await fleet.stream(rate, duration, base_ns)
            await drain(lambda: len(latencies), sent["sent"])
        cpu = time.process_time() - cpu0
        fleet_cpu = fleet.cpu_seconds() - fcpu0
        await lag.stop()
        recording = False
        for ws in sockets:
            await ws.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    received = len(latencies)
    return {
        "sent": sent["sent"],
        "received": received,
        "median_ms": med(latencies),
        "p99_ms": pct(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "cpu_s": cpu,
        "cpu_per_1000": cpu / received * 1000 if received else float("nan"),
        "fleet_cpu_per_1000": fleet_cpu / received * 1000 if received else float("nan"),
        "fleet_cpu_util": fleet_cpu / sent["wall"],
        "send_lag_p99_ms": sent["lag_p99_ms"],
        "loop_lag_p99_ms": pct(lag.samples, 99),
        "echoed": len(echoed),
        **pauses.summary(),
    }


# ---------------------------------------------------------------------- Home Assistant


def preimport() -> None:
    """Import HA's entity platforms and the integration before the memory baseline.

    A running Home Assistant has sensor, switch, ... loaded already; the integration's
    own import cost is paid once per HA process, not per device.
    """
    for name in HA_PLATFORMS:
        importlib.import_module(f"homeassistant.components.{name}")
    for name in ("coordinator", "config_flow", "diagnostics", *HA_PLATFORMS):
        importlib.import_module(f"custom_components.iotmp.{name}")


@dataclass
class IotmpHa:
    """A fresh Home Assistant with the integration set up and every stream connected."""

    hass: Any
    setup: dict[str, Any]  # setup time, CPU, readiness, memory
    entity_ids: set[str]  # every entity of the config entry
    bench_ids: set[str]  # the ``bench`` entity of each device


@contextlib.asynccontextmanager
async def iotmp_home_assistant(
    args: argparse.Namespace, info: dict[str, Any]
) -> AsyncIterator[IotmpHa]:
    """Set up a fresh HA with the integration, time readiness; unloaded on exit."""
    from homeassistant import loader  # noqa: PLC0415
    from homeassistant.config_entries import ConfigEntryState  # noqa: PLC0415
    from homeassistant.const import (  # noqa: PLC0415
        CONF_TOKEN,
        CONF_URL,
        CONF_VERIFY_SSL,
        STATE_UNAVAILABLE,
        STATE_UNKNOWN,
    )
    from homeassistant.helpers import aiohttp_client  # noqa: PLC0415
    from homeassistant.helpers import entity_registry as er  # noqa: PLC0415
    from pytest_homeassistant_custom_component.common import (  # noqa: PLC0415
        MockConfigEntry,
        async_test_home_assistant,
    )

    from custom_components.iotmp.config_flow import entry_unique_id  # noqa: PLC0415
    from custom_components.iotmp.const import (  # noqa: PLC0415
        AUTH_TOKEN,
        CONF_ACCOUNT,
        CONF_ALL_DEVICES,
        CONF_AUTH_METHOD,
        CONF_DEVICES,
        CONF_UPDATE_INTERVAL,
        DEFAULT_UPDATE_INTERVAL,
        DOMAIN,
    )
    from custom_components.iotmp.coordinator import connectivity_spec  # noqa: PLC0415

    use_plain_resolver()
    if args.connector_limit is not None:
        # Opt-in what-if: lift HA's per-host connection cap of the shared session.
        aiohttp_client.MAXIMUM_CONNECTIONS_PER_HOST = args.connector_limit

    result: dict[str, Any] = {}
    config_dir = tempfile.mkdtemp(prefix="iotmp-bench-ha-")
    try:
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)  # find custom_components/
            url = info["http_url"]
            entry = MockConfigEntry(
                domain=DOMAIN,
                title=f"{info['user']} @ 127.0.0.1",
                unique_id=entry_unique_id(url, info["user"]),
                data={
                    CONF_URL: url,
                    CONF_VERIFY_SSL: True,
                    CONF_AUTH_METHOD: AUTH_TOKEN,
                    CONF_TOKEN: info["token"],
                    CONF_ACCOUNT: info["user"],
                },
                options={
                    CONF_ALL_DEVICES: True,
                    CONF_DEVICES: [],
                    CONF_UPDATE_INTERVAL: DEFAULT_UPDATE_INTERVAL,
                },
            )
            entry.add_to_hass(hass)
            await hass.async_block_till_done()

            # ---------------------------------------------------------- setup
            gc.collect()
            rss0 = rss_mb()
            cpu0 = time.process_time()
            start = time.perf_counter()
            ok = await hass.config_entries.async_setup(entry.entry_id)
            loaded_at = time.perf_counter() - start
            if not ok or entry.state is not ConfigEntryState.LOADED:
                raise RuntimeError(f"config entry did not load: {entry.state}")
            manager = entry.runtime_data.manager
            ent_reg = er.async_get(hass)
            wanted: list[tuple[str, str, str]] = []  # (platform, unique id, device id)
            for device_id, device in manager.devices.items():
                for spec in (connectivity_spec(), *device.specs):
                    wanted.append(
                        (spec.platform, manager.unique_id(device_id, spec.key), device_id)
                    )

            def not_ready() -> list[str]:
                missing = []
                for domain, unique_id, device_id in wanted:
                    entity_id = ent_reg.async_get_entity_id(domain, DOMAIN, unique_id)
                    if entity_id is None:
                        missing.append(f"{unique_id} (no entity)")
                        continue
                    reg = ent_reg.async_get(entity_id)
                    if reg is not None and reg.disabled_by is not None:
                        continue  # disabled by default (diagnostic): never has a state
                    state = hass.states.get(entity_id)
                    if state is None:
                        missing.append(f"{entity_id} (no state)")
                    elif domain == "button" or not manager.devices[device_id].connected:
                        continue  # a button's state is its last press: unknown is right
                    elif state.state in (STATE_UNAVAILABLE, STATE_UNKNOWN):
                        missing.append(f"{entity_id} ({state.state})")
                return missing

            deadline = start + args.setup_timeout
            missing = not_ready()
            while missing and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
                missing = not_ready()
            ready_at = time.perf_counter() - start
            setup_cpu = time.process_time() - cpu0
            await hass.async_block_till_done()
            gc.collect()
            rss1 = rss_mb()
            entity_ids = {
                e.entity_id for e in er.async_entries_for_config_entry(ent_reg, entry.entry_id)
            }
            enabled = [
                e
                for e in er.async_entries_for_config_entry(ent_reg, entry.entry_id)
                if e.disabled_by is None
            ]
            result.update(
                {
                    "setup_loaded_s": loaded_at,
                    "setup_ready_s": ready_at if not missing else float("nan"),
                    "setup_cpu_s": setup_cpu,
                    "not_ready": missing[:10],
                    "not_ready_count": len(missing),
                    "entities": len(entity_ids),
                    "entities_enabled": len(enabled),
                    "devices": len(manager.devices),
                    "rss_before_mb": rss0,
                    "rss_after_mb": rss1,
                    "mb_per_device": (rss1 - rss0) / max(1, len(manager.devices)),
                }
            )

            # Let every stream connect (one WebSocket per device + the event stream).
            settle_until = time.monotonic() + args.settle
            while time.monotonic() < settle_until:
                streams = [d.stream for d in manager.devices.values()]
                if all(s is not None and s.connected for s in streams):
                    break
                await asyncio.sleep(0.1)
            streams_up = sum(
                1 for d in manager.devices.values() if d.stream is not None and d.stream.connected
            )
            result["streams_connected"] = streams_up
            await asyncio.sleep(1.0)

            bench_domain = "sensor" if args.bench_kind == "output" else "number"
            bench_ids = {
                ent_reg.async_get_entity_id(bench_domain, DOMAIN, manager.unique_id(d, BENCH))
                for d in manager.devices
            }
            bench_ids.discard(None)
            yield IotmpHa(hass, result, entity_ids, bench_ids)  # type: ignore[arg-type]
            assert await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_block_till_done()
            await hass.async_stop(force=True)
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)


async def ha_phase(
    args: argparse.Namespace, info: dict[str, Any], fleet: FleetProcess, profile_path: str | None
) -> dict[str, Any]:
    """Set up a fresh HA with the integration, time readiness, then stream through it."""
    async with iotmp_home_assistant(args, info) as ha:
        stream = await measure_ha_stream(
            ha.hass,
            ha.entity_ids,
            ha.bench_ids,
            fleet,
            rate=args.rate,
            duration=args.duration,
            profile_path=profile_path,
            gc_garbage=args.gc_garbage,
        )
        return {**ha.setup, **stream}


# ------------------------------------------------------------------------------ main


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}x"


def report(args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    def m(part: str, key: str) -> float:
        return med([run[part][key] for run in runs])

    bench_entity = "sensor" if args.bench_kind == "output" else "number"
    print()
    print(
        f"IOTMP Home Assistant benchmark: {args.devices} devices, {args.rate:g} updates/s, "
        f"{args.duration:g} s per phase, {len(runs)} repeat(s), medians over repeats; "
        f"streamed resource: {args.bench_kind} ({bench_entity})"
    )
    print(
        f"Python {platform.python_version()}, Home Assistant {runs[0]['ha_version']}, "
        f"{os.cpu_count()} CPUs"
    )
    if args.connector_limit is not None:
        print(f"WHAT-IF: HA's per-host connection limit patched to {args.connector_limit}")
    print()
    rows = [
        ("setup: entry loaded (s)", fmt(m("ha", "setup_loaded_s"), 2), "", ""),
        (
            "setup: all entities have a state (s)",
            fmt(m("ha", "setup_ready_s"), 2),
            fmt(m("base_snap", "seconds"), 2),
            ratio(m("ha", "setup_ready_s"), m("base_snap", "seconds")),
        ),
        ("setup: HA CPU (s)", fmt(m("ha", "setup_cpu_s"), 2), "", ""),
        (
            "latency median (ms)",
            fmt(m("ha", "median_ms"), 1),
            fmt(m("base", "median_ms"), 1),
            ratio(m("ha", "median_ms"), m("base", "median_ms")),
        ),
        (
            "latency p99 (ms)",
            fmt(m("ha", "p99_ms"), 1),
            fmt(m("base", "p99_ms"), 1),
            ratio(m("ha", "p99_ms"), m("base", "p99_ms")),
        ),
        ("latency max (ms)", fmt(m("ha", "max_ms"), 1), fmt(m("base", "max_ms"), 1), ""),
        (
            "updates received / sent",
            f"{m('ha', 'received'):.0f} / {m('ha', 'sent'):.0f}",
            f"{m('base', 'received'):.0f} / {m('base', 'sent'):.0f}",
            "",
        ),
        (
            "CPU s per 1,000 updates (this process)",
            fmt(m("ha", "cpu_per_1000"), 3),
            fmt(m("base", "cpu_per_1000"), 3),
            ratio(m("ha", "cpu_per_1000"), m("base", "cpu_per_1000")),
        ),
        (
            "  server+fleet CPU s per 1,000 updates",
            fmt(m("ha", "fleet_cpu_per_1000"), 3),
            fmt(m("base", "fleet_cpu_per_1000"), 3),
            "",
        ),
        (
            "  server+fleet CPU utilisation",
            fmt(100 * m("ha", "fleet_cpu_util"), 0) + " %",
            fmt(100 * m("base", "fleet_cpu_util"), 0) + " %",
            "",
        ),
        (
            "event-loop lag p99 (ms)",
            fmt(m("ha", "loop_lag_p99_ms"), 1),
            fmt(m("base", "loop_lag_p99_ms"), 1),
            "",
        ),
        # Only the first HA of the process: later ones reuse memory freed by the previous.
        (
            "GC pauses: total / longest (ms)",
            f"{fmt(m('ha', 'gc_total_ms'), 0)} / {fmt(m('ha', 'gc_max_ms'), 0)}",
            f"{fmt(m('base', 'gc_total_ms'), 0)} / {fmt(m('base', 'gc_max_ms'), 0)}",
            "",
        ),
        (
            "memory: RSS delta per device (MB, 1st HA)",
            fmt(runs[0]["ha"]["mb_per_device"], 3),
            "",
            "",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("figure", "HA + iotmp", "baseline", "ratio")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print()
    first = runs[0]["ha"]
    print(
        f"entities: {first['entities']} ({first['entities_enabled']} enabled) on "
        f"{first['devices']} devices; resource streams connected before streaming: "
        f"{first['streams_connected']}/{first['devices']}; "
        f"RSS {first['rss_before_mb']:.0f} -> {first['rss_after_mb']:.0f} MB (first repeat)"
    )
    print(
        f"baseline snapshot: project REST client alone, {runs[0]['base_snap']['resources']} "
        "resources; baseline stream: plain aiohttp WebSockets in this process"
    )
    for i, run in enumerate(runs, 1):
        ha = run["ha"]
        print(
            f"  repeat {i}: ready {fmt(ha['setup_ready_s'], 2)} s, HA p50/p99 "
            f"{fmt(ha['median_ms'])}/{fmt(ha['p99_ms'])} ms, baseline p50/p99 "
            f"{fmt(run['base']['median_ms'])}/{fmt(run['base']['p99_ms'])} ms, "
            f"HA got {ha['received']}/{ha['sent']}, {fmt(ha['mb_per_device'], 3)} MB/device"
        )
        for name, count in ha.get("gc_garbage", []):
            print(f"    cyclic garbage: {count:7d}  {name}")
        if ha["not_ready_count"]:
            print(
                f"    NOT READY after {args.setup_timeout:g} s: {ha['not_ready_count']} "
                f"entities, e.g. {', '.join(ha['not_ready'][:5])}"
            )
    ready = m("ha", "setup_ready_s")
    p99 = m("ha", "p99_ms")
    print()
    print(
        f"target: all entities ready within 10 s: {'met' if ready <= 10 else 'MISSED'} "
        f"({fmt(ready, 2)} s)"
    )
    lost = m("ha", "sent") - m("ha", "received")
    print(
        f"target: p99 latency under 250 ms: {'met' if p99 < 250 and lost == 0 else 'MISSED'} "
        f"({fmt(p99)} ms{f', {lost:.0f} updates never arrived' if lost else ''})"
    )


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    import homeassistant.const as ha_const  # noqa: PLC0415

    preimport()
    log_dir = Path(tempfile.mkdtemp(prefix="iotmp-bench-"))
    fleet = FleetProcess(args.devices, args.tick, args.bench_kind, log_dir / "fleet.log")
    print(f"starting the server and {args.devices} devices (log {fleet.log_path}) ...", flush=True)
    runs: list[dict[str, Any]] = []
    try:
        await fleet.start()
        info = fleet.info
        for i in range(args.repeats):
            run: dict[str, Any] = {"ha_version": ha_const.__version__}
            print(f"repeat {i + 1}/{args.repeats}: baseline snapshot", flush=True)
            run["base_snap"] = await baseline_snapshot(info)
            print(f"repeat {i + 1}/{args.repeats}: baseline stream", flush=True)
            run["base"] = await baseline_stream(info, fleet, args.rate, args.duration)
            print(f"repeat {i + 1}/{args.repeats}: Home Assistant", flush=True)
            profile = f"{args.profile}.{i + 1}" if args.profile else None
            run["ha"] = await ha_phase(args, info, fleet, profile)
            runs.append(run)
    finally:
        await fleet.stop()
    shutil.rmtree(log_dir, ignore_errors=True)  # kept only when something failed
    return runs


def reexec_leg(leg: str, argv: list[str]) -> int:
    """Run this script with a test leg's interpreter (see scripts/_toolchain.sh)."""
    script = (
        'source "$0/scripts/_toolchain.sh"; leg=$1; shift; '
        "case $leg in "
        'minimum) exec "$MIN_VENV/bin/python" "$@" ;; '
        'latest) if [[ $(latest_mode) == host ]]; then exec "$HOST_LATEST_VENV/bin/python" "$@"; '
        'else forky_run "$FORKY_VENV/bin/python" "$@"; fi ;; esac'
    )
    rel = str(Path(__file__).resolve().relative_to(ROOT))
    return subprocess.call(["bash", "-c", script, str(ROOT), leg, rel, *argv], cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark the iotmp integration in Home Assistant.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--devices", type=int, default=200, help="virtual devices")
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="updates per second (all devices)"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per streaming phase")
    parser.add_argument("--repeats", type=int, default=1, help="repeats (medians are reported)")
    parser.add_argument("--tick", type=float, default=1.0, help="device behaviour tick (s)")
    parser.add_argument(
        "--bench-kind",
        choices=("output", "input"),
        default="input",
        help="the streamed resource: an input (a number in HA, subscribed at interval 0) or "
        "an output (a sensor, subscribed at the entry's update interval: at most one value "
        "per interval reaches HA)",
    )
    parser.add_argument(
        "--setup-timeout",
        type=float,
        default=120.0,
        help="give up waiting for entity states after this many seconds",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help="max seconds to wait for all resource streams before streaming",
    )
    parser.add_argument(
        "--connector-limit",
        type=int,
        default=None,
        metavar="N",
        help="what-if: patch HA's per-host connection limit (100) to N (0 = no limit)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile the HA streaming phase to FILE.<repeat> (distorts timings)",
    )
    parser.add_argument(
        "--gc-garbage",
        action="store_true",
        help="list the types of cyclic garbage made during the HA streaming "
        "phase (diagnostic; distorts timings)",
    )
    parser.add_argument("--json", metavar="FILE", help="write all figures as JSON")
    parser.add_argument(
        "--leg",
        choices=("current", "minimum", "latest"),
        default="current",
        help="interpreter: this one, or a test leg's venv (HA 2025.4 / 2026.10)",
    )
    args = parser.parse_args()
    if args.leg != "current":
        argv = sys.argv[1:]
        cleaned: list[str] = []
        skip = False
        for item in argv:
            if skip:
                skip = False
                continue
            if item == "--leg":
                skip = True
                continue
            if item.startswith("--leg="):
                continue
            cleaned.append(item)
        sys.exit(reexec_leg(args.leg, cleaned))
    for name in ("json", "profile"):
        if getattr(args, name):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import logging  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING)
    # "custom integration ... not tested by Home Assistant"
    logging.getLogger("homeassistant.loader").setLevel(logging.ERROR)
    runs = asyncio.run(main_async(args))
    report(args, runs)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
