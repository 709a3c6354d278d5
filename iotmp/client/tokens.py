"""Read JWT claims without verifying the signature.

The client only needs the account name (``usr``), the server host (``svr``)
and the expiry (``exp``) of tokens the server issued; the server verifies them.
Error messages never contain the token itself.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final

from .errors import IotmpAuthError

_MAX_TOKEN_LENGTH: Final = 16384


def jwt_claims(token: str) -> dict[str, Any]:
    """Return the payload (claims) of a compact JWT, without verifying it.

    Raises :class:`ValueError` when ``token`` is not a JWT with a JSON object
    payload.
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        raise ValueError("not a JWT")
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        raise ValueError("not a JWT")
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError) as err:
        raise ValueError("not a JWT: payload is not base64url JSON") from err
    if not isinstance(claims, dict):
        raise ValueError("not a JWT: payload is not a JSON object")
    return claims


def token_user(token: str) -> str:
    """Return the ``usr`` claim (account name); :class:`IotmpAuthError` if absent."""
    try:
        claims = jwt_claims(token)
    except ValueError as err:
        raise IotmpAuthError(f"access token is malformed ({err})") from None
    user = claims.get("usr")
    if not isinstance(user, str) or not user:
        raise IotmpAuthError("access token has no user (usr) claim")
    return user


def token_server(token: str) -> str | None:
    """Return the ``svr`` claim (server host) or None when absent or unreadable."""
    try:
        server = jwt_claims(token).get("svr")
    except ValueError:
        return None
    return server if isinstance(server, str) and server else None


def token_expiry(token: str) -> float | None:
    """Return the ``exp`` claim (epoch seconds) or None when absent or unreadable."""
    try:
        exp = jwt_claims(token).get("exp")
    except ValueError:
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)
