"""Application authentication: HS256 JWTs, token revocation, OAuth grants, login throttling.

Token kinds (all HS256 JWTs signed with the server secret):

* user access token -- ``{"jti", "usr", "svr"}`` and no ``exp`` (like a
  Thinger.io console token); made by :meth:`TokenAuthority.issue_access_token`
  with ``expires_in=None``.
* session access token -- ``{"usr", "svr", "iat", "exp", "jti"}`` from the
  password and refresh grants (``expires_in`` = ``access_token_ttl``).
* refresh token -- ``{"typ": "refresh", "usr", "iat", "exp", "jti"}``; only
  accepted by the refresh grant, and only once.

Only ``hmac``/``hashlib`` are used, so the server needs no JWT library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .throttle import LoginThrottle as LoginThrottle  # noqa: PLC0414 (moved; re-exported)

_HEADER: Final = {"alg": "HS256", "typ": "JWT"}
_MAX_TOKEN_LENGTH: Final = 8192


class AuthError(Exception):
    """A token or a login was refused; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def jwt_encode(claims: dict[str, Any], secret: bytes) -> str:
    """Sign ``claims`` as a compact HS256 JWT."""
    header = _b64encode(json.dumps(_HEADER, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64encode(signature)}"


def jwt_decode(token: str, secret: bytes) -> dict[str, Any]:
    """Verify an HS256 JWT and return its claims (``exp`` is not checked here).

    Raises :class:`AuthError` for anything malformed or wrongly signed.
    """
    if len(token) > _MAX_TOKEN_LENGTH:
        raise AuthError("invalid token")
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("invalid token")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = json.loads(_b64decode(header_b64))
        signature = _b64decode(signature_b64)
        expected = hmac.new(
            secret, f"{header_b64}.{payload_b64}".encode("ascii"), hashlib.sha256
        ).digest()
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise AuthError("invalid token")
        if not hmac.compare_digest(signature, expected):
            raise AuthError("invalid token signature")
        claims = json.loads(_b64decode(payload_b64))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise AuthError("invalid token") from exc
    if not isinstance(claims, dict):
        raise AuthError("invalid token")
    return claims


def jwt_claims_unverified(token: str) -> dict[str, Any]:
    """Claims of a JWT without checking the signature (for logs and tests)."""
    try:
        claims = json.loads(_b64decode(token.split(".")[1]))
    except (ValueError, IndexError, binascii.Error, UnicodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True, slots=True)
class TokenPair:
    """Result of an OAuth grant."""

    access_token: str
    refresh_token: str
    expires_in: int

    def as_json(self) -> dict[str, Any]:
        """Return the ``/oauth/token`` response body."""
        return {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": None,
            "token_type": "bearer",
        }


class TokenAuthority:
    """Issues and verifies the server's tokens.

    ``users`` returns the current password of a user (None when it has no
    password) or raises ``KeyError`` for unknown users; it is a callable so
    that users added at runtime are seen.
    """

    def __init__(
        self,
        secret: str,
        *,
        server_name: str,
        user_password: Callable[[str], str | None],
        access_token_ttl: int = 7200,
        refresh_token_ttl: int = 60 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret.encode("utf-8")
        self.server_name = server_name
        self._user_password = user_password
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self._clock = clock
        self._revoked: set[str] = set()
        # Used refresh-token ids, oldest first; bounded so it cannot grow forever.
        self._used_refresh: OrderedDict[str, float] = OrderedDict()

    # -- issuing -------------------------------------------------------------

    def issue_access_token(
        self, user: str, *, expires_in: float | None = None, jti: str | None = None
    ) -> str:
        """Issue an access token for ``user``; it never expires when ``expires_in`` is None."""
        claims: dict[str, Any] = {"jti": jti or secrets.token_hex(8)}
        if expires_in is not None:
            now = int(self._clock())
            claims["iat"] = now
            claims["exp"] = now + max(0, round(expires_in))
        claims["svr"] = self.server_name
        claims["usr"] = user
        return jwt_encode(claims, self._secret)

    def _issue_pair(self, user: str) -> TokenPair:
        now = int(self._clock())
        refresh = jwt_encode(
            {
                "exp": now + self.refresh_token_ttl,
                "iat": now,
                "jti": secrets.token_hex(12),
                "typ": "refresh",
                "usr": user,
            },
            self._secret,
        )
        access = self.issue_access_token(user, expires_in=self.access_token_ttl)
        return TokenPair(access, refresh, self.access_token_ttl)

    # -- verifying -----------------------------------------------------------

    def _known_user(self, user: Any) -> bool:
        if not isinstance(user, str):
            return False
        try:
            self._user_password(user)
        except KeyError:
            return False
        return True

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """Claims of a valid access token; :class:`AuthError` (401) otherwise."""
        claims = jwt_decode(token, self._secret)
        if claims.get("typ") == "refresh":
            raise AuthError("a refresh token cannot be used as an access token")
        exp = claims.get("exp")
        if exp is not None and (not isinstance(exp, int | float) or exp <= self._clock()):
            raise AuthError("token expired")
        jti = claims.get("jti")
        if (isinstance(jti, str) and jti in self._revoked) or _fingerprint(token) in self._revoked:
            raise AuthError("token revoked")
        if not self._known_user(claims.get("usr")):
            raise AuthError("unknown user")
        return claims

    def revoke(self, token_or_jti: str) -> None:
        """Revoke a token (given whole) or a token id (``jti``)."""
        if token_or_jti.count(".") == 2:
            claims = jwt_claims_unverified(token_or_jti)
            jti = claims.get("jti")
            if isinstance(jti, str):
                self._revoked.add(jti)
            self._revoked.add(_fingerprint(token_or_jti))
        else:
            self._revoked.add(token_or_jti)

    def is_revoked(self, jti: str) -> bool:
        """Whether a token id was revoked."""
        return jti in self._revoked

    # -- OAuth grants --------------------------------------------------------

    def password_grant(self, username: str, password: str) -> TokenPair:
        """Tokens for a correct user name and password; AuthError otherwise."""
        try:
            expected = self._user_password(username)
        except KeyError:
            expected = None
        if expected is None or not hmac.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8")
        ):
            raise AuthError("invalid username or password")
        return self._issue_pair(username)

    def refresh_grant(self, refresh_token: str) -> TokenPair:
        """Issue new tokens for an unused refresh token (which is then used up)."""
        try:
            claims = jwt_decode(refresh_token, self._secret)
        except AuthError as exc:
            raise AuthError("invalid refresh token") from exc
        jti = claims.get("jti")
        exp = claims.get("exp")
        user = claims.get("usr")
        if (
            claims.get("typ") != "refresh"
            or not isinstance(jti, str)
            or not isinstance(exp, int | float)
            or exp <= self._clock()
            or jti in self._used_refresh
            or jti in self._revoked
            or not self._known_user(user)
        ):
            raise AuthError("invalid refresh token")
        self._used_refresh[jti] = float(exp)
        self._prune_used()
        assert isinstance(user, str)
        return self._issue_pair(user)

    def _prune_used(self) -> None:
        now = self._clock()
        for jti, exp in list(self._used_refresh.items()):
            if exp <= now:
                del self._used_refresh[jti]
        while len(self._used_refresh) > 100_000:
            self._used_refresh.popitem(last=False)


def _fingerprint(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
