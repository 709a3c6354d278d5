"""Numeric server resources a device calls with RUN / START_STREAM (spec 11).

Two layouts are in use and a server must accept both:

* [Linux] / [Linux-old]: RESOURCE = action code (integer), PARAMETERS = target
  (property / bucket / endpoint id, or ``[device, resource]`` for CALL_DEVICE,
  or the event filter map of SUBSCRIBE_EVENT);
* [Embedded] / [Arduino-IOTMP] / [Bench]: PARAMETERS = action code (integer),
  RESOURCE = target (string or array of strings).

The integer field is the action code and the other one the target. When both
are integers, RESOURCE is taken as the code ([Linux] layout).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

from .message import ABSENT, Message, MessageType


class ServerResource(IntEnum):
    """Action codes of enum ``server::run`` ([Linux] ``iotmp_message.hpp``)."""

    READ_DEVICE_PROPERTY = 1
    SET_DEVICE_PROPERTY = 2
    CALL_DEVICE = 3
    CALL_ENDPOINT = 4
    WRITE_BUCKET = 5
    LOCK_SYNC = 6
    UNLOCK_SYNC = 7
    SUBSCRIBE_EVENT = 8


class ServerResourceCall(NamedTuple):
    """A parsed server-resource request: ``code, target, payload = call``."""

    code: ServerResource
    target: Any
    """Property / bucket / endpoint / sync id (str), ``[device, resource]``
    (CALL_DEVICE), the event filter map (SUBSCRIBE_EVENT), or None if absent."""
    payload: Any
    """The request's PAYLOAD, or ``ABSENT`` when it had none."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_target(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(part, str) for part in value)
    )


def parse_server_resource(message: Message) -> ServerResourceCall | None:
    """Read a device->server RUN or START_STREAM on a numeric server resource.

    Returns None when the message is not such a request: another type, no
    integer code in RESOURCE or PARAMETERS, or a code outside 1..8 (a server
    answers those with ERROR, like reference devices do for numeric RESOURCE).
    """
    if message.type not in (MessageType.RUN, MessageType.START_STREAM):
        return None
    resource = message.resource
    parameters = message.parameters
    if _is_int(resource):
        code, target = resource, parameters  # [Linux] layout
    elif _is_int(parameters) and (resource is ABSENT or _is_target(resource)):
        code, target = parameters, resource  # [Embedded] layout
    else:
        return None
    try:
        action = ServerResource(code)
    except ValueError:
        return None
    return ServerResourceCall(action, None if target is ABSENT else target, message.payload)


__all__ = ["ServerResource", "ServerResourceCall", "parse_server_resource"]
