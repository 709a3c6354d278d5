"""Token permissions: Thinger's ``allow``/``deny`` trees and the scope of each request.

A tree is ``{"<Type>": {"<id>": "<Action>" | ["<Action>" | {"<sub>": actions}, ...]}}``
where ``"*"`` matches any type, id or action (``*`` may also end an action,
``Read*``). ``deny`` wins over ``allow``; nothing is allowed unless allowed.
Session tokens (password grant) carry no tree and may do anything their user may.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from .storage.records import StoredToken

FULL_ACCESS: Final[dict[str, Any]] = {"*": {"*": "*"}}
DEVICE_TOKEN_ACTIONS: Final = ("AccessDeviceResources", "ReadDeviceStatus")


@dataclass(frozen=True, slots=True)
class Scope:
    """What a request does: an action on one resource (and maybe a sub-resource)."""

    kind: str
    ident: str
    action: str
    sub: str | None = None


def _action_matches(granted: Any, scope: Scope) -> bool:
    if isinstance(granted, str):
        return fnmatch.fnmatchcase(scope.action, granted)
    if isinstance(granted, list):
        for item in granted:
            if isinstance(item, str) and fnmatch.fnmatchcase(scope.action, item):
                return True
            if isinstance(item, Mapping) and scope.sub is not None:
                for sub, actions in item.items():
                    if fnmatch.fnmatchcase(scope.sub, str(sub)) and _action_matches(
                        actions, Scope(scope.kind, scope.ident, scope.action)
                    ):
                        return True
    return False


def tree_matches(tree: Mapping[str, Any] | None, scope: Scope) -> bool:
    """Whether a permission tree grants ``scope``."""
    if not tree:
        return False
    for kind in (scope.kind, "*"):
        ids = tree.get(kind)
        if not isinstance(ids, Mapping):
            continue
        for ident, granted in ids.items():
            if fnmatch.fnmatchcase(scope.ident, str(ident)) and _action_matches(granted, scope):
                return True
    return False


def permits(token: StoredToken, scope: Scope) -> bool:
    """Whether a stored token may do ``scope``."""
    if token.device is not None:
        return (
            scope.kind == "Device"
            and scope.ident == token.device
            and scope.action in DEVICE_TOKEN_ACTIONS
            and (not token.resources or scope.sub is None or scope.sub in token.resources)
        )
    return tree_matches(token.allow, scope) and not tree_matches(token.deny, scope)


_DEVICE_RECORD_ACTIONS: Final = {
    "GET": "ReadDeviceStatus",
    "PUT": "UpdateDevice",
    "DELETE": "DeleteDevice",
}
_COLLECTION_ACTIONS: Final = {"GET": "List", "POST": "Create"}
_ITEM_ACTIONS: Final = {"GET": "Read", "PUT": "Update", "DELETE": "Delete", "POST": "Update"}


_PROPERTY_ACTIONS: Final = {
    "GET": "ReadDeviceProperties",
    "POST": "CreateDeviceProperties",
    "PUT": "UpdateDeviceProperties",
    "PATCH": "UpdateDeviceProperties",
    "DELETE": "DeleteDeviceProperties",
}
# /v1/users/{user}/<segment>[/{id}[/...]] -> (permission type, noun of the actions);
# the path's id placeholder is the noun in lower case ({bucket}, {endpoint}).
_USER_ASSETS: Final = {
    "buckets": ("Bucket", "Bucket"),
    "endpoints": ("Endpoint", "Endpoint"),
}
# /v1/users/{user}/alarms/<segment>[/{id}] -> (permission type, noun, id placeholder)
_ALARM_ASSETS: Final = {
    "rules": ("AlarmRule", "AlarmRule", "rule"),
    "instances": ("AlarmInstance", "AlarmInstance", "instance"),
}


_BUCKET_ITEM_ACTIONS: Final = {
    "GET": "ReadBucketConfig",
    "PUT": "UpdateBucket",
    "DELETE": "DeleteBucket",
}
_BUCKET_EXPORT_ACTIONS: Final = {"GET": "ReadBucketExport", "DELETE": "DeleteBucketExport"}


def _bucket_scope(parts: list[str], method: str, bucket: str | None) -> Scope:
    """Scopes of the bucket routes, named as Thinger's OpenAPI summaries name them."""
    if bucket is None:
        return Scope("Bucket", "*", "CreateBucket" if method == "POST" else "ListBuckets")
    tail = parts[5:]
    if tail[:1] == ["data"]:
        return Scope("Bucket", bucket, "WriteBucket" if method == "POST" else "ReadBucket")
    if tail == ["exports"]:
        return Scope(
            "Bucket", bucket, "CreateBucketExport" if method == "POST" else "ListBucketExports"
        )
    if tail[:1] == ["exports"]:
        return Scope("Bucket", bucket, _BUCKET_EXPORT_ACTIONS.get(method, "ReadBucketExport"))
    return Scope("Bucket", bucket, _BUCKET_ITEM_ACTIONS.get(method, "ReadBucketConfig"))


