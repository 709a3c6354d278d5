"""Plain records the storage layer reads and writes (no database types leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class AlreadyExistsError(Exception):
    """An insert collided with an existing primary key."""


@dataclass(frozen=True, slots=True)
class StoredUser:
    """A row of ``users``."""

    name: str
    password_hash: str | None
    created: int
    modified: int


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """A row of ``devices`` (the credential only as its hash)."""

    id: str
    user: str
    name: str = ""
    description: str = ""
    type: str = "Generic"
    enabled: bool = True
    credential_hash: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    created: int = 0
    modified: int = 0


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A row of ``access_tokens``: a user access token, or a device token when ``device`` is set."""

    user: str
    id: str
    nonce: str
    name: str = ""
    description: str = ""
    enabled: bool = True
    device: str | None = None
    allow: dict[str, Any] | None = None
    deny: dict[str, Any] | None = None
    resources: list[str] | None = None
    created: int = 0
    modified: int = 0
    expires: int | None = None


@dataclass(frozen=True, slots=True)
class Revocation:
    """A row of ``revocations``."""

    user: str
    jti: str
    revoked: int
    expires: int | None = None
