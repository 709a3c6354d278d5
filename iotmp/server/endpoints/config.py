"""An endpoint's configuration: validation, secrets redaction, payload templates.

Pure functions, no I/O. An endpoint is Thinger's object ``{endpoint, name,
description, enabled, type, config}``; the only ``type`` served here is
``http_request`` with ``config = {url, method, headers: [{key, value}], body,
body_type}`` plus two extensions, ``timeout`` (seconds) and ``verify_ssl``.

Templates: ``{{name}}`` in the URL, a header value or a ``custom`` body is
replaced by the field ``name`` of the call's payload; ``{{a.b.0}}`` walks into
objects and arrays; ``{{payload}}`` is the whole payload and ``{{payload.x}}``
the same as ``{{x}}``. A missing field becomes the empty text. Text is put in as
is (no quotes), anything else as compact JSON; in the URL the result is
percent-encoded, in a header it must not contain a line break.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

from iotmp.protocol.message import ABSENT

from ..http_api import jsonable

ENDPOINT_ID_RE: Final = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
HTTP_REQUEST: Final = "http_request"
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_TYPES: Final = ("json", "custom", "none")
REDACTED: Final = "********"
"""What GET shows instead of a secret; a PUT that sends it back keeps the stored value."""
PLAIN_HEADERS: Final = frozenset({"content-type", "accept"})
"""Header values shown as they are (everything else may be a credential)."""
MAX_HEADERS: Final = 64
MAX_TEXT: Final = 255
MAX_URL: Final = 4096
MAX_BODY_TEMPLATE: Final = 65_536
CONFIG_KEYS: Final = frozenset(
    {"url", "method", "headers", "body", "body_type", "timeout", "verify_ssl"}
)
_HEADER_NAME_RE: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_PLACEHOLDER_RE: Final = re.compile(r"\{\{\s*([^{}\s]{1,256})\s*\}\}")
# Query parameters whose values are treated as credentials (api_key, token, sig...).
_SECRET_QUERY_RE: Final = re.compile(r"(?i)(key|token|secret|pass|pwd|auth|sig|credential)")


class EndpointConfigError(ValueError):
    """The endpoint's configuration is unacceptable; ``str(exc)`` says why."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One rendered request, ready to send."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None


# ------------------------------------------------------------------ validation


def check_id(value: Any) -> str:
    """Return ``value`` if it is an endpoint id (1-32 of A-Z a-z 0-9 _ -)."""
    if not isinstance(value, str) or not ENDPOINT_ID_RE.match(value):
        raise EndpointConfigError("endpoint must be an id (1-32 of A-Z a-z 0-9 _ -)")
    return value


def _http_url(url: Any) -> str:
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        raise EndpointConfigError(f"config.url must be a text of 1 to {MAX_URL} characters")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        raise EndpointConfigError("config.url must start with http:// or https://")
    if any(c in url for c in "\r\n\t "):
        raise EndpointConfigError("config.url must not contain spaces or line breaks")
    return url


def _headers(raw: Any) -> list[dict[str, str]]:
    if raw is None:
        return []
    items: list[tuple[Any, Any]]
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = []
        for item in raw:
            if not isinstance(item, Mapping) or set(item) - {"key", "value"}:
                raise EndpointConfigError('config.headers must be [{"key": ..., "value": ...}]')
            items.append((item.get("key"), item.get("value", "")))
    else:
        raise EndpointConfigError('config.headers must be [{"key": ..., "value": ...}]')
    if len(items) > MAX_HEADERS:
        raise EndpointConfigError(f"config.headers: at most {MAX_HEADERS} headers")
    result = []
    for key, value in items:
        if not isinstance(key, str) or not _HEADER_NAME_RE.match(key):
            raise EndpointConfigError(f"config.headers: invalid header name {key!r}")
        if not isinstance(value, str) or "\r" in value or "\n" in value or len(value) > MAX_URL:
            raise EndpointConfigError(f"config.headers: the value of {key} must be one line")
        result.append({"key": key, "value": value})
    return result


def _check_one_authorization(url: str, headers: Any) -> None:
    """Refuse credentials in the URL together with an Authorization header (both set it)."""
    try:
        has_userinfo = "@" in urlsplit(url).netloc
    except ValueError:
        raise EndpointConfigError("config.url is not a valid URL") from None
    if has_userinfo and any(_key(h).lower() == "authorization" for h in headers):
        raise EndpointConfigError(
            "credentials in the URL and an Authorization header cannot be combined"
        )


def _key(header: Any) -> str:
    return str(header["key"] if isinstance(header, Mapping) else header[0])


def parse_config(raw: Any) -> dict[str, Any]:
    """Check an ``http_request`` config and return it in its stored form."""
    if not isinstance(raw, Mapping):
        raise EndpointConfigError("config must be an object")
    unknown = sorted(set(raw) - CONFIG_KEYS)
    if unknown:
        raise EndpointConfigError(
            f"config: unknown fields {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_KEYS))})"
        )
    method = raw.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise EndpointConfigError(f"config.method must be one of {', '.join(METHODS)}")
    body_type = raw.get("body_type", "json")
    if body_type not in BODY_TYPES:
        raise EndpointConfigError(f"config.body_type must be one of {', '.join(BODY_TYPES)}")
    body = raw.get("body", "")
    if body is None:
        body = ""
    if not isinstance(body, str) or len(body) > MAX_BODY_TEMPLATE:
        raise EndpointConfigError(f"config.body must be a text of at most {MAX_BODY_TEMPLATE}")
    url, headers = _http_url(raw.get("url")), _headers(raw.get("headers"))
    _check_one_authorization(url, headers)
    config: dict[str, Any] = {
        "url": url,
        "method": method.upper(),
        "headers": headers,
        "body": body,
        "body_type": body_type,
    }
    timeout = raw.get("timeout")
    if timeout is not None:
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise EndpointConfigError("config.timeout must be a positive number of seconds")
        config["timeout"] = timeout
    verify = raw.get("verify_ssl", True)
    if not isinstance(verify, bool):
        raise EndpointConfigError("config.verify_ssl must be true or false")
    config["verify_ssl"] = verify
    return config


