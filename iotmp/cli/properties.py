"""``iotmp property ...``: a device's properties (configuration and state kept on the server).

``list DEVICE`` (one line per property: id and value), ``get DEVICE PROP``
(the value; ``--json`` the whole property object), ``set DEVICE PROP JSON``
(create or replace), ``patch DEVICE PROP JSON`` (merge into the value, RFC
7386: ``null`` deletes a member), ``delete DEVICE PROP``.
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from iotmp.client import IotmpApiClient

from .app import Command, _dump, _print_value
from .common import ExitCode, add_server_options, parse_json_value


async def cmd_list(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print the device's properties: ``ID  VALUE`` lines, or one JSON object per line."""
    properties = await client.list_properties(args.device)
    if args.json:
        for item in properties:
            print(_dump(item), file=out)
        return ExitCode.OK
    if not properties:
        print(f"{args.device} has no properties", file=out)
        return ExitCode.OK
    ids = [str(item.get("property", "")) for item in properties]
    width = max(len("PROPERTY"), *(len(prop) for prop in ids))
    print(f"{'PROPERTY':<{width}}  VALUE", file=out)
    for prop, item in zip(ids, properties, strict=True):
        print(f"{prop:<{width}}  {json.dumps(item.get('value'), ensure_ascii=False)}", file=out)
    return ExitCode.OK


async def cmd_get(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print the property's value (``--json``: the property object)."""
    item = await client.get_property(args.device, args.property)
    if args.json:
        print(_dump(item), file=out)
    else:
        _print_value(item.get("value"), args, out)
    return ExitCode.OK


async def cmd_set(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Create the property or replace its value; print the new value."""
    item = await client.set_property(args.device, args.property, parse_json_value(args.value))
    _print_value(item if args.json else item.get("value"), args, out)
    return ExitCode.OK


async def cmd_patch(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Merge a JSON fragment into the property's value; print the merged value."""
    item = await client.patch_property(args.device, args.property, parse_json_value(args.value))
    _print_value(item if args.json else item.get("value"), args, out)
    return ExitCode.OK


async def cmd_delete(client: IotmpApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """Delete the property."""
    await client.delete_property(args.device, args.property)
    return ExitCode.OK


DESCRIPTION = """\
A device's properties: JSON values the server keeps for it.

  iotmp property list DEVICE              ids and values
  iotmp property get DEVICE PROP          the value (--json: the property object)
  iotmp property set DEVICE PROP JSON     create the property or replace its value
  iotmp property patch DEVICE PROP JSON   merge into the value (null deletes a member)
  iotmp property delete DEVICE PROP
"""

_COMMANDS: dict[str, tuple[str, Command]] = {
    "list": ("list a device's properties and their values", cmd_list),
    "get": ("print a property's value (--json: the whole property)", cmd_get),
    "set": ("create a property or replace its value", cmd_set),
    "patch": ("merge a JSON fragment into a property's value (null deletes a member)", cmd_patch),
    "delete": ("delete a property", cmd_delete),
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands to the ``iotmp`` parser.

    Each subcommand sets ``client_command`` (an :data:`iotmp.cli.app.Command`)
    and ``command_label`` with ``set_defaults``; :func:`iotmp.cli.main` runs it.
    """
    group = commands.add_parser(
        "property",
        help="a device's properties (configuration kept on the server)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subs = group.add_subparsers(dest="property_command", metavar="ACTION", required=True)
    for name, (summary, command) in _COMMANDS.items():
        sub = subs.add_parser(name, help=summary, description=summary[:1].upper() + summary[1:])
        sub.add_argument("device", metavar="DEVICE", help="device id")
        if name != "list":
            sub.add_argument("property", metavar="PROP", help="property id")
        if name in {"set", "patch"}:
            sub.add_argument(
                "value",
                metavar="JSON",
                help='JSON: 21.5, true, \'{"mode":"eco"}\' (a bare word is a string)',
            )
        add_server_options(sub)
        sub.set_defaults(client_command=command, command_label=f"property {name}")
