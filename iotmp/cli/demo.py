"""``iotmp demo``: the server and the seven virtual devices in one process, on loopback."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

from iotmp.server.app import IotmpServer
from iotmp.server.config import DEMO_USER, ConfigError, DeviceConfig
from iotmp.server.demo_files import short_token
from iotmp.server.demo_resources import DemoReceiver, start_demo_resources
from iotmp.sim.fleet import Fleet
from iotmp.sim.virtual_device import DEFAULT_TICK

from . import server as server_cli
from . import sim as sim_cli
from .common import ExitCode, setup_logging, stop_on_signals
from .event_loop import LOOP_CHOICES, LOOP_HELP, EventLoopError, choose_loop, run_on
from .log_format import LOG_FORMATS

_LOGGER = logging.getLogger("iotmp.demo")

DESCRIPTION = (
    "Run the IOTMP server and seven virtual devices (sensor, plug, lamps, board, counter, "
    "controller) in one process on 127.0.0.1. Ctrl-C stops both."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``iotmp demo``'s options to ``parser``."""
    parser.add_argument(
        "--demo-file",
        type=Path,
        metavar="FILE",
        help="where the URL, user, token and devices are written (default: the data dir)",
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, help="HTTP port (default 25280)")
    parser.add_argument("--tcp-port", type=int, help="device TCP port (default 25204)")
    parser.add_argument("--tls-port", type=int, help="device TLS port (default 25206)")
    parser.add_argument("--https-port", type=int, help="HTTPS API port (default 25243)")
    parser.add_argument("--no-tls", action="store_true", help="no TLS listeners")
    parser.add_argument(
        "--mqtt-port", type=int, help="built-in MQTT broker port (default 1883; needs iotmp[mqtt])"
    )
    parser.add_argument("--no-mqtt", action="store_true", help="no MQTT broker")
    parser.add_argument("--seed", type=int, help="random seed of the simulated physics")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (default) or json: one JSON object per line, for log shippers",
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR (default WARNING)"
    )
    parser.add_argument("--loop", choices=LOOP_CHOICES, default="auto", help=LOOP_HELP)


def _sim_args(args: argparse.Namespace) -> argparse.Namespace:
    """Build the options ``iotmp sim --demo`` would have, for the demo's own devices."""
    return argparse.Namespace(
        transport="tcp",
        insecure=False,
        cafile=None,
        interval=DEFAULT_TICK,
        seed=args.seed,
        keep_alive=60.0,
        reconnect_delay=1.0,
    )


def _banner(
    url: str,
    token: str,
    demo_file: str,
    devices: list[str],
    *,
    https_url: str | None = None,
    mqtt_port: int | None = None,
) -> str:
    short = short_token(token)
    mqtt = (
        [
            f"  mqtt        127.0.0.1:{mqtt_port} (built-in broker; user {DEMO_USER},"
            " password in the demo file)"
        ]
        if mqtt_port
        else []
    )
    return "\n".join(
        [
            "IOTMP demo running. Ctrl-C stops it.",
            f"  server      {url}",
            *([f"  https       {https_url} (self-signed certificate)"] if https_url else []),
            *mqtt,
            f"  user        {DEMO_USER}",
            f"  token       {short} (in full in {demo_file})",
            f"  devices     {', '.join(devices)}",
            "",
            "Try, in another terminal:",
            "  iotmp list",
            "  iotmp read env-sensor environment",
            "  iotmp write smart-plug relay true",
            "  iotmp stream counter count",
            "  iotmp bucket read environment --items 5     (the sensor writes every 10 s)",
            "  iotmp property get controller config",
            "  iotmp property patch controller config '{\"setpoint\": 27}'",
            "  iotmp alarm list                            (setpoint_high fired: above 25)",
        ]
    )


async def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C / SIGTERM; returns the exit code."""
    stop = asyncio.Event()
    # From the start: a Ctrl-C during startup stops the demo once it is up, cleanly.
    with stop_on_signals(stop):
        return await _run(args, stop)


async def _run(args: argparse.Namespace, stop: asyncio.Event) -> int:
    server_args = argparse.Namespace(
        demo=True,
        config=None,
        demo_file=args.demo_file,
        host=args.host,
        http_port=args.http_port,
        tcp_port=args.tcp_port,
        tls_port=args.tls_port,
        https_port=args.https_port,
        no_tls=args.no_tls,
        mqtt_port=-1 if getattr(args, "no_mqtt", False) else getattr(args, "mqtt_port", None),
    )
    try:
        server, document = await server_cli.start_server(server_args)
    except (ConfigError, OSError) as exc:
        print(f"iotmp demo: {exc}", file=sys.stderr)
        return ExitCode.REMOTE if isinstance(exc, server_cli.ListenError) else ExitCode.USAGE
    assert document is not None
    try:
        demo = sim_cli.parse_demo(Path(document["path"]), document)
        devices, target = sim_cli.build_from_demo(_sim_args(args), demo)
    except sim_cli.CliError as err:
        await server.stop()
        print(f"iotmp demo: {err}", file=sys.stderr)
        return err.code
    try:
        receiver: DemoReceiver = await start_demo_resources(server, _report)
    except Exception as exc:  # a broken demo database: say so, do not trace
        await server.stop()
        print(
            f"iotmp demo: cannot prepare the demo's bucket, property and alarm: {exc}",
            file=sys.stderr,
        )
        return ExitCode.REMOTE
    fleet = Fleet(devices)
    photocell = start_photocell(server)
    names = [d.device_id for d in devices] + (["photocell (MQTT)"] if photocell else [])
    try:
        await fleet.start(target)
        mqtt_port = server.mqtt.port if server.mqtt is not None else None
        print(
            _banner(
                server.http_url,
                document["token"],
                document["path"],
                names,
                https_url=server.https_url,
                mqtt_port=mqtt_port,
            ),
            flush=True,
        )
        await stop.wait()
    finally:
        print("stopping the demo", file=sys.stderr, flush=True)
        if photocell is not None:
            photocell.stop()
        await fleet.stop()
        await receiver.close()
        await server.stop()
    return ExitCode.OK


def _report(line: str) -> None:
    print(line, flush=True)


def start_photocell(server: IotmpServer) -> Any:
    """With the built-in broker: an MQTT device ``photocell`` run by paho-mqtt in a thread."""
    if server.mqtt is None or server.mqtt.port is None:
        return None
    from iotmp.sim.photocell import Photocell  # noqa: PLC0415 - iotmp[mqtt]

    key = secrets.token_urlsafe(12)
    server.add_device(
        DeviceConfig("photocell", DEMO_USER, key, name="Photocell (Adafruit example)", type="MQTT")
    )
    photocell = Photocell("127.0.0.1", server.mqtt.port, DEMO_USER, key, interval=2.0)
    threading.Thread(target=photocell.run, name="photocell", daemon=True).start()
    return photocell


def run_command(args: argparse.Namespace) -> int:
    """Run ``iotmp demo`` with parsed arguments."""
    setup_logging(args.log_level, log_format=getattr(args, "log_format", "text"))
    try:
        loop = choose_loop(getattr(args, "loop", "auto"))
    except EventLoopError as exc:
        print(f"iotmp demo: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        return run_on(loop, run(args))
    except KeyboardInterrupt:
        return ExitCode.OK