# ------------------------------------------------------------------- secrets


def _split_query(query: str) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for part in query.split("&") if query else []:
        name, sep, value = part.partition("=")
        pairs.append((name, value if sep else None))
    return pairs


def _join_query(pairs: list[tuple[str, str | None]]) -> str:
    return "&".join(name if value is None else f"{name}={value}" for name, value in pairs)


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    """``(user, password, host[:port])`` of a netloc (password None without one)."""
    info, at, host = netloc.rpartition("@")
    if not at:
        return None, None, netloc
    user, colon, password = info.partition(":")
    return user, (password if colon else None), host


def redact_url(url: str) -> str:
    """Replace the URL's password and credential-like query values with :data:`REDACTED`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    user, password, host = _userinfo(parts.netloc)
    netloc = parts.netloc
    if password:
        netloc = f"{user}:{REDACTED}@{host}"
    elif user:
        # a bare user part (https://TOKEN@host) is how some services take a key
        netloc = f"{REDACTED}@{host}"
    pairs = [
        (name, REDACTED if value and _SECRET_QUERY_RE.search(name) else value)
        for name, value in _split_query(parts.query)
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=_join_query(pairs)))


def _restore_url(new: str, stored: str) -> str:
    if REDACTED not in new:
        return new
    if new == redact_url(stored):
        return stored
    try:
        old, fresh = urlsplit(stored), urlsplit(new)
    except ValueError:
        return new
    old_user, old_password, _ = _userinfo(old.netloc)
    user, password, host = _userinfo(fresh.netloc)
    netloc = fresh.netloc
    if password == REDACTED and old_password is not None:
        netloc = f"{user}:{old_password}@{host}"
    elif user == REDACTED and password is None and old_user is not None:
        netloc = f"{old_user}@{host}"
    old_values = dict(_split_query(old.query))
    pairs = [
        (name, old_values.get(name, value) if value == REDACTED else value)
        for name, value in _split_query(fresh.query)
    ]
    return urlunsplit(fresh._replace(netloc=netloc, query=_join_query(pairs)))


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the config as GET shows it: header values and URL credentials hidden."""
    shown = dict(config)
    if isinstance(config.get("url"), str):
        shown["url"] = redact_url(config["url"])
    shown["headers"] = [
        {
            "key": header["key"],
            "value": header["value"]
            if header["key"].lower() in PLAIN_HEADERS or not header["value"]
            else REDACTED,
        }
        for header in config.get("headers", ())
    ]
    return shown


def restore_secrets(new: dict[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Put stored secrets back where ``new`` (a checked config) carries :data:`REDACTED`.

    Raises :class:`EndpointConfigError` when a redacted value has nothing to stand for.
    """
    stored_headers = {
        h["key"].lower(): h["value"] for h in (stored or {}).get("headers", ()) if "key" in h
    }
    headers = []
    for header in new["headers"]:
        value = header["value"]
        if value == REDACTED:
            if header["key"].lower() not in stored_headers:
                raise EndpointConfigError(
                    f"config.headers: {header['key']} has no stored value to keep; send it"
                )
            value = stored_headers[header["key"].lower()]
        headers.append({"key": header["key"], "value": value})
    url = new["url"]
    if REDACTED in url:
        url = _restore_url(url, str((stored or {}).get("url", "")))
        if REDACTED in url:
            raise EndpointConfigError("config.url: a redacted part has no stored value; send it")
    return {**new, "headers": headers, "url": url}


# ----------------------------------------------------------------- templates


def _lookup(payload: Any, path: str) -> Any:
    if path == "payload":
        return payload
    path = path.removeprefix("payload.")
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return ABSENT
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False)


def render(template: str, payload: Any, *, url: bool = False) -> str:
    """Replace every ``{{path}}`` of ``template`` by the payload's value (module docstring)."""

    def substitute(match: re.Match[str]) -> str:
        value = _lookup(payload, match.group(1))
        text = "" if value is ABSENT else _text(value)
        return quote(text, safe="") if url else text

    return _PLACEHOLDER_RE.sub(substitute, template)


def build_request(config: Mapping[str, Any], payload: Any) -> HttpRequest:
    """Render the request an endpoint call sends (``payload`` may be ``ABSENT``)."""
    url = render(config["url"], payload, url=True)
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise EndpointConfigError("the endpoint's URL is not an http(s) URL once filled in")
    headers = []
    for header in config.get("headers", ()):
        value = render(header["value"], payload)
        if "\r" in value or "\n" in value:
            raise EndpointConfigError(f"header {header['key']} would contain a line break")
        headers.append((header["key"], value))
    _check_one_authorization(url, headers)
    body: bytes | None = None
    body_type = config.get("body_type", "json")
    if body_type == "json" and payload is not ABSENT:
        body = json.dumps(jsonable(payload), separators=(",", ":"), ensure_ascii=False).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
    elif body_type == "custom":
        body = render(config.get("body", ""), payload).encode()
    return HttpRequest(config["method"], url, tuple(headers), body)


__all__ = [
    "BODY_TYPES",
    "ENDPOINT_ID_RE",
    "HTTP_REQUEST",
    "METHODS",
    "REDACTED",
    "EndpointConfigError",
    "HttpRequest",
    "build_request",
    "check_id",
    "parse_config",
    "redact_config",
    "redact_url",
    "render",
    "restore_secrets",
]
