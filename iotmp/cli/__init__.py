"""The ``iotmp`` command: server, virtual devices, demo and application commands.

``iotmp server`` and ``iotmp sim`` run the server and virtual devices;
``iotmp demo`` runs both in one process; ``iotmp list | describe | read |
write | run | stream | events`` use a server's API the way ``mosquitto_pub``
and ``mosquitto_sub`` use a broker.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from iotmp import __version__

from . import app, buckets, demo, endpoints, properties, server, sim
from .common import ExitCode


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of ``iotmp`` and all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="iotmp",
        description="IOTMP server, virtual devices and API client.",
        epilog="'iotmp COMMAND --help' explains each command.",
    )
    parser.add_argument("--version", action="version", version=f"iotmp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub = commands.add_parser("server", help="run the IOTMP server", description=server.DESCRIPTION)
    server.add_arguments(sub)
    sub = commands.add_parser(
        "sim",
        help="run virtual devices from profiles",
        description=sim.DESCRIPTION,
        epilog=sim.epilog(),
    )
    sim.add_arguments(sub)
    sub = commands.add_parser(
        "demo", help="run the server and seven virtual devices", description=demo.DESCRIPTION
    )
    demo.add_arguments(sub)
    for name, (summary, _command) in app.COMMANDS.items():
        sub = commands.add_parser(
            name, help=summary, description=summary[:1].upper() + summary[1:] + "."
        )
        app.add_arguments(name, sub)
    for group in (properties, buckets, endpoints):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iotmp`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else ExitCode.USAGE
    if args.command == "server":
        return server.run_command(args)
    if args.command == "sim":
        return sim.run_command(args)
    if args.command == "demo":
        return demo.run_command(args)
    client_command = getattr(args, "client_command", None)
    if client_command is not None:
        return app.run_client_command(args.command_label, client_command, args)
    return app.run_command(args.command, args)


if __name__ == "__main__":
    sys.exit(main())
