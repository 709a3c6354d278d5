"""Application authentication: HS256 JWTs (PyJWT), token revocation, OAuth grants, login throttling.

Token kinds (all HS256 JWTs signed with a key derived from the server secret):

* user access token -- ``{"jti", "usr", "svr", "nce"}`` and no ``exp`` unless
  one is set (like a Thinger.io console token). When its ``(usr, jti)`` is a
  stored token (:class:`~.storage.StoredToken`), that row decides: enabled,
  expiry, permissions, and ``nce`` must match (a token re-created under the
  id of a deleted one is a new token).
* device token -- as above plus ``"dev"`` (and ``"res"``): one device only.
* session access token -- ``{"usr", "svr", "iat", "exp", "jti"}`` from the
  password and refresh grants (``expires_in`` = ``access_token_ttl``).
* refresh token -- ``{"typ": "refresh", "usr", "iat", "exp", "jti"}``; only
  accepted by the refresh grant, and only once (checked by ``use_refresh_token``,
  which the server backs with the database).

The in-memory sets here are the fast path; the server's storage is the source
of truth and fills them at start (:meth:`TokenAuthority.load`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final

import jwt

from .storage.records import Revocation, StoredToken
from .throttle import LoginThrottle as LoginThrottle  # noqa: PLC0414 (moved; re-exported)

_ALGORITHM: Final = "HS256"
_MAX_TOKEN_LENGTH: Final = 8192
ANY_USER: Final = "*"
"""User of a revocation by bare token id (from callers that do not say whose)."""
FINGERPRINT_USER: Final = ""
"""User of a revocation by fingerprint of a whole token."""
FULL_ACCESS_TOKEN_NAME: Final = "server"
"""Name of the full-access tokens the server issues for itself (demo, tests)."""


class AuthError(Exception):
    """A token or a login was refused; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def signing_key(secret: str | bytes) -> bytes:
    """Derive the HMAC key for a server secret (32 bytes whatever the secret's length)."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(b"iotmp-jwt-hs256", raw, hashlib.sha256).digest()


def jwt_encode(claims: dict[str, Any], key: bytes) -> str:
    """Sign ``claims`` as a compact HS256 JWT."""
    return jwt.encode(claims, key, algorithm=_ALGORITHM)


def jwt_decode(token: str, key: bytes) -> dict[str, Any]:
    """Verify an HS256 JWT and return its claims (``exp`` is not checked here).

    Raises :class:`AuthError` for anything malformed or wrongly signed.
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        raise AuthError("invalid token")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise AuthError("invalid token signature") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid token") from exc
    if not isinstance(claims, dict):
        raise AuthError("invalid token")
    return claims


def jwt_claims_unverified(token: str) -> dict[str, Any]:
    """Claims of a JWT without checking the signature (for logs and tests)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}
    return claims if isinstance(claims, dict) else {}


def fingerprint(token: str) -> str:
    """Revocation key of a whole token."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


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


PasswordCheck = Callable[[str, str], Awaitable[bool]]
"""``(user, password) -> bool``: whether the password is right."""
RefreshUse = Callable[[str, str, int], Awaitable[bool]]
"""``(jti, user, exp) -> bool``: mark a refresh token used; False if it was already."""


