"""JWT claim parsing without verification."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from iotmp.client import (
    IotmpApiClient,
    IotmpAuthError,
    jwt_claims,
    token_expiry,
    token_server,
    token_user,
)


def make_jwt(claims: Any, *, raw_payload: str | None = None) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = raw_payload if raw_payload is not None else b64(json.dumps(claims).encode())
    return f"{header}.{payload}.{b64(b'signature')}"


def test_claims_of_user_token() -> None:
    token = make_jwt({"jti": "t1", "svr": "example.org:8443", "usr": "alice"})
    assert jwt_claims(token) == {"jti": "t1", "svr": "example.org:8443", "usr": "alice"}
    assert token_user(token) == "alice"
    assert IotmpApiClient.token_user(token) == "alice"
    assert token_server(token) == "example.org:8443"
    assert token_expiry(token) is None


def test_unicode_user_and_padding() -> None:
    # Payload lengths that need 1 and 2 padding characters.
    for name in ("é", "üser", "ab", "abc"):
        assert token_user(make_jwt({"usr": name})) == name


def test_expiry() -> None:
    assert token_expiry(make_jwt({"usr": "a", "exp": 1_700_000_000})) == 1_700_000_000.0
    assert token_expiry(make_jwt({"usr": "a", "exp": 17.5})) == 17.5
    assert token_expiry(make_jwt({"usr": "a", "exp": True})) is None
    assert token_expiry(make_jwt({"usr": "a", "exp": "soon"})) is None
    assert token_expiry("garbage") is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a..c",
        "a.b.c.d",
        make_jwt(None, raw_payload="!!!"),
        make_jwt(None, raw_payload=base64.urlsafe_b64encode(b"not json").decode()),
        make_jwt([1, 2]),
        "x" * 20000,
    ],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(ValueError):
        jwt_claims(token)
    with pytest.raises(IotmpAuthError) as err:
        token_user(token)
    if token:
        assert token not in str(err.value)
    assert token_server(token) is None


@pytest.mark.parametrize("claims", [{}, {"usr": ""}, {"usr": 5}, {"dev": "lamp"}])
def test_missing_user_claim(claims: dict[str, Any]) -> None:
    token = make_jwt(claims)
    with pytest.raises(IotmpAuthError, match="usr"):
        token_user(token)


def test_non_string_token() -> None:
    with pytest.raises(ValueError):
        jwt_claims(123)  # type: ignore[arg-type]
