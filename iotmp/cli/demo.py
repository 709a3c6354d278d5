"""``iotmp demo``: the server and the seven virtual devices in one process, on loopback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from iotmp.server.config import DEMO_USER, ConfigError
from iotmp.server.demo_files import short_token
from iotmp.sim.fleet import Fleet
from iotmp.sim.virtual_device import DEFAULT_TICK

from . import server as server_cli
from . import sim as sim_cli
from .common import EXIT_OK, EXIT_REMOTE, EXIT_USAGE, setup_logging

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
    parser.add_argument("--no-tls", action="store_true", help="no TLS listener")
    parser.add_argument("--seed", type=int, help="random seed of the simulated physics")
    parser.add_argument(
        "--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR (default WARNING)"
    )


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


def _banner(url: str, token: str, demo_file: str, devices: list[str]) -> str:
    short = short_token(token)
    return "\n".join(
        [
            "IOTMP demo running. Ctrl-C stops it.",
            f"  server      {url}",
            f"  user        {DEMO_USER}",
            f"  token       {short} (in full in {demo_file})",
            f"  devices     {', '.join(devices)}",
            "",
            "Try, in another terminal:",
            "  iotmp list",
            "  iotmp read env-sensor environment",
            "  iotmp write smart-plug relay true",
            "  iotmp stream counter count",
        ]
    )


async def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C / SIGTERM; returns the exit code."""
    server_args = argparse.Namespace(
        demo=True,
        config=None,
        demo_file=args.demo_file,
        host=args.host,
        http_port=args.http_port,
        tcp_port=args.tcp_port,
        tls_port=args.tls_port,
        no_tls=args.no_tls,
    )
    try:
        server, document = await server_cli.start_server(server_args)
    except (ConfigError, OSError) as exc:
        print(f"iotmp demo: {exc}", file=sys.stderr)
        return EXIT_REMOTE if isinstance(exc, server_cli.ListenError) else EXIT_USAGE
    assert document is not None
    try:
        demo = sim_cli.parse_demo(Path(document["path"]), document)
        devices, target = sim_cli.build_from_demo(_sim_args(args), demo)
    except sim_cli.CliError as err:
        await server.stop()
        print(f"iotmp demo: {err}", file=sys.stderr)
        return err.code
    fleet = Fleet(devices)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await fleet.start(target)
        print(
            _banner(
                server.http_url, document["token"], document["path"], [d.device_id for d in devices]
            ),
            flush=True,
        )
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        print("stopping the demo", file=sys.stderr, flush=True)
        await fleet.stop()
        await server.stop()
    return EXIT_OK


def run_command(args: argparse.Namespace) -> int:
    """Run ``iotmp demo`` with parsed arguments."""
    setup_logging(args.log_level)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return EXIT_OK
