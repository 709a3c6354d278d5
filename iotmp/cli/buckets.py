"""``iotmp bucket ...``: buckets (time series kept on the server)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands to the ``iotmp`` parser.

    Each subcommand sets ``client_command`` (an :data:`iotmp.cli.app.Command`)
    and ``command_label`` with ``set_defaults``; :func:`iotmp.cli.main` runs it.
    """
