"""``iotmp endpoint ...`` and ``iotmp alarm ...``: endpoints and alarms.

* ``iotmp endpoint list`` / ``iotmp endpoint call ENDPOINT [JSON]``
* ``iotmp alarm rules`` / ``iotmp alarm list [--active] [--rule RULE]`` /
  ``iotmp alarm ack INSTANCE [--note TEXT]``
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any, TextIO

from iotmp.client import ABSENT, IotmpApiClient

from .common import ExitCode, add_server_options, parse_json_value


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _table(rows: list[list[str]], header: list[str], out: TextIO) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


def _when(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")


def _print_items(items: list[dict[str, Any]], args: argparse.Namespace, out: TextIO) -> bool:
    """Print ``items`` one JSON per line with ``--json`` (True), or say there are none."""
    if args.json:
        for item in items:
            print(_dump(item), file=out)
        return True
    return False


# -------------------------------------------------------------------------- endpoints


async def cmd_endpoint_list(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print the account's endpoints."""
    endpoints = sorted(await client.list_endpoints(), key=lambda e: str(e.get("endpoint")))
    if _print_items(endpoints, args, out):
        return ExitCode.OK
    if not endpoints:
        print("no endpoints", file=out)
        return ExitCode.OK
    rows = [
        [
            str(e.get("endpoint")),
            "on" if e.get("enabled", True) else "off",
            str(e.get("type", "")),
            str(e.get("name", "")),
        ]
        for e in endpoints
    ]
    _table(rows, ["ENDPOINT", "ENABLED", "TYPE", "NAME"], out)
    return ExitCode.OK


async def cmd_endpoint_call(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Call an endpoint and print its answer."""
    payload = ABSENT if args.payload is None else parse_json_value(args.payload)
    answer = await client.call_endpoint(args.endpoint, payload)
    if answer is None:
        return ExitCode.OK
    if args.json or not isinstance(answer, str):
        print(_dump(answer) if args.json else json.dumps(answer, indent=2), file=out)
    else:
        print(answer, file=out)
    return ExitCode.OK


# ----------------------------------------------------------------------------- alarms


async def cmd_alarm_rules(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print the account's alarm rules."""
    rules = await client.list_alarm_rules()
    if _print_items(rules, args, out):
        return ExitCode.OK
    if not rules:
        print("no alarm rules", file=out)
        return ExitCode.OK
    rows = []
    for rule in rules:
        source = rule.get("source") or {}
        what = "/".join(
            str(source[k]) for k in ("device", "resource", "property", "bucket") if k in source
        )
        if source.get("field"):
            what += f" .{source['field']}"
        condition = rule.get("condition") or {}
        test = f"{condition.get('operator', '?')} {_dump(condition.get('threshold'))}"
        if condition.get("duration"):
            test += f" for {condition['duration']:g} s"
        rows.append(
            [
                str(rule.get("rule")),
                "on" if rule.get("enabled", True) else "off",
                f"{source.get('type', '?')} {what}",
                test,
                str(rule.get("endpoint") or "-"),
            ]
        )
    _table(rows, ["RULE", "ENABLED", "SOURCE", "CONDITION", "ENDPOINT"], out)
    return ExitCode.OK


async def cmd_alarm_list(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print alarm instances, newest first."""
    found = await client.list_alarm_instances(
        rule=args.rule, state="active" if args.active else None
    )
    if _print_items(found, args, out):
        return ExitCode.OK
    if not found:
        print("no active alarms" if args.active else "no alarms", file=out)
        return ExitCode.OK
    rows = [
        [
            str(i.get("instance")),
            str(i.get("rule")),
            str(i.get("state")),
            _dump(i.get("value")),
            _when(i.get("raised")),
        ]
        for i in found
    ]
    _table(rows, ["INSTANCE", "RULE", "STATE", "VALUE", "RAISED"], out)
    return ExitCode.OK


async def cmd_alarm_ack(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Acknowledge an alarm instance."""
    instance = await client.acknowledge_alarm(args.instance, args.note)
    if args.json:
        print(_dump(instance), file=out)
    else:
        print(f"{instance.get('instance', args.instance)}: {instance.get('state')}", file=out)
    return ExitCode.OK


# ---------------------------------------------------------------------------- parsers


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``endpoint`` and ``alarm`` groups to the ``iotmp`` parser."""
    endpoint = commands.add_parser(
        "endpoint", help="endpoints: HTTP calls the server makes to other services"
    )
    endpoint_sub = endpoint.add_subparsers(
        dest="endpoint_command", metavar="COMMAND", required=True
    )
    sub = endpoint_sub.add_parser("list", help="list the account's endpoints")
    add_server_options(sub)
    sub.set_defaults(client_command=cmd_endpoint_list, command_label="endpoint list")
    sub = endpoint_sub.add_parser("call", help="call an endpoint and print its answer")
    sub.add_argument("endpoint", metavar="ENDPOINT", help="endpoint id")
    sub.add_argument(
        "payload", metavar="JSON", nargs="?", help="payload as JSON (a bare word is a string)"
    )
    add_server_options(sub)
    sub.set_defaults(client_command=cmd_endpoint_call, command_label="endpoint call")

    alarm = commands.add_parser("alarm", help="alarm rules and the alarms they raised")
    alarm_sub = alarm.add_subparsers(dest="alarm_command", metavar="COMMAND", required=True)
    sub = alarm_sub.add_parser("rules", help="list the alarm rules")
    add_server_options(sub)
    sub.set_defaults(client_command=cmd_alarm_rules, command_label="alarm rules")
    sub = alarm_sub.add_parser("list", help="list alarms (instances), newest first")
    sub.add_argument("--active", action="store_true", help="only the active (unacknowledged) ones")
    sub.add_argument("--rule", metavar="RULE", help="only those of this rule")
    add_server_options(sub)
    sub.set_defaults(client_command=cmd_alarm_list, command_label="alarm list")
    sub = alarm_sub.add_parser("ack", help="acknowledge an alarm")
    sub.add_argument("instance", metavar="INSTANCE", help="alarm instance id")
    sub.add_argument("--note", metavar="TEXT", help="annotation stored with the alarm")
    add_server_options(sub)
    sub.set_defaults(client_command=cmd_alarm_ack, command_label="alarm ack")