class TokenAuthority:
    """Issues and verifies the server's tokens.

    ``known_user`` tells whether a user exists now; ``check_password`` and
    ``use_refresh_token`` are the (database-backed) checks of the grants.
    Without ``use_refresh_token`` used refresh tokens are kept in memory.
    """

    def __init__(
        self,
        secret: str,
        *,
        server_name: str,
        known_user: Callable[[str], bool],
        check_password: PasswordCheck,
        use_refresh_token: RefreshUse | None = None,
        access_token_ttl: int = 7200,
        refresh_token_ttl: int = 60 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = signing_key(secret)
        self.server_name = server_name
        self._known_user = known_user
        self._check_password = check_password
        self._use_refresh = use_refresh_token or self._use_refresh_in_memory
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self._clock = clock
        self._revoked: set[tuple[str, str]] = set()
        self._tokens: dict[tuple[str, str], StoredToken] = {}
        # Used refresh-token ids, oldest first; bounded so it cannot grow forever.
        self._used_refresh: OrderedDict[str, float] = OrderedDict()

    def set_secret(self, secret: str) -> None:
        """Sign and verify with another secret from now on."""
        self._key = signing_key(secret)

    # -- the cache of stored tokens and revocations ----------------------------

    def load(self, tokens: Iterable[StoredToken], revocations: Iterable[Revocation]) -> None:
        """Replace the cache with what the storage holds."""
        self._tokens = {(t.user, t.id): t for t in tokens}
        self._revoked = {(r.user, r.jti) for r in revocations}

    def put_token(self, token: StoredToken) -> None:
        """Cache a stored token (created or changed); its id is no longer revoked."""
        self._tokens[(token.user, token.id)] = token
        self._revoked.discard((token.user, token.id))

    def drop_token(self, user: str, token_id: str) -> None:
        """Forget a deleted token and revoke its id."""
        self._tokens.pop((user, token_id), None)
        self._revoked.add((user, token_id))

    def stored_token(self, user: str, token_id: str) -> StoredToken | None:
        """Return the cached stored token ``token_id`` of ``user``."""
        return self._tokens.get((user, token_id))

    def stored_tokens(self, user: str) -> list[StoredToken]:
        """Return the user's stored tokens, oldest first."""
        return [t for (u, _), t in self._tokens.items() if u == user]

    def token_record(self, claims: dict[str, Any]) -> StoredToken | None:
        """Return the stored token verified ``claims`` belong to (None for session tokens)."""
        user, jti = claims.get("usr"), claims.get("jti")
        if not isinstance(user, str) or not isinstance(jti, str):
            return None
        return self._tokens.get((user, jti))

    # -- issuing -------------------------------------------------------------

    def sign_stored_token(self, token: StoredToken) -> str:
        """Sign the JWT of a stored token (the same every time: it holds no issue time)."""
        claims: dict[str, Any] = {"jti": token.id}
        if token.device is not None:
            claims["dev"] = token.device
            if token.resources:
                claims["res"] = list(token.resources)
        if token.expires is not None:
            claims["exp"] = token.expires // 1000
        claims["nce"] = token.nonce
        claims["svr"] = self.server_name
        claims["usr"] = token.user
        return jwt_encode(claims, self._key)

    def issue_access_token(
        self, user: str, *, expires_in: float | None = None, jti: str | None = None
    ) -> str:
        """Issue an unstored access token; it never expires when ``expires_in`` is None."""
        claims: dict[str, Any] = {"jti": jti or secrets.token_hex(8)}
        if expires_in is not None:
            now = int(self._clock())
            claims["iat"] = now
            claims["exp"] = now + max(0, round(expires_in))
        claims["svr"] = self.server_name
        claims["usr"] = user
        return jwt_encode(claims, self._key)

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
            self._key,
        )
        access = self.issue_access_token(user, expires_in=self.access_token_ttl)
        return TokenPair(access, refresh, self.access_token_ttl)

    # -- verifying -----------------------------------------------------------

    def _is_known_user(self, user: Any) -> bool:
        return isinstance(user, str) and self._known_user(user)

    def _revoked_id(self, user: Any, jti: Any) -> bool:
        if not isinstance(jti, str):
            return False
        return (ANY_USER, jti) in self._revoked or (
            isinstance(user, str) and (user, jti) in self._revoked
        )

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """Claims of a valid access token; :class:`AuthError` (401) otherwise."""
        claims = jwt_decode(token, self._key)
        if claims.get("typ") == "refresh":
            raise AuthError("a refresh token cannot be used as an access token")
        exp = claims.get("exp")
        if exp is not None and (
            isinstance(exp, bool) or not isinstance(exp, int | float) or exp <= self._clock()
        ):
            raise AuthError("token expired")
        user, jti = claims.get("usr"), claims.get("jti")
        if self._revoked_id(user, jti) or (FINGERPRINT_USER, fingerprint(token)) in self._revoked:
            raise AuthError("token revoked")
        stored = self.token_record(claims)
        if stored is not None:
            if not hmac.compare_digest(str(claims.get("nce", "")), stored.nonce):
                raise AuthError("token revoked")
            if not stored.enabled:
                raise AuthError("token disabled")
            if stored.expires is not None and stored.expires <= self._clock() * 1000:
                raise AuthError("token expired")
        elif "nce" in claims:
            raise AuthError("token revoked")  # its stored token was deleted
        if not self._is_known_user(user):
            raise AuthError("unknown user")
        return claims

    def revoke(self, token_or_jti: str, user: str | None = None) -> list[Revocation]:
        """Revoke a token (given whole) or a token id; returns what to persist.

        A bare id without ``user`` is revoked for every user.
        """
        now = int(self._clock() * 1000)
        keys: list[tuple[str, str]] = []
        expires: int | None = None
        if token_or_jti.count(".") == 2:
            claims = jwt_claims_unverified(token_or_jti)
            jti, owner, exp = claims.get("jti"), claims.get("usr"), claims.get("exp")
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                expires = int(exp * 1000)  # forgotten once the token would be expired anyway
            if isinstance(jti, str):
                keys.append((owner if isinstance(owner, str) else ANY_USER, jti))
            keys.append((FINGERPRINT_USER, fingerprint(token_or_jti)))
        else:
            keys.append((user or ANY_USER, token_or_jti))
        self._revoked.update(keys)
        return [Revocation(u, j, now, expires) for u, j in keys]

    def is_revoked(self, jti: str, user: str | None = None) -> bool:
        """Whether a token id was revoked."""
        return self._revoked_id(user, jti)

    # -- OAuth grants --------------------------------------------------------

    async def password_grant(self, username: str, password: str) -> TokenPair:
        """Tokens for a correct user name and password; AuthError otherwise."""
        if not self._is_known_user(username) or not await self._check_password(username, password):
            raise AuthError("invalid username or password")
        return self._issue_pair(username)

    async def refresh_grant(self, refresh_token: str) -> TokenPair:
        """Issue new tokens for an unused refresh token (which is then used up)."""
        try:
            claims = jwt_decode(refresh_token, self._key)
        except AuthError as exc:
            raise AuthError("invalid refresh token") from exc
        jti = claims.get("jti")
        exp = claims.get("exp")
        user = claims.get("usr")
        if (
            claims.get("typ") != "refresh"
            or not isinstance(jti, str)
            or not isinstance(user, str)
            or isinstance(exp, bool)
            or not isinstance(exp, int | float)
            or exp <= self._clock()
            or self._revoked_id(user, jti)
            or not self._is_known_user(user)
        ):
            raise AuthError("invalid refresh token")
        if not await self._use_refresh(jti, user, int(exp * 1000)):
            raise AuthError("invalid refresh token")
        return self._issue_pair(user)

    async def _use_refresh_in_memory(self, jti: str, _user: str, exp_ms: int) -> bool:
        if jti in self._used_refresh:
            return False
        self._used_refresh[jti] = exp_ms / 1000
        now = self._clock()
        for used, exp in list(self._used_refresh.items()):
            if exp <= now:
                del self._used_refresh[used]
        while len(self._used_refresh) > 100_000:
            self._used_refresh.popitem(last=False)
        return True


def new_stored_token(user: str, token_id: str, **fields: Any) -> StoredToken:
    """Make a stored token with a fresh nonce (not yet written)."""
    return replace(StoredToken(user=user, id=token_id, nonce=secrets.token_hex(8)), **fields)
