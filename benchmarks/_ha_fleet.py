"""Server + virtual-device fleet for ``benchmarks/ha_integration.py`` (run as a subprocess).

Not meant to be run by hand. It starts the local server in-process
(``iotmp.server.testing.run_test_server``) and ``--devices`` virtual devices over TCP,
cycling through the demo profiles, each with one extra benchmark resource:

    bench   an output (fn 3, shown as a sensor) or, with ``--bench-kind input``, an
            input (fn 2, shown as a number), holding a number. The fleet streams it on
            demand ("stream on change", as firmware does); the value is the send time in
            microseconds of CLOCK_MONOTONIC minus a base given by the parent (the clock is
            system-wide, so the parent computes the latency when the value arrives).

Protocol: one JSON object per line. On stdout first ``{"ready": true, ...}`` (URL,
user, token, device ids), then one reply per command read from stdin:

    {"cmd": "stream", "rate": R, "duration": S, "base_ns": B}
        -> {"sent": n, "cpu": s, "wall": s, "lag_p99_ms": x, "lag_max_ms": x}
    {"cmd": "quit"}   -> stops and exits
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _ha_common import emit, paced_stream, serve_commands

from iotmp.server.testing import TestDevice, run_test_server
from iotmp.sim.fleet import Fleet, Target
from iotmp.sim.profile import PROFILES_DIR, parse_profile
from iotmp.sim.virtual_device import VirtualDevice

PROFILE_ORDER = (
    "environment_sensor",
    "smart_plug",
    "rgb_lamp",
    "rgb_strip",
    "gpio_board",
    "counter",
    "controller",
)
BENCH = "bench"
USER = "bench"


def bench_profile(name: str, kind: str) -> Any:
    """A built-in profile plus the ``bench`` resource (``kind`` output or input)."""
    data = json.loads((PROFILES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    data["resources"].append({"name": BENCH, "kind": kind, "value": 0})
    return parse_profile(data, source=f"{name}+bench")


async def stream_phase(
    devices: list[VirtualDevice], rate: float, duration: float, base_ns: int
) -> dict[str, Any]:
    """Stream ``bench`` values round-robin over the devices at ``rate`` per second."""

    async def send(index: int, value: int) -> None:
        vd = devices[index % len(devices)]
        vd.sim.state[BENCH] = value
        try:
            await vd.device.stream(BENCH, value)
        except Exception as exc:
            logging.getLogger(__name__).warning("%s: send failed: %s", vd.device_id, exc)

    return await paced_stream(send, rate, duration, base_ns)


async def main_async(args: argparse.Namespace) -> None:
    profiles = [bench_profile(name, args.bench_kind) for name in PROFILE_ORDER]
    devices: list[VirtualDevice] = []
    for i in range(args.devices):
        profile = profiles[i % len(profiles)]
        device_id = f"{profile.device_id}-{i + 1:03d}"
        devices.append(
            VirtualDevice(
                profile,
                user=USER,
                credential=f"pw-{device_id}",
                device_id=device_id,
                name=f"{profile.device_name} {i + 1:03d}",
                tick=args.tick,
                seed=i,
                reconnect_delay=0.5,
            )
        )
    async with run_test_server(user=USER, request_timeout=10.0, keep_alive=60.0) as server:
        for vd in devices:
            server.add_device(TestDevice(vd.device_id, credential=vd.credential, name=vd.name))
        fleet = Fleet(devices)
        await fleet.start(Target("127.0.0.1", server.tcp_port))
        try:
            await fleet.wait_connected(timeout=120)
            for vd in devices:
                await server.wait_device_connected(vd.device_id, timeout=120)
            emit(
                {
                    "ready": True,
                    "http_url": server.http_url,
                    "user": server.user,
                    "token": server.token,
                    "devices": [vd.device_id for vd in devices],
                }
            )

            async def stream(cmd: dict[str, Any]) -> dict[str, Any]:
                rate, duration = float(cmd["rate"]), float(cmd["duration"])
                return await stream_phase(devices, rate, duration, int(cmd["base_ns"]))

            await serve_commands({"stream": stream})
        finally:
            await fleet.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--tick", type=float, default=1.0)
    parser.add_argument("--bench-kind", choices=("output", "input"), default="output")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
