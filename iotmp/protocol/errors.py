"""Exceptions raised by the IOTMP protocol library.

Everything the library raises derives from :class:`IotmpError`, so callers can
catch one type. Malformed or limit-violating *input* always raises
:class:`ProtocolError` (and nothing else) from the codecs.
"""

from __future__ import annotations

from typing import Any


class IotmpError(Exception):
    """Base class of every error raised by this library."""


class ProtocolError(IotmpError, ValueError):
    """Bytes on the wire are malformed or break a configured limit.

    The message says what was wrong (e.g. ``"message body of 70000 bytes
    exceeds the limit of 65536"``). Codecs raise only this type on bad input.
    """


class ConnectionClosedError(IotmpError):
    """The session's transport closed (or was closed) while work was pending."""


class RequestTimeoutError(IotmpError, TimeoutError):
    """The peer did not answer a request within its timeout."""


class AuthenticationError(IotmpError):
    """The server refused a CONNECT (bad credentials, invalid keep-alive, ...).

    ``code`` is the ERROR's PARAMETERS value when the server sent one
    (2 = bad credentials, 3 = invalid keep-alive, 4 = bad encoding), else None.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RemoteError(IotmpError):
    """The peer answered a request with ERROR.

    ``code`` is the ERROR's PARAMETERS (an HTTP-like integer) when present;
    ``payload`` is its PAYLOAD (often ``{"error": "..."}``) when present.
    """

    def __init__(self, message: str, code: Any = None, payload: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.payload = payload
