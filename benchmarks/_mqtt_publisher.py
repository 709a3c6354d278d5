"""MQTT publisher for ``benchmarks/ha_vs_mqtt.py`` (run as a subprocess; not by hand).

Connects to the broker with paho-mqtt (its own network thread), declares ``--sensors``
entities by Home Assistant's MQTT discovery (retained ``homeassistant/<component>/<id>/config``
with a ``state_topic``; ``--component number``, the default, matches the IOTMP input the
fleet streams, ``sensor`` an output), then answers commands read from stdin, one JSON object a line
(the protocol of ``_ha_common.StreamChild``):

    {"cmd": "prime"}   -> publishes 0 to every state topic, replies {"primed": n}
    {"cmd": "stream", "rate": R, "duration": S, "base_ns": B}
        -> the same R updates/s round-robin over the sensors as the IOTMP fleet sends;
           the value is the send time in µs of CLOCK_MONOTONIC after B
    {"cmd": "quit"}    -> exits
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from typing import Any

import paho.mqtt.client as paho
from _ha_common import emit, paced_stream, serve_commands
from paho.mqtt.enums import CallbackAPIVersion


def sensor_id(index: int) -> str:
    return f"bench_{index + 1:03d}"


def state_topic(index: int) -> str:
    return f"bench/{sensor_id(index)}/state"


def discovery_config(index: int, component: str) -> dict[str, Any]:
    """One entity on its own device, as the IOTMP fleet has one ``bench`` per device."""
    config: dict[str, Any] = {
        "name": "bench",
        "unique_id": f"{sensor_id(index)}_value",
        "state_topic": state_topic(index),
        "device": {"identifiers": [sensor_id(index)], "name": f"Bench {index + 1:03d}"},
    }
    if component == "number":
        # HA's MQTT number drops states outside min..max; the values are µs counts.
        config.update(
            {"command_topic": f"bench/{sensor_id(index)}/set", "min": 0, "max": 1e15, "mode": "box"}
        )
    return config


def connect(port: int) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="ha-vs-mqtt-publisher")
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError("publisher could not connect to the broker")
    return client


async def main_async(args: argparse.Namespace) -> None:
    client = connect(args.port)
    try:
        for index in range(args.sensors):
            client.publish(
                f"homeassistant/{args.component}/{sensor_id(index)}/config",
                json.dumps(discovery_config(index, args.component)),
                retain=True,
            ).wait_for_publish(10)
        emit({"ready": True, "unique_ids": [f"{sensor_id(i)}_value" for i in range(args.sensors)]})

        async def prime(cmd: dict[str, Any]) -> dict[str, Any]:
            for index in range(args.sensors):
                client.publish(state_topic(index), "0")
            return {"primed": args.sensors}

        async def send(index: int, value: int) -> None:
            client.publish(state_topic(index % args.sensors), str(value))

        async def stream(cmd: dict[str, Any]) -> dict[str, Any]:
            rate, duration = float(cmd["rate"]), float(cmd["duration"])
            return await paced_stream(send, rate, duration, int(cmd["base_ns"]))

        await serve_commands({"prime": prime, "stream": stream})
    finally:
        client.loop_stop()
        client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--component", choices=("number", "sensor"), default="number")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
