"""MQTT bridge benchmark: IOTMP device -> server -> MQTT subscriber vs plain MQTT.

Both paths in one run, same payload (a JSON integer: the send time in µs of
CLOCK_MONOTONIC) and the same subscriber (paho-mqtt, its own network thread):

* baseline: a paho-mqtt publisher -> mosquitto -> subscriber;
* iotmp:    an IOTMP virtual device (TCP) streams the value -> the server (bridge,
            aiomqtt) -> the same mosquitto -> subscriber;
* builtin:  the same, the server's built-in amqtt broker instead of mosquitto.

Each path is offered ``--rate`` messages/s for ``--duration`` s, ``--rounds``
times; printed are the medians of the delivered rate and p50/p99 latency, and
the ratio of our rate to the baseline's. The IOTMP device runs in a child process;
the server and the subscriber share the benchmark's process.

    python benchmarks/mqtt.py [--rate 1000] [--duration 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from iotmp.server.mqtt.settings import MqttConfig
from iotmp.server.testing import TestDevice, run_test_server
from iotmp.sim.profile import parse_profile
from iotmp.sim.virtual_device import VirtualDevice

USER = "bench"
TOPIC_BASELINE = "baseline/value"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Subscriber:
    """paho-mqtt subscriber recording the latency of every message."""

    def __init__(self, port: int, topic: str, auth: tuple[str, str] | None = None) -> None:
        self.latencies: list[float] = []
        self.first: float | None = None
        self.last: float | None = None
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic)
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.recording = False

    def _message(self, _c: Any, _u: Any, message: Any) -> None:
        if not self.recording or message.retain:
            return
        now_us = time.monotonic_ns() // 1000
        try:
            sent = int(json.loads(message.payload))
        except ValueError:
            return
        self.latencies.append((now_us - sent) / 1000.0)
        now = time.monotonic()
        self.first = self.first or now
        self.last = now

    def reset(self) -> None:
        self.latencies, self.first, self.last = [], None, None
        self.started = time.monotonic()
        self.recording = True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def summary(sub: Subscriber, sent: int, duration: float) -> dict[str, float]:
    lat = sorted(sub.latencies)
    got = len(lat)
    # Delivered rate: messages over the time from the first send to the last arrival
    # (a path that falls behind is not credited for draining its backlog later).
    elapsed = max(duration, (sub.last or sub.started) - sub.started)
    return {
        "sent": sent,
        "received": got,
        "rate": got / elapsed,
        "p50_ms": lat[got // 2] if got else float("nan"),
        "p99_ms": lat[int(0.99 * (got - 1))] if got else float("nan"),
    }


async def paced(rate: float, duration: float, send: Any) -> int:
    """Call ``await send(value)`` ``rate`` times a second for ``duration`` s."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(rate * duration)
    sent = 0
    while sent < total:
        due = min(total, int(rate * (loop.time() - start)) + 1)
        while sent < due:
            await send(time.monotonic_ns() // 1000)
            sent += 1
        await asyncio.sleep(0.001)
    return sent


async def settle(sub: Subscriber, expected: int, timeout: float = 3.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while len(sub.latencies) < expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def baseline_round(port: int, rate: float, duration: float) -> dict[str, float]:
    sub = Subscriber(port, TOPIC_BASELINE)
    sub.ready.wait(5)
    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    sub.reset()

    async def send(value: int) -> None:
        pub.publish(TOPIC_BASELINE, str(value))

    sent = await paced(rate, duration, send)
    await settle(sub, sent)
    pub.disconnect()
    pub.loop_stop()
    sub.close()
    return summary(sub, sent, duration)


async def iotmp_round(
    broker: str, mosquitto_port: int, rate: float, duration: float
) -> dict[str, float]:
    if broker == "external":
        mqtt = MqttConfig(
            broker="external", host="127.0.0.1", port=mosquitto_port, output_interval=0
        )
    else:
        mqtt = MqttConfig(
            broker="builtin", host="127.0.0.1", port=0, tls_port=None, output_interval=0
        )
    async with run_test_server(
        devices=[TestDevice("bench", credential="pw")], user=USER, mqtt=mqtt
    ) as server:
        service = server.server.mqtt
        assert service is not None
        await service.wait_connected()
        port = mosquitto_port if broker == "external" else service.port
        assert port is not None
        # The device runs in its own process (its CPU does not count against the server).
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--device",
            str(server.tcp_port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            await server.wait_device_connected("bench", 20)
            auth = (USER, server.password) if broker == "builtin" else None
            sub = Subscriber(port, f"iotmp/{USER}/bench/value", auth)
            sub.ready.wait(5)
            await asyncio.sleep(0.5)  # the bridge's device stream is open
            sub.reset()
            child.stdin.write(f"{rate} {duration}\n".encode())
            await child.stdin.drain()
            sent = int((await child.stdout.readline()).decode().split()[1])
            await settle(sub, sent)
            sub.close()
            return summary(sub, sent, duration)
        finally:
            child.stdin.close()
            await child.wait()


def bench_device() -> VirtualDevice:
    profile = parse_profile(
        {
            "name": "bench",
            "device_id": "bench",
            "resources": [{"name": "value", "kind": "output", "value": 0}],
        },
        source="bench",
    )
    return VirtualDevice(profile, user=USER, credential="pw", device_id="bench", tick=3600.0)


async def device_main(tcp_port: int) -> None:
    """Child process: the IOTMP device; streams on each "RATE DURATION" line of stdin."""
    from iotmp.sim.fleet import Fleet, Target  # noqa: PLC0415

    device = bench_device()
    fleet = Fleet([device])
    await fleet.start(Target("127.0.0.1", tcp_port))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            rate, duration = (float(x) for x in line.split())

            async def send(value: int) -> None:
                device.sim.state["value"] = value
                await device.device.stream("value", value)

            sent = await paced(rate, duration, send)
            sys.stdout.write(f"sent {sent}\n")
            sys.stdout.flush()
    finally:
        await fleet.stop()


def start_mosquitto(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    binary = shutil.which("mosquitto", path="/usr/sbin:/usr/bin") or "mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), 0.1):
                return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_mosquitto(Path(tmp))
        try:
            results: dict[str, list[dict[str, float]]] = {
                "baseline": [],
                "iotmp": [],
                "builtin": [],
            }
            for _ in range(args.rounds):
                results["baseline"].append(await baseline_round(port, args.rate, args.duration))
                results["iotmp"].append(
                    await iotmp_round("external", port, args.rate, args.duration)
                )
                results["builtin"].append(
                    await iotmp_round("builtin", port, args.rate, args.duration)
                )
        finally:
            proc.terminate()
            proc.wait(5)
    base_rate = median(results["baseline"], "rate")
    print(f"offered {args.rate:g} msg/s for {args.duration:g} s, {args.rounds} rounds (medians)")
    print(f"{'path':10} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'lost':>6} {'rate/base':>9}")
    for name, rows in results.items():
        lost = median(rows, "sent") - median(rows, "received")
        rate = median(rows, "rate")
        print(
            f"{name:10} {rate:9.0f} {median(rows, 'p50_ms'):8.2f} {median(rows, 'p99_ms'):8.2f}"
            f" {lost:6.0f} {rate / base_rate:9.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", type=int, metavar="TCP_PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.device:
        asyncio.run(device_main(args.device))
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
