"""Exceptions raised by the server client.

Every exception derives from :class:`IotmpApiError`. Messages carry the server's
own ``error.message`` when the response had one, and never contain a token.
"""

from __future__ import annotations


class IotmpApiError(Exception):
    """Base class: the server could not be used as expected.

    Raised as such for responses the client cannot understand (non-JSON body,
    unexpected shape). ``status`` is the HTTP status when there was one and
    ``server_message`` the server's ``error.message`` when the body had one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class IotmpConnectionError(IotmpApiError):
    """Server unreachable, timeout talking to it, or a 5xx status other than 504."""


class IotmpAuthError(IotmpApiError):
    """401: bad, expired or revoked token, wrong password, used refresh token."""


class IotmpForbiddenError(IotmpApiError):
    """403: the token is valid but lacks the permission for this call."""


class IotmpNotFoundError(IotmpApiError):
    """404: device offline / unknown, or resource unknown.

    ``device_offline`` is True when the server said the device is not
    connected, False when it said the resource (or device) does not exist,
    and None when the answer does not tell.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 404,
        server_message: str | None = None,
        device_offline: bool | None = None,
    ) -> None:
        super().__init__(message, status=status, server_message=server_message)
        self.device_offline = device_offline


class IotmpDeviceTimeoutError(IotmpApiError):
    """504: the device did not answer the server in time."""


class IotmpRequestError(IotmpApiError):
    """400, 413 or another 4xx: the request was refused as bad input.

    ``status`` is the HTTP status (None when the client refused the input
    before sending it, e.g. a value that is not JSON serialisable).
    """
