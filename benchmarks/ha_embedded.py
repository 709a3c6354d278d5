"""Embedded server vs REST server in Home Assistant: devices to entities, command round trip.

Run (defaults: 50 devices, 200 commands, 3 rounds):

    python benchmarks/ha_embedded.py [--devices N] [--commands C] [--rounds R] [--json FILE]
    python benchmarks/ha_embedded.py --leg minimum|latest    # HA 2025.4 / HA 2026.10 venvs

Per round, for each path, a fresh Home Assistant (``async_test_home_assistant``, temp
config dir) loads one config entry, then N virtual devices (five demo profiles, in
this process, over TCP on 127.0.0.1) are registered and connect:

* ``rest``: the entry signs in to a local server (``iotmp.server.testing``) over REST and
  WebSockets, the path a remote server takes;
* ``embedded``: the entry runs the server itself (``mode: embedded``), no REST hop.

Measured: time from the devices' start until every entity of every device exists and
has a state (connectivity, sensors, switches... not unavailable/unknown), and the round
trip of ``switch.turn_on``/``turn_off`` on a smart plug (service call until the state
the device echoed is in Home Assistant), p50/p99 over C commands. Medians over the
rounds, embedded/REST ratios of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROFILES = ("smart_plug", "environment_sensor", "counter", "controller", "rgb_lamp")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class EmbeddedTarget:
    """What ``run_virtual_devices`` needs from the embedded server."""

    def __init__(self, embedded: Any, user: str) -> None:
        self.embedded = embedded
        self.user = user
        self.tcp_port = embedded.server.tcp_port

    async def add_device(self, device: Any) -> None:
        await self.embedded.async_add_device(device.id, device.name, device.credential)


async def one_path(path: str, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh Home Assistant, one entry, N devices connecting, C commands."""
    from homeassistant import loader  # noqa: PLC0415
    from homeassistant.const import (  # noqa: PLC0415
        CONF_TOKEN,
        CONF_URL,
        CONF_VERIFY_SSL,
        EVENT_STATE_CHANGED,
        STATE_UNAVAILABLE,
        STATE_UNKNOWN,
    )
    from homeassistant.helpers import aiohttp_client  # noqa: PLC0415
    from homeassistant.helpers import entity_registry as er  # noqa: PLC0415
    from pytest_homeassistant_custom_component.common import (  # noqa: PLC0415
        MockConfigEntry,
        async_test_home_assistant,
    )

    from custom_components.iotmp import const  # noqa: PLC0415
    from custom_components.iotmp.config_flow import entry_unique_id  # noqa: PLC0415
    from custom_components.iotmp.coordinator import connectivity_spec  # noqa: PLC0415
    from iotmp.server.testing import run_test_server  # noqa: PLC0415
    from iotmp.sim.testing import run_virtual_devices  # noqa: PLC0415

    def plain_resolver(hass: Any) -> Any:
        # As the HA test harness does: the URL is a literal 127.0.0.1.
        from aiohttp.resolver import AsyncResolver  # noqa: PLC0415

        resolver = AsyncResolver()
        resolver.real_close = resolver.close  # type: ignore[attr-defined]
        return resolver

    aiohttp_client._async_make_resolver = plain_resolver
    options = {const.CONF_ALL_DEVICES: True, const.CONF_DEVICES: [], const.CONF_UPDATE_INTERVAL: 1}
    per_profile = max(1, args.devices // len(PROFILES))
    result: dict[str, Any] = {}
    async with run_test_server(user="alice") as rest_server:
        with tempfile.TemporaryDirectory(prefix="iotmp-bench-embedded-") as config_dir:
            async with async_test_home_assistant(config_dir=config_dir) as hass:
                hass.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)
                if path == "rest":
                    url = rest_server.http_url
                    entry = MockConfigEntry(
                        domain=const.DOMAIN,
                        unique_id=entry_unique_id(url, rest_server.user),
                        data={
                            CONF_URL: url,
                            CONF_VERIFY_SSL: True,
                            const.CONF_AUTH_METHOD: const.AUTH_TOKEN,
                            CONF_TOKEN: rest_server.token,
                            const.CONF_ACCOUNT: rest_server.user,
                        },
                        options=options,
                    )
                else:
                    entry = MockConfigEntry(
                        domain=const.DOMAIN,
                        unique_id=const.EMBEDDED_UNIQUE_ID,
                        data={
                            const.CONF_MODE: const.MODE_EMBEDDED,
                            const.CONF_HOST: "127.0.0.1",
                            const.CONF_TCP_PORT: 0,
                            const.CONF_TLS_PORT: None,
                        },
                        options=options,
                    )
                entry.add_to_hass(hass)
                assert await hass.config_entries.async_setup(entry.entry_id)
                await hass.async_block_till_done()
                manager = entry.runtime_data.manager
                target: Any = (
                    rest_server
                    if path == "rest"
                    else EmbeddedTarget(entry.runtime_data.server, const.EMBEDDED_USER)
                )
                ent_reg = er.async_get(hass)
                start = time.perf_counter()
                async with run_virtual_devices(
                    target, profiles=list(PROFILES), count=per_profile, tick=1.0
                ) as fleet:
                    ids = fleet.ids

                    def missing() -> int:
                        count = 0
                        for device_id in ids:
                            device = manager.devices.get(device_id)
                            if device is None or not device.described or not device.connected:
                                count += 1
                                continue
                            for spec in (connectivity_spec(), *device.specs):
                                entity_id = ent_reg.async_get_entity_id(
                                    spec.platform,
                                    const.DOMAIN,
                                    manager.unique_id(device_id, spec.key),
                                )
                                if entity_id is None:
                                    count += 1
                                    continue
                                reg = ent_reg.async_get(entity_id)
                                if reg is not None and reg.disabled_by is not None:
                                    continue
                                state = hass.states.get(entity_id)
                                if state is None or (
                                    spec.platform != "button"
                                    and state.state in (STATE_UNAVAILABLE, STATE_UNKNOWN)
                                ):
                                    count += 1
                        return count

                    left = missing()
                    while left and time.perf_counter() - start < args.timeout:
                        await asyncio.sleep(0.01)
                        left = missing()
                    result["ready_s"] = time.perf_counter() - start
                    result["not_ready"] = left
                    result["entities"] = len(
                        er.async_entries_for_config_entry(ent_reg, entry.entry_id)
                    )

                    plug = next(i for i in ids if i.startswith("smart-plug"))
                    relay = ent_reg.async_get_entity_id(
                        "switch", const.DOMAIN, manager.unique_id(plug, "relay")
                    )
                    assert relay is not None
                    waiting: dict[str, Any] = {}

                    def on_change(event: Any) -> None:
                        if event.data.get("entity_id") != relay:
                            return
                        new = event.data.get("new_state")
                        if new is not None and new.state == waiting.get("want"):
                            waiting["done"].set()

                    unsub = hass.bus.async_listen(EVENT_STATE_CHANGED, on_change)
                    rtts: list[float] = []
                    for index in range(args.commands):
                        current = hass.states.get(relay)
                        turn_on = current is None or current.state != "on"
                        waiting["want"] = "on" if turn_on else "off"
                        waiting["done"] = asyncio.Event()
                        t0 = time.perf_counter()
                        await hass.services.async_call(
                            "switch",
                            "turn_on" if turn_on else "turn_off",
                            {"entity_id": relay},
                            blocking=True,
                        )
                        await asyncio.wait_for(waiting["done"].wait(), 5)
                        rtts.append(time.perf_counter() - t0)
                        del index
                    unsub()
                    result["rtt_p50_ms"] = pct(rtts, 50) * 1000
                    result["rtt_p99_ms"] = pct(rtts, 99) * 1000
                assert await hass.config_entries.async_unload(entry.entry_id)
                await hass.async_block_till_done()
    result["devices"] = len(ids)
    return result


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rounds = []
    for number in range(args.rounds):
        run = {path: await one_path(path, args) for path in ("rest", "embedded")}
        rounds.append(run)
        print(f"round {number + 1}: {json.dumps(run)}", flush=True)
    return rounds


