"""``iotmp bucket ...``: buckets (time series kept on the server)."""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import datetime
from typing import Any, TextIO

from iotmp.client.api import IotmpApiClient
from iotmp.server.buckets.export import csv_header, csv_line, fields_of

from .common import ExitCode, UsageError, add_server_options, parse_json_value

_RELATIVE = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_since(text: str, now_ms: int) -> int:
    """Return a time in ms from ``10m`` / ``2h`` / ``7d`` ago, an ISO date, or ms."""
    match = _RELATIVE.match(text)
    if match:
        return now_ms - int(match.group(1)) * _UNIT_MS[match.group(2)]
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since: expected 10m, 2h, 7d, an ISO date or ms, not {text!r}"
        ) from None
    return int(moment.timestamp() * 1000)


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts / 1000)) + f".{ts % 1000:03d}"


async def cmd_list(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print the buckets."""
    buckets = await client.list_buckets()
    if args.json:
        for bucket in buckets:
            print(_dump(bucket), file=out)
    elif not buckets:
        print("no buckets", file=out)
    for bucket in [] if args.json else buckets:
        config = bucket.get("config") or {}
        source = config.get("source", "?")
        if source == "device":
            source += (
                f" {config.get('device')}/{config.get('resource')} every {config.get('interval')} s"
            )
        state = "" if bucket.get("enabled", True) else "  (disabled)"
        print(f"{bucket['bucket']:<24} {source}{state}", file=out)
    return ExitCode.OK


async def cmd_create(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Create a bucket (a device-resource bucket with --device/--resource/--interval)."""
    config: dict[str, Any] = {"source": "api"}
    if args.device or args.resource:
        if not (args.device and args.resource):
            raise UsageError("--device and --resource go together")
        config = {
            "source": "device",
            "device": args.device,
            "resource": args.resource,
            "update": "interval",
            "interval": args.interval,
        }
    created = await client.create_bucket(
        args.bucket, name=args.name, description=args.description, config=config
    )
    print(_dump(created) if args.json else f"created bucket {created['bucket']}", file=out)
    return ExitCode.OK


async def cmd_read(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print records, one a line (a table, or JSON lines with --json)."""
    min_ts = parse_since(args.since, int(time.time() * 1000)) if args.since else None
    rows = await client.read_bucket(args.bucket, items=args.items, sort=args.sort, min_ts=min_ts)
    for row in rows:
        if args.json:
            print(_dump(row), file=out)
        else:
            print(f"{_when(int(row['ts']))}  {_dump(row.get('val'))}", file=out)
    return ExitCode.OK


async def cmd_write(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Store a record (JSON)."""
    await client.write_bucket(args.bucket, parse_json_value(args.record))
    return ExitCode.OK


async def cmd_export(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print the whole bucket as CSV (Thinger's layout) or as a JSON array."""
    rows = await client.export_bucket(args.bucket)
    if args.format == "json":
        print(_dump(rows), file=out)
        return ExitCode.OK
    columns = sorted({"ts", *(name for row in rows for name in fields_of(row.get("val")))})
    out.write(csv_header(columns))
    for row in rows:
        out.write(csv_line(columns, int(row["ts"]), row.get("val"), "iso"))
    return ExitCode.OK


async def cmd_delete(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Delete a bucket and its records."""
    await client.delete_bucket(args.bucket)
    if not args.json:
        print(f"deleted bucket {args.bucket}", file=out)
    return ExitCode.OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotmp bucket list|create|read|write|export|delete`` to the ``iotmp`` parser."""
    group = commands.add_parser("bucket", help="buckets: time series kept on the server")
    sub_commands = group.add_subparsers(dest="bucket_command", metavar="COMMAND", required=True)

    def add(name: str, summary: str, command: Any) -> argparse.ArgumentParser:
        sub = sub_commands.add_parser(name, help=summary, description=summary)
        sub.set_defaults(client_command=command, command_label=f"bucket {name}")
        if name != "list":
            sub.add_argument("bucket", metavar="BUCKET", help="bucket id")
        add_server_options(sub)
        return sub

    add("list", "list the buckets", cmd_list)
    sub = add("create", "create a bucket", cmd_create)
    sub.add_argument("--name", help="display name (default: the id)")
    sub.add_argument("--description", default="", help="description")
    sub.add_argument("--device", metavar="D", help="sample a resource of device D")
    sub.add_argument("--resource", metavar="R", help="the resource to sample")
    sub.add_argument(
        "--interval", type=float, default=60.0, metavar="S", help="seconds between samples (60)"
    )
    sub = add("read", "print records (oldest first)", cmd_read)
    sub.add_argument("--items", type=int, metavar="N", help="at most N records")
    sub.add_argument("--sort", choices=("asc", "desc"), default="asc", help="order by time")
    sub.add_argument("--since", metavar="WHEN", help="from 10m / 2h / 7d ago, an ISO date or ms")
    sub = add("write", "store a record", cmd_write)
    sub.add_argument("record", metavar="JSON", help="the record, e.g. '{\"t\": 21.5}'")
    sub = add("export", "print the whole bucket as CSV or JSON", cmd_export)
    sub.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default)")
    add("delete", "delete a bucket and its records", cmd_delete)
