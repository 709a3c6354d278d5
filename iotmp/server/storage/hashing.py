"""Salted scrypt hashes of device credentials and user passwords.

A hash costs about 16 MiB and tens of milliseconds of CPU on purpose, so the
async helpers run it in a worker thread: the event loop never waits for it.
Format: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<key b64>``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from typing import Final

_LOG2_N: Final = 14
_R: Final = 8
_P: Final = 1
_KEY_BYTES: Final = 32
_MAX_SECRET_BYTES: Final = 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8")[:_MAX_SECRET_BYTES],
        salt=salt,
        n=2**log2_n,
        r=r,
        p=p,
        maxmem=2**26,
        dklen=_KEY_BYTES,
    )


def hash_secret(secret: str) -> str:
    """Hash ``secret`` with a fresh random salt (blocking: tens of ms)."""
    salt = secrets.token_bytes(16)
    key = _scrypt(secret, salt, _LOG2_N, _R, _P)
    return f"scrypt${_LOG2_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether ``secret`` matches ``encoded`` (blocking; False for a malformed hash)."""
    try:
        scheme, log2_n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = _scrypt(secret, base64.b64decode(salt), int(log2_n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


async def hash_secret_async(secret: str) -> str:
    """:func:`hash_secret` in a worker thread."""
    return await asyncio.to_thread(hash_secret, secret)


async def verify_secret_async(secret: str, encoded: str) -> bool:
    """:func:`verify_secret` in a worker thread."""
    return await asyncio.to_thread(verify_secret, secret, encoded)