def report(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in ("ready_s", "rtt_p50_ms", "rtt_p99_ms"):
        rest = statistics.median(r["rest"][key] for r in rounds)
        embedded = statistics.median(r["embedded"][key] for r in rounds)
        summary[key] = {"rest": rest, "embedded": embedded, "ratio": embedded / rest}
    title = f"median of {len(rounds)} rounds"
    print(f"\n{title:<24}{'REST':>10}{'embedded':>10}{'ratio':>8}")
    for key, label in (
        ("ready_s", "entities with states (s)"),
        ("rtt_p50_ms", "command p50 (ms)"),
        ("rtt_p99_ms", "command p99 (ms)"),
    ):
        item = summary[key]
        print(f"{label:<24}{item['rest']:>10.2f}{item['embedded']:>10.2f}{item['ratio']:>8.2f}")
    print(
        f"devices {rounds[0]['embedded']['devices']}, entities {rounds[0]['embedded']['entities']}"
        f", not ready at the end: {[r['embedded']['not_ready'] for r in rounds]}"
    )
    return summary


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0, help="readiness bound (s)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--leg", choices=("current", "minimum", "latest"), default="current")
    args = parser.parse_args()
    if args.leg != "current":
        argv = [a for a in sys.argv[1:] if not a.startswith("--leg")]
        if "--leg" in sys.argv:
            index = sys.argv.index("--leg")
            argv = sys.argv[1:index] + sys.argv[index + 2 :]
        sys.exit(reexec_leg(args.leg, argv))
    rounds = asyncio.run(main_async(args))
    summary = report(rounds)
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
