"""Home Assistant end to end: the iotmp integration against HA's own MQTT integration.

Run (defaults: 100 devices/entities, 200 and 1,000 updates/s, 10 s per phase, 3 rounds):

    python benchmarks/ha_vs_mqtt.py [--devices N] [--rates 200,1000] [--duration S] [--rounds K]

Both systems get the same updates in the same run (see docs/benchmarks.md, "Home
Assistant vs the MQTT integration"):

* iotmp: the fleet subprocess of ``ha_integration.py`` (the server and N virtual devices)
  streams the ``bench`` input of every device (a number entity; the integration
  subscribes inputs at interval 0, every change) into a fresh HA with the integration;
* mqtt: a mosquitto on a loopback port started here and a publisher subprocess
  (``_mqtt_publisher.py``, paho-mqtt) that declares N MQTT number entities by discovery
  and publishes to their state topics, into a fresh HA with HA's ``mqtt`` integration
  (a config entry for the broker).

R updates/s round-robin over the N entities, each value its send time in µs of
CLOCK_MONOTONIC. Latency is timed at HA's ``state_changed`` event; HA's CPU per 1,000
updates is this process's ``time.process_time`` delta (all threads, so paho's network
thread is included) per delivered update. Each round builds one fresh HA per system and
streams every rate through it; the systems alternate which goes first. Printed: min and
median over the rounds, and the per-round ratio iotmp/mqtt (min and median).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _ha_common import (
    HERE,
    ROOT,
    FleetProcess,
    StreamChild,
    measure_ha_stream,
    use_plain_resolver,
)
from ha_integration import iotmp_home_assistant, preimport
from mqtt import start_mosquitto

SYSTEMS = ("iotmp", "mqtt")
FIGURES = (
    ("median_ms", "latency p50 (ms)", 2),
    ("p99_ms", "latency p99 (ms)", 2),
    ("cpu_per_1000", "HA CPU s per 1,000 updates", 3),
    ("fleet_cpu_util", "sender process CPU (fraction of a core)", 2),
    ("loop_lag_p99_ms", "HA event-loop lag p99 (ms)", 1),
    ("gc_max_ms", "HA longest GC pause (ms)", 1),
    ("sender_gc_max_ms", "sender longest GC pause (ms)", 1),
    ("send_lag_p99_ms", "sender schedule lag p99 (ms)", 1),
)
"""(key, label, digits): the figures tabled per rate. The sender is the server with the
devices (iotmp) or the paho publisher (mqtt); its load explains part of the latency."""


@contextlib.asynccontextmanager
async def mqtt_home_assistant(
    port: int, publisher: StreamChild, component: str, setup_timeout: float
) -> AsyncIterator[tuple[Any, set[str], dict[str, Any]]]:
    """A fresh HA with the ``mqtt`` integration and every discovered entity holding a state.

    Yields the HA, the benchmark entity ids and the setup figures; unloaded on exit.
    """
    from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN  # noqa: PLC0415
    from homeassistant.helpers import entity_registry as er  # noqa: PLC0415
    from pytest_homeassistant_custom_component.common import (  # noqa: PLC0415
        MockConfigEntry,
        async_test_home_assistant,
    )

    unique_ids: list[str] = publisher.info["unique_ids"]
    config_dir = tempfile.mkdtemp(prefix="iotmp-bench-ha-mqtt-")
    # The MQTT integration reads configuration.yaml; give it an empty one of its own.
    Path(config_dir, "configuration.yaml").write_text("", encoding="utf-8")  # noqa: ASYNC240
    try:
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            entry = MockConfigEntry(domain="mqtt", data={"broker": "127.0.0.1", "port": port})
            entry.add_to_hass(hass)
            cpu0, start = time.process_time(), time.perf_counter()
            if not await hass.config_entries.async_setup(entry.entry_id):
                raise RuntimeError("the mqtt config entry did not load")
            registry = er.async_get(hass)
            deadline = start + setup_timeout

            def entity_ids() -> set[str]:
                found = {registry.async_get_entity_id(component, "mqtt", u) for u in unique_ids}
                return {e for e in found if e is not None}

            while len(ids := entity_ids()) < len(unique_ids) and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

            def waiting() -> int:
                return sum(
                    1
                    for e in ids
                    if (s := hass.states.get(e)) is None
                    or s.state in (STATE_UNAVAILABLE, STATE_UNKNOWN)
                )

            # An entity subscribes its state topic a little after it is registered: prime
            # (publish a first value to every state topic) until every entity has a state.
            while waiting() and time.perf_counter() < deadline:
                await publisher.command({"cmd": "prime"})
                await asyncio.sleep(0.5)
            setup = {
                "setup_ready_s": time.perf_counter() - start,
                "setup_cpu_s": time.process_time() - cpu0,
                "entities": len(ids),
                "not_ready_count": waiting() + len(unique_ids) - len(ids),
            }
            await asyncio.sleep(1.0)
            yield hass, ids, setup
            assert await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_block_till_done()
            await hass.async_stop(force=True)
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)


def iotmp_options(args: argparse.Namespace) -> argparse.Namespace:
    """What ``iotmp_home_assistant`` reads from its arguments."""
    return argparse.Namespace(
        setup_timeout=args.setup_timeout,
        settle=args.settle,
        connector_limit=args.connector_limit,
        bench_kind="input",
    )


async def one_system(
    system: str,
    args: argparse.Namespace,
    *,
    fleet: FleetProcess,
    publisher: StreamChild,
    broker_port: int,
    profile: str | None,
) -> dict[str, Any]:
    """One fresh HA for ``system``; every rate streamed through it."""
    stack = contextlib.AsyncExitStack()
    async with stack:
        if system == "iotmp":
            ha = await stack.enter_async_context(
                iotmp_home_assistant(iotmp_options(args), fleet.info)
            )
            hass, ids, setup, child = ha.hass, ha.bench_ids, ha.setup, fleet
        else:
            hass, ids, setup = await stack.enter_async_context(
                mqtt_home_assistant(broker_port, publisher, "number", args.setup_timeout)
            )
            child = publisher
        out: dict[str, Any] = {"setup": setup, "rates": {}}
        for rate in args.rates:
            out["rates"][str(rate)] = await measure_ha_stream(
                hass,
                ids,
                ids,
                child,
                rate=rate,
                duration=args.duration,
                profile_path=f"{profile}.{system}.{rate:g}" if profile else None,
            )
            await asyncio.sleep(0.5)
        return out


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    preimport()
    use_plain_resolver()
    log_dir = Path(tempfile.mkdtemp(prefix="iotmp-bench-vs-mqtt-"))
    fleet = FleetProcess(args.devices, args.tick, "input", log_dir / "fleet.log")
    broker, broker_port = start_mosquitto(log_dir)
    publisher = StreamChild(
        [
            str(HERE / "_mqtt_publisher.py"),
            "--port",
            str(broker_port),
            "--sensors",
            str(args.devices),
        ],
        log_dir / "publisher.log",
    )
    print(f"starting the server, {args.devices} devices and the MQTT publisher ...", flush=True)
    rounds: list[dict[str, Any]] = []
    try:
        await fleet.start()
        await publisher.start()
        for index in range(args.rounds):
            order = SYSTEMS if index % 2 == 0 else SYSTEMS[::-1]
            row: dict[str, Any] = {}
            for system in order:
                print(f"round {index + 1}/{args.rounds}: {system}", flush=True)
                profile = args.profile if index == 0 else None
                row[system] = await one_system(
                    system,
                    args,
                    fleet=fleet,
                    publisher=publisher,
                    broker_port=broker_port,
                    profile=profile,
                )
            rounds.append(row)
    finally:
        await publisher.stop()
        await fleet.stop()
        broker.terminate()
        broker.wait(5)
    shutil.rmtree(log_dir, ignore_errors=True)  # kept only when something failed
    return rounds


def fmt(value: float, digits: int) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # noqa: PLR0124 - nan check


def report(args: argparse.Namespace, rounds: list[dict[str, Any]], load: tuple[str, str]) -> None:
    print()
    print(
        f"Home Assistant: iotmp integration vs MQTT integration; {args.devices} devices/entities, "
        f"{args.duration:g} s per phase, {len(rounds)} rounds (min / median over rounds)"
    )
    import homeassistant.const as ha_const  # noqa: PLC0415

    print(
        f"Python {platform.python_version()}, Home Assistant {ha_const.__version__}, "
        f"{os.cpu_count()} CPUs; load average before {load[0]}, after {load[1]}"
    )
    head = ("rate/s", "figure", "iotmp", "mqtt", "ratio iotmp/mqtt")
    lines: list[tuple[str, ...]] = []
    for rate in args.rates:
        key = str(rate)
        for name, label, digits in FIGURES:
            cells: list[str] = [f"{rate:g}", label]
            for system in SYSTEMS:
                values = [r[system]["rates"][key][name] for r in rounds]
                cells.append(
                    f"{fmt(min(values), digits)} / {fmt(statistics.median(values), digits)}"
                )
            ratios = [
                r["iotmp"]["rates"][key][name] / r["mqtt"]["rates"][key][name]
                for r in rounds
                if r["mqtt"]["rates"][key][name]
            ]
            cells.append(f"{min(ratios):.2f} / {statistics.median(ratios):.2f}" if ratios else "")
            lines.append(tuple(cells))
        delivered = []
        for system in SYSTEMS:
            got = [r[system]["rates"][key]["received"] for r in rounds]
            sent = [r[system]["rates"][key]["sent"] for r in rounds]
            delivered.append(f"{min(got)} / {max(sent)}")
        lines.append((f"{rate:g}", "delivered (min) / sent", *delivered, ""))
    for name, label in (("setup_ready_s", "setup: ready (s)"), ("setup_cpu_s", "setup: CPU (s)")):
        cells = ["-", label]
        for system in SYSTEMS:
            values = [r[system]["setup"][name] for r in rounds]
            cells.append(f"{min(values):.2f} / {statistics.median(values):.2f}")
        lines.append((*cells, ""))
    widths = [max(len(row[i]) for row in (head, *lines)) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for row in lines:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print()
    for index, r in enumerate(rounds, 1):
        parts = []
        for rate in args.rates:
            for system in SYSTEMS:
                m = r[system]["rates"][str(rate)]
                p99, cpu = fmt(m["p99_ms"], 1), fmt(m["cpu_per_1000"], 3)
                parts.append(f"{system}@{rate:g} p99 {p99} ms, CPU {cpu}")
        print(f"  round {index}: " + "; ".join(parts))
    for rate in args.rates:
        key = str(rate)
        worse = [
            name
            for name in ("p99_ms", "cpu_per_1000")
            if statistics.median(
                r["iotmp"]["rates"][key][name] / r["mqtt"]["rates"][key][name] for r in rounds
            )
            > 1.0
        ]
        verdict = "met" if not worse else f"MISSED ({', '.join(worse)} worse than MQTT)"
        print(f"target at {rate:g}/s: p99 and CPU per 1,000 no worse than MQTT: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Home Assistant: the iotmp integration vs HA's MQTT integration.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--devices", type=int, default=100, help="devices = MQTT entities")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(v) for v in text.split(",")],
        default=[200.0, 1000.0],
        help="updates per second, comma-separated; each streamed in every HA",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (systems interleaved)")
    parser.add_argument(
        "--tick",
        type=float,
        default=3600.0,
        help="device behaviour tick (s); long, so only the benchmark values change",
    )
    parser.add_argument("--setup-timeout", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=10.0, help="max s for the iotmp streams")
    parser.add_argument(
        "--connector-limit",
        type=int,
        default=None,
        metavar="N",
        help="what-if: patch HA's per-host connection limit (100) to N (0 = no limit)",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile round 1 into FILE.<system>.<rate>"
    )
    parser.add_argument("--json", metavar="FILE", help="write all figures as JSON")
    args = parser.parse_args()
    for name in ("json", "profile"):
        if getattr(args, name):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("homeassistant.loader").setLevel(logging.ERROR)
    load_before = Path("/proc/loadavg").read_text().split()[0]
    rounds = asyncio.run(main_async(args))
    load_after = Path("/proc/loadavg").read_text().split()[0]
    report(args, rounds, (load_before, load_after))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
