"""Application commands on :mod:`iotmp.client`: the IOTMP ``mosquitto_pub``/``mosquitto_sub``.

``iotmp list | describe | read | write | run | stream | events``. Each talks to a
server's REST/WebSocket API; exit codes are 0 (ok), 1 (the server or device
answered with an error, or could not be reached) and 2 (usage).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import aiohttp

from iotmp.client import ABSENT, IotmpApiClient, IotmpApiError, IotmpAuthError

from .common import (
    ExitCode,
    ServerSettings,
    UsageError,
    add_server_options,
    parse_json_value,
    resolve_server,
    stop_on_signals,
)

Command = Callable[[IotmpApiClient, argparse.Namespace, TextIO], Awaitable[int]]


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _human(value: Any) -> str:
    """Format a value for people: strings bare, everything else as indented JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return _dump(value)


def _print_value(value: Any, args: argparse.Namespace, out: TextIO) -> None:
    print(_dump(value) if args.json else _human(value), file=out, flush=True)


# ------------------------------------------------------------------------ commands


async def cmd_list(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print the account's devices and whether each is online."""
    devices = sorted(await client.list_devices(), key=lambda record: record.device_id)
    if args.json:
        for record in devices:
            print(
                _dump(
                    {
                        "device": record.device_id,
                        "name": record.name,
                        "type": record.type,
                        "online": record.connected,
                        "connection_ts": record.connection_ts,
                    }
                ),
                file=out,
            )
        return ExitCode.OK
    if not devices:
        print("no devices", file=out)
        return ExitCode.OK
    width = max(len("DEVICE"), *(len(record.device_id) for record in devices))
    print(f"{'DEVICE':<{width}}  {'STATE':<8}  {'TYPE':<8}  NAME", file=out)
    for record in devices:
        state = "online" if record.connected else "offline"
        print(f"{record.device_id:<{width}}  {state:<8}  {record.type:<8}  {record.name}", file=out)
    return ExitCode.OK


_FN_NAMES = {1: "run", 2: "input", 3: "output", 4: "input/output", 5: "stream"}


async def cmd_describe(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print a device's resources with their kind and sample values."""
    resources = await client.get_resources(args.device)
    if args.json:
        document = {}
        for name, info in sorted(resources.items()):
            entry: dict[str, Any] = {"fn": info.fn}
            if info.sample_in is not ABSENT:
                entry["in"] = info.sample_in
            if info.sample_out is not ABSENT:
                entry["out"] = info.sample_out
            document[name] = entry
        print(_dump(document), file=out)
        return ExitCode.OK
    if not resources:
        print(f"{args.device} has no resources", file=out)
        return ExitCode.OK
    width = max(len("RESOURCE"), *(len(name) for name in resources))
    print(f"{'RESOURCE':<{width}}  {'KIND':<12}  SAMPLE", file=out)
    for name, info in sorted(resources.items()):
        sample: dict[str, Any] = {}
        if info.sample_in is not ABSENT:
            sample["in"] = info.sample_in
        if info.sample_out is not ABSENT:
            sample["out"] = info.sample_out
        kind = _FN_NAMES.get(info.fn, str(info.fn))
        print(f"{name:<{width}}  {kind:<12}  {_dump(sample) if sample else '-'}", file=out)
    return ExitCode.OK


async def cmd_read(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Read a resource once."""
    _print_value(await client.read(args.device, args.resource), args, out)
    return ExitCode.OK


async def cmd_write(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Write a JSON value to an input resource and print what the device answers."""
    result = await client.write(args.device, args.resource, parse_json_value(args.value))
    if result is not None:
        _print_value(result, args, out)
    return ExitCode.OK


async def cmd_run(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Run a resource (a function without input, or one given --input)."""
    value = ABSENT if args.input is None else parse_json_value(args.input)
    result = await client.write(args.device, args.resource, value)
    if result is not None:
        _print_value(result, args, out)
    return ExitCode.OK


async def _until_stopped(
    stream_run: Callable[[], Awaitable[None]], close: Callable[[], Awaitable[None]]
) -> int:
    """Run a reconnecting stream until Ctrl-C / SIGTERM (exit 0) or an auth failure (1)."""
    task = asyncio.ensure_future(stream_run())
    stop = asyncio.Event()
    stopper = asyncio.ensure_future(stop.wait())
    try:
        with stop_on_signals(stop):
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises IotmpAuthError and the like
        return ExitCode.OK
    finally:
        stopper.cancel()
        await close()
        with contextlib.suppress(asyncio.CancelledError, IotmpApiError):
            await task


def _connection_reporter(what: str) -> Callable[[bool], None]:
    state: list[bool | None] = [None]

    def report(up: bool) -> None:
        if state[0] is None and up:
            print(f"iotmp: {what}: connected", file=sys.stderr, flush=True)
        elif up and state[0] is False:
            print(f"iotmp: {what}: reconnected", file=sys.stderr, flush=True)
        elif not up and state[0] is not False:
            print(f"iotmp: {what}: connection lost, reconnecting", file=sys.stderr, flush=True)
        state[0] = up

    return report


async def cmd_stream(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print a resource's values as they come until Ctrl-C."""
    if args.interval < 0:
        raise UsageError("--interval must be >= 0")

    def on_data(resource: str, value: Any) -> None:
        if resource != args.resource:
            return
        if args.json:
            print(_dump(value), file=out, flush=True)
        else:
            stamp = datetime.datetime.now().strftime("%H:%M:%S")
            print(f"{stamp}  {_dump(value)}", file=out, flush=True)

    stream = client.resource_stream(
        args.device, on_data, _connection_reporter(f"{args.device}/{args.resource}")
    )
    stream.subscribe(args.resource, args.interval)
    return await _until_stopped(stream.run, stream.close)


async def cmd_events(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print the account's events (devices connecting and disconnecting) until Ctrl-C."""

    def on_event(frame: dict[str, Any]) -> None:
        if args.json:
            print(_dump(frame), file=out, flush=True)
            return
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        details = {k: v for k, v in frame.items() if k not in {"event", "ts"}}
        print(f"{stamp}  {frame['event']}  {_dump(details)}", file=out, flush=True)

    stream = client.event_stream(on_event, _connection_reporter("events"))
    return await _until_stopped(stream.run, stream.close)


# ---------------------------------------------------------------------- the parsers

COMMANDS: dict[str, tuple[str, Command]] = {
    "list": ("list the account's devices and whether they are online", cmd_list),
    "describe": ("list a device's resources with sample values", cmd_describe),
    "read": ("read a resource once", cmd_read),
    "write": ("write a JSON value to an input resource", cmd_write),
    "run": ("run a resource (a function)", cmd_run),
    "stream": ("print a resource's values until Ctrl-C (reconnects)", cmd_stream),
    "events": ("print device events until Ctrl-C (reconnects)", cmd_events),
}


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the options of application command ``name`` to ``parser``."""
    if name not in {"list", "events"}:
        parser.add_argument("device", metavar="DEVICE", help="device id")
    if name in {"read", "write", "run", "stream"}:
        parser.add_argument("resource", metavar="RESOURCE", help="resource name (a/b for nested)")
    if name == "write":
        parser.add_argument(
            "value",
            metavar="JSON",
            help="value as JSON: 21.5, true, '{\"r\":255}' (a bare word is a string)",
        )
    if name == "run":
        parser.add_argument("--input", metavar="JSON", help="input for a function that takes one")
    if name == "stream":
        parser.add_argument(
            "--interval",
            type=float,
            default=0,
            metavar="S",
            help="one sample every S seconds (default 0: every change the device pushes)",
        )
    add_server_options(parser)


async def _run(command: Command, args: argparse.Namespace, settings: ServerSettings) -> int:
    async with aiohttp.ClientSession() as session:
        client = IotmpApiClient(
            session, settings.url, settings.token, verify_ssl=settings.verify_ssl
        )
        return await command(client, args, sys.stdout)


def run_command(name: str, args: argparse.Namespace) -> int:
    """Run application command ``name``; returns the exit code."""
    return run_client_command(name, COMMANDS[name][1], args)


def run_client_command(name: str, command: Command, args: argparse.Namespace) -> int:
    """Run ``command`` with a client for the server of ``args``; returns the exit code.

    ``name`` (``"read"``, ``"property get"``) prefixes the error messages.
    """
    try:
        settings = resolve_server(args)
        return asyncio.run(_run(command, args, settings))
    except UsageError as err:
        print(f"iotmp {name}: {err}", file=sys.stderr)
        return ExitCode.USAGE
    except IotmpAuthError as err:
        print(f"iotmp {name}: not authorised: {err}", file=sys.stderr)
        return ExitCode.REMOTE
    except IotmpApiError as err:
        print(f"iotmp {name}: {err}", file=sys.stderr)
        return ExitCode.REMOTE
    except KeyboardInterrupt:
        return ExitCode.OK