def request_scope(request: web.Request) -> Scope | None:
    """Return the scope of a request on a device, token, bucket, endpoint or alarm route.

    None for other routes (a user's session token may do anything there).
    """
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    path = getattr(resource, "canonical", None) or request.path
    method = request.method.upper()
    device = info.get("device")
    parts = path.strip("/").split("/")
    if device is not None:
        tail = parts[parts.index("{device}") + 1 :] if "{device}" in parts else []
        if tail[:1] == ["tokens"]:
            verb = (_ITEM_ACTIONS if len(tail) > 1 else _COLLECTION_ACTIONS).get(method, "")
            return Scope(
                "Device", device, f"{verb}DeviceTokens" if verb == "List" else f"{verb}DeviceToken"
            )
        if not tail:
            return Scope("Device", device, _DEVICE_RECORD_ACTIONS.get(method, "UpdateDevice"))
        if tail == ["stats"]:
            return Scope("Device", device, "ReadDeviceStatistics")
        if tail[:1] == ["properties"]:
            return Scope("Device", device, _PROPERTY_ACTIONS.get(method, "ReadDeviceProperties"))
        return Scope("Device", device, "AccessDeviceResources", info.get("resource"))
    if parts[-1:] == ["devices"] and len(parts) == 4:
        verb = _COLLECTION_ACTIONS.get(method, "List")
        return Scope("Device", "*", "ListDevices" if verb == "List" else "CreateDevice")
    if len(parts) >= 4 and parts[3] == "buckets":
        return _bucket_scope(parts, method, info.get("bucket"))
    if len(parts) >= 5 and parts[3] == "alarms" and parts[4] in _ALARM_ASSETS:
        kind, noun, placeholder = _ALARM_ASSETS[parts[4]]
        ident = info.get(placeholder)
        if ident is None:
            verb = _COLLECTION_ACTIONS.get(method, "List")
            return Scope(kind, "*", f"{verb}{noun}s" if verb == "List" else f"{verb}{noun}")
        return Scope(kind, ident, f"{_ITEM_ACTIONS.get(method, 'Read')}{noun}")
    if len(parts) >= 4 and parts[3] in _USER_ASSETS:
        kind, noun = _USER_ASSETS[parts[3]]
        ident = info.get(noun.lower())
        if ident is None:
            verb = _COLLECTION_ACTIONS.get(method, "List")
            return Scope(kind, "*", f"{verb}{noun}s" if verb == "List" else f"{verb}{noun}")
        if parts[5:6] == ["data"]:
            return Scope(kind, ident, f"{'Write' if method == 'POST' else 'Read'}{noun}Data")
        if parts[5:6] == ["call"]:
            return Scope(kind, ident, f"Call{noun}")
        return Scope(kind, ident, f"{_ITEM_ACTIONS.get(method, 'Read')}{noun}")
    if "tokens" in parts:
        token_id = info.get("token")
        if token_id is None:
            verb = _COLLECTION_ACTIONS.get(method, "List")
            return Scope("Token", "*", f"{verb}Tokens" if verb == "List" else f"{verb}Token")
        return Scope("Token", token_id, f"{_ITEM_ACTIONS.get(method, 'Read')}Token")
    return None
