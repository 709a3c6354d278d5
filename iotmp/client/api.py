"""REST client for a Thinger.io-compatible server (cloud, self-hosted or local).

Uses the caller's :class:`aiohttp.ClientSession` (Home Assistant injects its
shared session); never creates one. Errors are mapped to the exceptions of
:mod:`.errors`; no raw aiohttp / JSON exception escapes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp
from yarl import URL

from ..protocol.message import ABSENT
from .errors import (
    IotmpApiError,
    IotmpAuthError,
    IotmpConnectionError,
    IotmpDeviceTimeoutError,
    IotmpForbiddenError,
    IotmpNotFoundError,
    IotmpRequestError,
)
from .models import DeviceRecord, ResourceInfo, TokenSet, _kind, flatten_resources
from .tokens import token_expiry, token_user

if TYPE_CHECKING:
    from .backoff import Backoff
    from .streams import AccountEventStream, DeviceResourceStream

_LOGGER = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT: Final = 15.0
PAGE_SIZE: Final = 50
MAX_PAGES: Final = 1000
SAMPLE_CONCURRENCY: Final = 8

_JSON_HEADERS: Final = {"Content-Type": "application/json"}
_ACCEPT: Final = {"Accept": "application/json"}
_NO_AUTO_CONTENT_TYPE: Final = ("Content-Type",)

# Words in a 404 message that say the device is not connected, or that the
# device / resource does not exist (matched case-insensitively).
_OFFLINE_HINTS: Final = ("not connected", "offline", "disconnected", "not online")
_MISSING_HINTS: Final = ("not found", "unknown", "not defined", "does not exist", "no such")


def normalize_base_url(base_url: str) -> str:
    """Return ``base_url`` without surrounding blanks and trailing slashes.

    The URL must be ``http://`` or ``https://`` with a host; a path prefix is
    kept (``https://host/thinger/`` -> ``https://host/thinger``). Query and
    fragment are not allowed. Raises :class:`ValueError` otherwise.
    """
    text = base_url.strip() if isinstance(base_url, str) else ""
    try:
        url = URL(text)
    except (TypeError, ValueError) as err:
        raise ValueError("invalid server URL") from err
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("server URL must start with http:// or https:// and name a host")
    if url.query_string or url.fragment:
        raise ValueError("server URL must not have a query or fragment")
    if url.user is not None or url.password is not None:
        raise ValueError("server URL must not contain credentials")
    return str(url.with_path(url.path.rstrip("/")))


def quote_segment(value: str) -> str:
    """Percent-encode one path segment (``/`` included)."""
    return quote(value, safe="")


def quote_resource(resource: str) -> str:
    """Percent-encode a resource path: every character except the ``/`` separators.

    The server routes ``{resource:.+}``, so ``a/b`` stays two segments. ``$``,
    spaces and non-ASCII characters are always percent-encoded (UTF-8).
    """
    return quote(resource, safe="/")


def _server_message(body: bytes) -> str | None:
    """``error.message`` (or ``message`` / string ``error``) of an error body, if any."""
    if not body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(error, str) and error:
        return error
    message = data.get("message")
    if isinstance(message, str) and message:
        return message
    return None


def _device_offline_hint(message: str | None) -> bool | None:
    if not message:
        return None
    lowered = message.lower()
    if any(hint in lowered for hint in _OFFLINE_HINTS):
        return True
    if any(hint in lowered for hint in _MISSING_HINTS):
        return False
    return None


def _error_for_status(
    status: int, what: str, server_message: str | None, secrets: tuple[str | None, ...]
) -> IotmpApiError:
    """Map an HTTP error status to an exception (message without any secret)."""
    if server_message:
        for secret in secrets:
            if secret:
                server_message = server_message.replace(secret, "***")
    detail = f": {server_message}" if server_message else ""
    text = f"{what} failed with HTTP {status}{detail}"
    kwargs: dict[str, Any] = {"status": status, "server_message": server_message}
    if status == 401:
        return IotmpAuthError(text, **kwargs)
    if status == 403:
        return IotmpForbiddenError(text, **kwargs)
    if status == 404:
        return IotmpNotFoundError(
            text, device_offline=_device_offline_hint(server_message), **kwargs
        )
    if status == 504:
        return IotmpDeviceTimeoutError(text, **kwargs)
    if status >= 500:
        return IotmpConnectionError(text, **kwargs)
    if 400 <= status < 500:
        return IotmpRequestError(text, **kwargs)
    return IotmpApiError(text, **kwargs)


def _parse_json(body: bytes, status: int, content_type: str, what: str) -> Any:
    """Parse a success body; empty -> None; anything else non-JSON -> IotmpApiError."""
    if not body or body.isspace():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise IotmpApiError(
            f"{what}: server answered HTTP {status} with a body that is not JSON "
            f"(content type {content_type or 'unknown'!r}, {len(body)} bytes)",
            status=status,
        ) from None


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    what: str,
    ssl: bool,
    client_timeout: aiohttp.ClientTimeout,
    token: str | None = None,
    params: Mapping[str, str | int] | None = None,
    data: bytes | None = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: tuple[str | None, ...] = (),
) -> Any:
    """Send one request and return the parsed JSON body (None when empty)."""
    request_headers: dict[str, str] = dict(_ACCEPT)
    if headers:
        request_headers.update(headers)
    if token is not None:
        request_headers["Authorization"] = f"Bearer {token}"
    payload: Any = form if form is not None else data
    try:
        async with session.request(
            method,
            url,
            params=params,
            data=payload,
            headers=request_headers,
            ssl=ssl,
            timeout=client_timeout,
            allow_redirects=False,
            # aiohttp labels an empty POST application/octet-stream; send no type.
            skip_auto_headers=_NO_AUTO_CONTENT_TYPE if payload is None else None,
        ) as response:
            status = response.status
            content_type = response.headers.get("Content-Type", "")
            body = await response.read()
    except TimeoutError as err:
        raise IotmpConnectionError(
            f"{what}: timed out after {client_timeout.total:g} s talking to the server"
        ) from err
    except aiohttp.ClientError as err:
        # str(err) of aiohttp errors may contain the URL; ours never has a token
        # in it (tokens travel in the Authorization header or the form body).
        raise IotmpConnectionError(f"{what}: cannot reach the server: {err}") from err
    if 200 <= status < 300:
        return _parse_json(body, status, content_type, what)
    raise _error_for_status(status, what, _server_message(body), (token, *secrets))


def _token_set(data: Any, what: str) -> TokenSet:
    if not isinstance(data, dict):
        raise IotmpApiError(f"{what}: unexpected answer from server ({_kind(data)})")
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise IotmpApiError(f"{what}: server answer has no access_token")
    refresh = data.get("refresh_token")
    expires_in = data.get("expires_in")
    expires_at: float | None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        expires_at = time.time() + float(expires_in)
    else:
        expires_at = token_expiry(access)
    return TokenSet(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=expires_at,
    )


def _base_url_or_raise(base_url: str) -> URL:
    try:
        return URL(normalize_base_url(base_url))
    except ValueError as err:
        raise IotmpRequestError(str(err)) from None


class IotmpApiClient:
    """Async client for one account on one server.

    ``token`` is an access token (a console/user token, or a session token from
    :meth:`password_login`). When ``token_refresher`` is given, a 401 makes the
    client await it once for a new access token and retry the call once;
    concurrent 401s share a single refresh (a refresh token works only once).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        *,
        verify_ssl: bool = True,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        token_refresher: Callable[[], Awaitable[str]] | None = None,
        stream_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._session = session
        # Long-lived WebSockets (one per device) may need a session of their own:
        # a shared session's per-host connection limit would cap the device count.
        self._stream_session = stream_session
        self._base = _base_url_or_raise(base_url)
        self._base_text = str(self._base)
        self._token = token
        self._user: str | None = None
        self._verify_ssl = verify_ssl
        self._request_timeout = request_timeout
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._token_refresher = token_refresher
        self._refresh_lock = asyncio.Lock()

    # -- properties ---------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        """The caller's aiohttp session."""
        return self._session

    @property
    def stream_session(self) -> aiohttp.ClientSession:
        """The session the resource and event WebSockets use (default: :attr:`session`)."""
        return self._stream_session if self._stream_session is not None else self._session

    @property
    def base_url(self) -> str:
        """Normalised base URL (no trailing slash)."""
        return self._base_text

    @property
    def token(self) -> str:
        """Current access token (changes after a refresh)."""
        return self._token

    @property
    def verify_ssl(self) -> bool:
        """Whether TLS certificates are verified."""
        return self._verify_ssl

    @property
    def request_timeout(self) -> float:
        """Per-request timeout in seconds."""
        return self._request_timeout

    @property
    def user(self) -> str:
        """Account name from the token's ``usr`` claim (:class:`IotmpAuthError` if absent)."""
        if self._user is None:
            self._user = token_user(self._token)
        return self._user

    def set_token(self, token: str) -> None:
        """Use a new access token from now on (e.g. after the owner refreshed it)."""
        if token != self._token:
            self._token = token
            self._user = None

    @staticmethod
    def token_user(token: str) -> str:
        """``usr`` claim of a JWT, read without verifying it (:class:`IotmpAuthError` if absent)."""
        return token_user(token)

    # -- login --------------------------------------------------------------------------

    @classmethod
    async def password_login(
        cls,
        session: aiohttp.ClientSession,
        base_url: str,
        username: str,
        password: str,
        *,
        verify_ssl: bool = True,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> TokenSet:
        """Log in with the OAuth password grant."""
        form = {"grant_type": "password", "username": username, "password": password}
        return await cls._oauth(
            session,
            base_url,
            form,
            verify_ssl=verify_ssl,
            timeout_s=request_timeout,
            secret=password,
        )

    @classmethod
    async def refresh_login(
        cls,
        session: aiohttp.ClientSession,
        base_url: str,
        refresh_token: str,
        *,
        verify_ssl: bool = True,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> TokenSet:
        """Trade a refresh token (usable once) for a new :class:`TokenSet`."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await cls._oauth(
            session,
            base_url,
            form,
            verify_ssl=verify_ssl,
            timeout_s=request_timeout,
            secret=refresh_token,
        )

    @staticmethod
    async def _oauth(
        session: aiohttp.ClientSession,
        base_url: str,
        form: dict[str, str],
        *,
        verify_ssl: bool,
        timeout_s: float,
        secret: str,
    ) -> TokenSet:
        base = _base_url_or_raise(base_url)
        what = "login" if form["grant_type"] == "password" else "token refresh"
        data = await _send(
            session,
            "POST",
            URL(f"{base}/oauth/token", encoded=True),
            what=what,
            ssl=verify_ssl,
            client_timeout=aiohttp.ClientTimeout(total=timeout_s),
            form=form,
            secrets=(secret,),
        )
        return _token_set(data, what)

    # -- plumbing -----------------------------------------------------------------------

    def _url(self, path: str) -> URL:
        """Absolute URL for an already percent-encoded ``path``."""
        return URL(f"{self._base_text}{path}", encoded=True)

    def _user_path(self) -> str:
        return f"/users/{quote_segment(self.user)}"

    def _device_path(self, version: str, device_id: str) -> str:
        return f"/{version}{self._user_path()}/devices/{quote_segment(device_id)}"

    def _resource_path(self, device_id: str, resource: str) -> str:
        return f"{self._device_path('v3', device_id)}/resources/{quote_resource(resource)}"

    def ws_url(self, path: str) -> URL:
        """URL of a WebSocket endpoint (``path`` already encoded), without the token."""
        return self._url(path)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        what = f"{method} {path}"
        url = self._url(path)
        token = self._token
        try:
            return await _send(
                self._session,
                method,
                url,
                what=what,
                ssl=self._verify_ssl,
                client_timeout=self._timeout,
                token=token,
                params=params,
                data=data,
                headers=headers,
            )
        except IotmpAuthError:
            if self._token_refresher is None:
                raise
        await self.refresh_token(token)
        return await _send(
            self._session,
            method,
            url,
            what=what,
            ssl=self._verify_ssl,
            client_timeout=self._timeout,
            token=self._token,
            params=params,
            data=data,
            headers=headers,
        )

    async def refresh_token(self, failed_token: str | None = None) -> bool:
        """Get a new access token from ``token_refresher``; False if there is none.

        When ``failed_token`` (the token a call was refused with) is no longer
        current, another caller refreshed meanwhile and nothing is done.
        Refreshes never run concurrently.
        """
        if self._token_refresher is None:
            return False
        async with self._refresh_lock:
            if failed_token is not None and failed_token != self._token:
                return True
            _LOGGER.debug("Access token refused, refreshing it")
            new_token = await self._token_refresher()
            if not isinstance(new_token, str) or not new_token:
                raise IotmpAuthError("token refresher returned no access token")
            self.set_token(new_token)
            return True

    # -- API ----------------------------------------------------------------------------

    async def server_version(self) -> str | None:
        """Server version from ``/v1/server/version``; None when the server has none."""
        try:
            data = await self._request("GET", "/v1/server/version")
        except IotmpNotFoundError:
            return None
        if isinstance(data, dict):
            version = data.get("version")
            if isinstance(version, str):
                return version
        return None

    async def list_devices(self) -> list[DeviceRecord]:
        """All devices of the account (pages ``count=50`` by ``index`` until a short page)."""
        path = f"/v1{self._user_path()}/devices"
        devices: dict[str, DeviceRecord] = {}
        index = 0
        previous: list[str] | None = None
        for _ in range(MAX_PAGES):
            page = await self._request("GET", path, params={"count": PAGE_SIZE, "index": index})
            if not isinstance(page, list):
                raise IotmpApiError(f"GET {path}: expected a list of devices, got {_kind(page)}")
            records = [DeviceRecord.from_json(item) for item in page]
            ids = [record.device_id for record in records]
            if ids == previous:
                # The server ignores paging and returned the same page again.
                break
            for record in records:
                devices.setdefault(record.device_id, record)
            if len(page) < PAGE_SIZE:
                break
            previous = ids
            index += len(page)
        else:
            _LOGGER.warning("Stopped listing devices after %d pages", MAX_PAGES)
        return list(devices.values())

    async def get_device(self, device_id: str) -> DeviceRecord:
        """One device record (:class:`IotmpNotFoundError` when unknown)."""
        data = await self._request("GET", self._device_path("v1", device_id))
        return DeviceRecord.from_json(data)

    async def get_resources(self, device_id: str) -> dict[str, ResourceInfo]:
        """Resources of a connected device, each with its ``/api`` sample.

        Samples are fetched concurrently (at most 8 at a time). A sample that
        the server or device cannot give (404, 501, other 4xx, 500, 504, client
        timeout) leaves ``sample_in``/``sample_out`` ABSENT; authentication,
        permission and connection failures are raised.
        """
        path = f"{self._device_path('v3', device_id)}/resources"
        entries = flatten_resources(await self._request("GET", path))
        semaphore = asyncio.Semaphore(SAMPLE_CONCURRENCY)
        samples: dict[str, dict[str, Any] | None] = {}

        async def fetch(name: str) -> None:
            async with semaphore:
                samples[name] = await self._optional_sample(device_id, name)

        try:
            async with asyncio.TaskGroup() as group:
                for name in entries:
                    group.create_task(fetch(name))
        except ExceptionGroup as group_error:
            raise _first_error(group_error) from None
        result: dict[str, ResourceInfo] = {}
        for name, entry in entries.items():
            sample = samples.get(name) or {}
            result[name] = ResourceInfo(
                name=name,
                fn=entry["fn"],
                sample_in=sample.get("in", ABSENT),
                sample_out=sample.get("out", ABSENT),
                raw=entry,
            )
        return result

    async def _optional_sample(self, device_id: str, resource: str) -> dict[str, Any] | None:
        try:
            return await self.get_resource_sample(device_id, resource)
        except (IotmpNotFoundError, IotmpDeviceTimeoutError, IotmpRequestError) as err:
            reason: IotmpApiError = err
        except IotmpConnectionError as err:
            if err.status not in (500, 501) and not isinstance(err.__cause__, TimeoutError):
                raise
            reason = err
        except IotmpApiError as err:
            if type(err) is not IotmpApiError:  # auth / forbidden
                raise
            reason = err  # unreadable sample body
        _LOGGER.debug("No sample for %s/%s: %s", device_id, resource, reason)
        return None

    async def get_resource_sample(self, device_id: str, resource: str) -> dict[str, Any]:
        """Return the resource's ``/api`` sample: ``{"in"?: value, "out"?: value}``."""
        path = f"{self._resource_path(device_id, resource)}/api"
        data = await self._request("GET", path)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise IotmpApiError(f"GET {path}: expected an object, got {_kind(data)}")
        return data

    async def read(self, device_id: str, resource: str) -> Any:
        """Read a resource's output (runs its handler on the device)."""
        return await self._request("GET", self._resource_path(device_id, resource))

    async def write(self, device_id: str, resource: str, value: Any = ABSENT) -> Any:
        """Post ``value`` as the raw JSON input (no body when ABSENT).

        Returns the resource's output, or None when the answer is empty.
        """
        data: bytes | None = None
        headers: Mapping[str, str] | None = None
        if value is not ABSENT:
            try:
                data = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
            except (TypeError, ValueError) as err:
                raise IotmpRequestError(f"value cannot be sent as JSON: {err}") from None
            headers = _JSON_HEADERS
        return await self._request(
            "POST", self._resource_path(device_id, resource), data=data, headers=headers
        )

    # -- streams ------------------------------------------------------------------------

    def resource_stream(
        self,
        device_id: str,
        on_data: Callable[[str, Any], None],
        on_connection: Callable[[bool], None],
        *,
        backoff: Backoff | None = None,
        outage_log_level: int = logging.INFO,
    ) -> DeviceResourceStream:
        """Make a (not yet running) live-value stream for one device.

        ``outage_log_level`` is the level of the one line logged when an outage
        starts and ends; an owner of many streams passes DEBUG and logs itself.
        """
        from .streams import DeviceResourceStream  # noqa: PLC0415 - import cycle

        return DeviceResourceStream(
            self,
            device_id,
            on_data,
            on_connection,
            backoff=backoff,
            outage_log_level=outage_log_level,
        )

    def event_stream(
        self,
        on_event: Callable[[dict[str, Any]], None],
        on_connection: Callable[[bool], None],
        *,
        backoff: Backoff | None = None,
        outage_log_level: int = logging.INFO,
    ) -> AccountEventStream:
        """Make a (not yet running) account event stream (device connect/disconnect)."""
        from .streams import AccountEventStream  # noqa: PLC0415 - import cycle

        return AccountEventStream(
            self, on_event, on_connection, backoff=backoff, outage_log_level=outage_log_level
        )

    def __repr__(self) -> str:
        return f"IotmpApiClient({self._base_text!r})"

    # -- properties -----------------------------------------------------------------------

    def _property_path(self, device_id: str, prop: str | None = None) -> str:
        path = f"{self._device_path('v3', device_id)}/properties"
        return path if prop is None else f"{path}/{quote_segment(prop)}"

    async def _property_call(self, method: str, path: str, body: Any) -> dict[str, Any]:
        try:
            data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as err:
            raise IotmpRequestError(f"value cannot be sent as JSON: {err}") from None
        answer = await self._request(method, path, data=data, headers=_JSON_HEADERS)
        if not isinstance(answer, dict):
            raise IotmpApiError(f"{method} {path}: expected a property, got {_kind(answer)}")
        return answer

    async def list_properties(self, device_id: str) -> list[dict[str, Any]]:
        """Return a device's property objects (``property``, ``name``, ..., ``value``)."""
        path = self._property_path(device_id)
        data = await self._request("GET", path)
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise IotmpApiError(f"GET {path}: expected a list of properties, got {_kind(data)}")
        return data

    async def get_property(self, device_id: str, prop: str) -> dict[str, Any]:
        """One property object (:class:`IotmpNotFoundError` when the device has none)."""
        path = self._property_path(device_id, prop)
        data = await self._request("GET", path)
        if not isinstance(data, dict):
            raise IotmpApiError(f"GET {path}: expected a property, got {_kind(data)}")
        return data

    async def set_property(self, device_id: str, prop: str, value: Any) -> dict[str, Any]:
        """Create the property or replace its value (PUT); returns the property object."""
        return await self._property_call(
            "PUT", self._property_path(device_id, prop), {"value": value}
        )

    async def patch_property(self, device_id: str, prop: str, fragment: Any) -> dict[str, Any]:
        """Merge ``fragment`` into the property's value (RFC 7386: null deletes a member)."""
        return await self._property_call(
            "PATCH", self._property_path(device_id, prop), {"value": fragment}
        )

    async def delete_property(self, device_id: str, prop: str) -> None:
        """Delete the property (:class:`IotmpNotFoundError` when the device has none)."""
        await self._request("DELETE", self._property_path(device_id, prop))

    # -- buckets --

    def _bucket_path(self, bucket: str | None = None, tail: str = "") -> str:
        base = f"/v1/users/{quote_segment(self.user)}/buckets"
        return base if bucket is None else f"{base}/{quote_segment(bucket)}{tail}"

    async def _post_json(self, path: str, value: Any, method: str = "POST") -> Any:
        try:
            data = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as err:
            raise IotmpRequestError(f"value cannot be sent as JSON: {err}") from None
        return await self._request(method, path, data=data, headers=_JSON_HEADERS)

    async def list_buckets(self) -> list[dict[str, Any]]:
        """Return the user's buckets (Thinger's bucket objects)."""
        return list(await self._request("GET", self._bucket_path()) or [])

    async def create_bucket(
        self,
        bucket: str,
        *,
        name: str | None = None,
        description: str = "",
        config: dict[str, Any] | None = None,
        retention: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """Create a bucket (``config`` defaults to ``{"source": "api"}``)."""
        body: dict[str, Any] = {
            "bucket": bucket,
            "name": name or bucket,
            "description": description,
            "enabled": enabled,
            "config": config or {"source": "api"},
        }
        if retention is not None:
            body["retention"] = retention
        return dict(await self._post_json(self._bucket_path(), body))

    async def get_bucket(self, bucket: str) -> dict[str, Any]:
        """Return one bucket."""
        return dict(await self._request("GET", self._bucket_path(bucket)))

    async def delete_bucket(self, bucket: str) -> None:
        """Delete a bucket and its records."""
        await self._request("DELETE", self._bucket_path(bucket))

    async def write_bucket(self, bucket: str, record: Any) -> None:
        """Store one record (an object; a ``ts`` key in ms sets its time) or a list of them."""
        await self._post_json(self._bucket_path(bucket, "/data"), record)

    async def read_bucket(
        self,
        bucket: str,
        *,
        items: int | None = None,
        sort: str | None = None,
        min_ts: int | None = None,
        max_ts: int | None = None,
        agg: str | None = None,
        agg_type: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return records as ``{"ts": ms, "val": record}`` (Thinger's read parameters)."""
        query = {"items": items, "sort": sort, "min_ts": min_ts, "max_ts": max_ts}
        query.update(agg=agg, agg_type=agg_type)
        params = {key: value for key, value in query.items() if value is not None}
        path = self._bucket_path(bucket, "/data")
        return list(await self._request("GET", path, params=params) or [])

    async def export_bucket(
        self,
        bucket: str,
        *,
        min_ts: int | None = None,
        max_ts: int | None = None,
        timestamp_format: str = "milliseconds",
    ) -> list[dict[str, Any]]:
        """Export a range as JSON records ``{"ts", "val"}`` (Thinger's export, then its file)."""
        body: dict[str, Any] = {"data_type": "json", "timestamp_format": timestamp_format}
        if min_ts is not None:
            body["min_ts"] = min_ts
        if max_ts is not None:
            body["max_ts"] = max_ts
        made = await self._post_json(self._bucket_path(bucket, "/exports"), body)
        if not isinstance(made, dict) or not isinstance(made.get("file"), str):
            raise IotmpApiError("bucket export: the server named no file")
        path = self._bucket_path(bucket, "/exports/" + quote_segment(made["file"]))
        return list(await self._request("GET", path) or [])

    # -- endpoints --

    async def list_endpoints(self) -> list[dict[str, Any]]:
        """Return the account's endpoints (``GET /v1/users/{u}/endpoints``)."""
        data = await self._request("GET", f"/v1{self._user_path()}/endpoints")
        return [item for item in data or [] if isinstance(item, dict)]

    async def call_endpoint(self, endpoint_id: str, payload: Any = ABSENT) -> Any:
        """Call an endpoint with an optional JSON ``payload``; returns its (decoded) answer.

        None when the target answered with an empty body. A target's error status
        raises :class:`IotmpApiError` with that status.
        """
        data: bytes | None = None
        if payload is not ABSENT:
            try:
                data = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
            except (TypeError, ValueError) as err:
                raise IotmpRequestError(f"payload cannot be sent as JSON: {err}") from None
        path = f"/v1{self._user_path()}/endpoints/{quote_segment(endpoint_id)}/call"
        return await self._request("POST", path, data=data, headers=_JSON_HEADERS)

    # -- alarms --

    async def list_alarm_rules(self) -> list[dict[str, Any]]:
        """Return the account's alarm rules."""
        data = await self._request("GET", f"/v1{self._user_path()}/alarms/rules")
        return [item for item in data or [] if isinstance(item, dict)]

    async def list_alarm_instances(
        self, *, rule: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Return alarm instances, newest first (optionally of one rule or in one state)."""
        params = {k: v for k, v in (("rule", rule), ("state", state)) if v}
        data = await self._request(
            "GET", f"/v1{self._user_path()}/alarms/instances", params=params or None
        )
        return [item for item in data or [] if isinstance(item, dict)]

    async def acknowledge_alarm(
        self, instance_id: str, annotation: str | None = None
    ) -> dict[str, Any]:
        """Acknowledge an alarm instance; returns the updated instance."""
        body: dict[str, Any] = {"state": "acknowledged"}
        if annotation is not None:
            body["annotation"] = annotation
        path = f"/v1{self._user_path()}/alarms/instances/{quote_segment(instance_id)}"
        data = await self._request(
            "PUT", path, data=json.dumps(body).encode(), headers=_JSON_HEADERS
        )
        return data if isinstance(data, dict) else {}


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """First leaf exception of a (possibly nested) exception group."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
