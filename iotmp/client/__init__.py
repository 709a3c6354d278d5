"""Async client for a Thinger.io-compatible server's REST and WebSocket API.

No Home Assistant imports here: the integration injects its aiohttp session.
"""

from ..protocol.message import ABSENT
from .api import IotmpApiClient, normalize_base_url, quote_resource
from .backoff import Backoff
from .errors import (
    IotmpApiError,
    IotmpAuthError,
    IotmpConnectionError,
    IotmpDeviceTimeoutError,
    IotmpForbiddenError,
    IotmpNotFoundError,
    IotmpRequestError,
)
from .models import DeviceRecord, ResourceInfo, TokenSet, flatten_resources
from .streams import AccountEventStream, DeviceResourceStream
from .tokens import jwt_claims, token_expiry, token_server, token_user

__all__ = [
    "ABSENT",
    "AccountEventStream",
    "Backoff",
    "DeviceRecord",
    "DeviceResourceStream",
    "IotmpApiClient",
    "IotmpApiError",
    "IotmpAuthError",
    "IotmpConnectionError",
    "IotmpDeviceTimeoutError",
    "IotmpForbiddenError",
    "IotmpNotFoundError",
    "IotmpRequestError",
    "ResourceInfo",
    "TokenSet",
    "flatten_resources",
    "jwt_claims",
    "normalize_base_url",
    "quote_resource",
    "token_expiry",
    "token_server",
    "token_user",
]
