"""Users, devices and tokens: the database is the source of truth, the caches the fast path.

:class:`Accounts` opens the storage at server start, seeds it from the
configuration file (entries created or updated, never deleted), loads it
into the device registry and the token authority, and performs every change
as one transaction *before* updating the caches. The synchronous helpers
that tests and embedders call (``add_device``, ``issue_token``...) update the
caches at once and write behind; :meth:`Accounts.close` waits for those writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .auth import FULL_ACCESS_TOKEN_NAME, new_stored_token
from .config import DeviceConfig, ServerConfig, UserConfig, default_data_dir
from .permissions import FULL_ACCESS
from .registry import DeviceState
from .storage.hashing import hash_secret_async, verify_secret_async
from .storage.records import AlreadyExistsError, Revocation, StoredDevice, StoredToken

if TYPE_CHECKING:
    from .app import IotmpServer
    from .storage.repository import Storage

_LOGGER = logging.getLogger(__name__)

TOKEN_SECRET_SETTING = "token_secret"

Write = Callable[["Storage"], Awaitable[Any]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def storage_url(config: ServerConfig) -> str:
    """Return the database URL a configuration selects."""
    from .storage.engine import database_url  # noqa: PLC0415 - loads SQLAlchemy

    data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    return database_url(config.database, data_dir)


@dataclass(slots=True)
class _User:
    name: str
    password_hash: str | None
    plain: str | None = None  # a configured password not stored yet
    verified: bytes | None = None


class Accounts:
    """The server's users, devices and tokens, kept in its database."""

    def __init__(self, server: IotmpServer) -> None:
        self.server = server
        self.storage: Storage | None = None
        self._users: dict[str, _User] = {
            u.name: _User(u.name, None, u.password) for u in server.config.users
        }
        self._digest_key = secrets.token_bytes(32)
        self._pending: list[Write] = []
        self._writes: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Open the database, seed it from the configuration, load the caches."""
        if self.storage is not None:
            return
        # SQLAlchemy is loaded here, not when the server module is imported.
        from .storage.engine import redacted  # noqa: PLC0415
        from .storage.repository import Storage  # noqa: PLC0415

        url = storage_url(self.server.config)
        storage = await Storage.open(url)
        try:
            if not self.server.config.secret:
                # No secret in the configuration: one generated once, kept in the database.
                secret = await storage.setting_or_default(
                    TOKEN_SECRET_SETTING, secrets.token_urlsafe(32)
                )
                self.server.auth.set_secret(secret)
            await self._seed(storage)
            await self._load(storage)
        except BaseException:
            await storage.close()
            raise
        self.storage = storage
        _LOGGER.info("storage: %s", redacted(url))
        pending, self._pending = self._pending, []
        for write in pending:
            self._write_behind(write)

    async def flush(self) -> None:
        """Wait until the writes behind (users and devices added at runtime) are stored."""
        while self._writes:
            # Drop the finished ones here: their done-callbacks need a loop turn,
            # and gather of finished tasks may complete without one (eager tasks).
            pending = list(self._writes)
            await asyncio.gather(*pending, return_exceptions=True)
            self._writes.difference_update(pending)

    async def close(self) -> None:
        """Wait for the writes behind and close the database."""
        await self.flush()
        if self.storage is not None:
            await self.storage.close()
            self.storage = None

    def _write_behind(self, write: Write) -> None:
        if self.storage is None:
            self._pending.append(write)
            return
        task = asyncio.get_running_loop().create_task(self._run_write(write))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _run_write(self, write: Write) -> None:
        async with self._lock:  # in call order
            assert self.storage is not None
            try:
                await write(self.storage)
            except Exception:
                _LOGGER.exception("storage write failed")

    def _store(self) -> Storage:
        if self.storage is None:
            raise RuntimeError("the server's storage is not open (start the server first)")
        return self.storage

    async def _seed(self, storage: Storage) -> None:
        stored_users = {u.name: u for u in await storage.users()}
        for user in self.server.config.users:
            have = stored_users.get(user.name)
            password_hash = have.password_hash if have else None
            if user.password is None:
                password_hash = None
            elif password_hash is None or not await verify_secret_async(
                user.password, password_hash
            ):
                password_hash = await hash_secret_async(user.password)
            if have is None or have.password_hash != password_hash:
                await storage.put_user(user.name, password_hash)
        stored_devices = {d.id: d for d in await storage.devices()}
        for device in self.server.config.devices:
            old = stored_devices.get(device.id)
            credential_hash = old.credential_hash if old else None
            if credential_hash is None or not await verify_secret_async(
                device.credential, credential_hash
            ):
                credential_hash = await hash_secret_async(device.credential)
            await storage.put_device(
                StoredDevice(
                    id=device.id,
                    user=device.user,
                    name=device.name,
                    description=device.description,
                    type=device.type,
                    enabled=device.enabled,
                    credential_hash=credential_hash,
                    attributes=old.attributes if old else {},
                    created=old.created if old else 0,
                )
            )

    async def _load(self, storage: Storage) -> None:
        for stored_user in await storage.users():
            user = self._users.get(stored_user.name)
            if user is None:
                self._users[stored_user.name] = _User(stored_user.name, stored_user.password_hash)
            else:
                user.password_hash = stored_user.password_hash
                user.plain = None
        configured = {d.id: d for d in self.server.config.devices}
        for stored in await storage.devices():
            known = self.server.registry.get(stored.id)
            plain = configured.get(stored.id)
            config = DeviceConfig(
                id=stored.id,
                user=stored.user,
                credential=plain.credential if plain else "",
                name=stored.name,
                description=stored.description,
                type=stored.type,
                enabled=stored.enabled,
            )
            state = self.server.registry.add(config)
            if known is None or state.credential_hash != stored.credential_hash:
                state.credential_hash = stored.credential_hash
            state.created_ms = stored.created
            state.modified_ms = stored.modified
            state.attributes = dict(stored.attributes)
        self.server.auth.load(await storage.tokens(), await storage.revocations())

    # -- users -------------------------------------------------------------------

    def known_user(self, name: str) -> bool:
        """Whether the user exists."""
        return name in self._users

    def user_names(self) -> list[str]:
        """Every user name."""
        return list(self._users)

    async def check_password(self, name: str, password: str) -> bool:
        """Whether ``password`` is the user's (hash checked in a worker thread)."""
        user = self._users.get(name)
        if user is None:
            return False
        digest = hmac.new(self._digest_key, password.encode("utf-8"), hashlib.sha256).digest()
        if user.verified is not None and hmac.compare_digest(user.verified, digest):
            return True
        if user.password_hash is None:
            ok = user.plain is not None and hmac.compare_digest(
                user.plain.encode("utf-8"), password.encode("utf-8")
            )
        else:
            encoded = user.password_hash
            ok = await verify_secret_async(password, encoded)
            if ok and user.password_hash == encoded:
                user.verified = digest
        return ok

    def add_user(self, user: UserConfig) -> None:
        """Add or update a user (cache now, database behind)."""
        self._users[user.name] = _User(user.name, None, user.password)

        async def write(storage: Storage) -> None:
            password_hash = await hash_secret_async(user.password) if user.password else None
            await storage.put_user(user.name, password_hash)
            current = self._users.get(user.name)
            if current is not None and current.plain == user.password:
                current.password_hash, current.plain = password_hash, None

        self._write_behind(write)

    # -- refresh tokens ------------------------------------------------------------

    async def use_refresh_token(self, jti: str, user: str, expires_ms: int) -> bool:
        """Mark a refresh token used in the database; False if it was used before."""
        return await self._store().use_refresh_token(jti, user, expires_ms)

    # -- devices -------------------------------------------------------------------

    def add_device(self, device: DeviceConfig) -> DeviceState:
        """Register or update a device (cache now, database behind)."""
        state = self.server.registry.add(device)

        async def write(storage: Storage) -> None:
            credential_hash = await hash_secret_async(device.credential)
            old = next((d for d in await storage.devices() if d.id == device.id), None)
            stored = await storage.put_device(
                StoredDevice(
                    id=device.id,
                    user=device.user,
                    name=device.name,
                    description=device.description,
                    type=device.type,
                    enabled=device.enabled,
                    credential_hash=credential_hash,
                    attributes=old.attributes if old else {},
                    created=old.created if old else state.created_ms,
                )
            )
            if state.config.credential == device.credential:
                state.credential_hash = stored.credential_hash

        self._write_behind(write)
        return state

    async def create_device(self, device: StoredDevice, credential: str | None) -> DeviceState:
        """Store a new device (:class:`AlreadyExistsError` when the id is taken)."""
        if self.server.registry.get(device.id) is not None:
            raise AlreadyExistsError(device.id)
        credential_hash = await hash_secret_async(credential) if credential else None
        stored = await self._store().create_device(replace(device, credential_hash=credential_hash))
        return self._cache_device(stored)

    def _cache_device(self, stored: StoredDevice) -> DeviceState:
        state = self.server.registry.add(
            DeviceConfig(
                id=stored.id,
                user=stored.user,
                credential="",
                name=stored.name,
                description=stored.description,
                type=stored.type,
                enabled=stored.enabled,
            )
        )
        state.credential_hash = stored.credential_hash
        state._verified = None
        state.created_ms = stored.created
        state.modified_ms = stored.modified
        state.attributes = dict(stored.attributes)
        return state

    async def update_device(
        self, state: DeviceState, changes: dict[str, Any], credential: str | None
    ) -> DeviceState:
        """Change a device's fields (and credential); stored first, then cached."""
        config = state.config
        stored = StoredDevice(
            id=config.id,
            user=config.user,
            name=changes.get("name", config.name),
            description=changes.get("description", config.description),
            type=changes.get("type", config.type),
            enabled=changes.get("enabled", config.enabled),
            credential_hash=(
                await hash_secret_async(credential) if credential else state.credential_hash
            ),
            attributes={**state.attributes, **changes.get("attributes", {})},
            created=state.created_ms,
        )
        stored = await self._store().put_device(stored)
        new_state = self._cache_device(stored)
        if credential is None and config.credential:
            new_state.config = replace(new_state.config, credential=config.credential)
        if not stored.enabled and new_state.link is not None:
            await new_state.link.close("device disabled")
        return new_state

    async def delete_device(self, state: DeviceState) -> None:
        """Delete a device and its device tokens, then disconnect it."""
        await self._store().delete_device(state.user, state.id)
        config = self.server.config
        devices = tuple(d for d in config.devices if d.id != state.id)
        self.server.config = replace(config, devices=devices)  # not re-seeded at a restart
        for token in self.server.auth.stored_tokens(state.user):
            if token.device == state.id:
                self.server.auth.drop_token(token.user, token.id)
        self.server.registry.remove(state.id)
        link = state.link
        if link is not None:
            await link.close("device deleted")

    # -- tokens --------------------------------------------------------------------

    def issue_token(self, user: str, *, expires_in: float | None, jti: str | None) -> str:
        """Issue a full-access token for the server's own use (demo, tests).

        With ``jti`` the same stored token is reused (the demo's token survives
        restarts); ``expires_in`` makes an unstored, expiring token.
        """
        auth = self.server.auth
        if expires_in is not None:
            return auth.issue_access_token(user, expires_in=expires_in, jti=jti)
        token_id = jti or secrets.token_hex(8)
        stored = auth.stored_token(user, token_id)
        if stored is None:
            stored = new_stored_token(
                user, token_id, name=FULL_ACCESS_TOKEN_NAME, allow=FULL_ACCESS, created=_now_ms()
            )
            auth.put_token(stored)
            token = stored

            async def write(storage: Storage) -> None:
                try:
                    await storage.create_token(token)
                except AlreadyExistsError:
                    await storage.update_token(token)

            self._write_behind(write)
        return auth.sign_stored_token(stored)

    async def create_token(self, token: StoredToken) -> StoredToken:
        """Store a new token (:class:`AlreadyExistsError` when the user has that id)."""
        if self.server.auth.stored_token(token.user, token.id) is not None:
            raise AlreadyExistsError(token.id)
        stored = await self._store().create_token(token)
        self.server.auth.put_token(stored)
        return stored

    async def update_token(self, token: StoredToken) -> StoredToken:
        """Store a token's new fields."""
        stored = await self._store().update_token(token)
        self.server.auth.put_token(stored)
        return stored

    async def delete_token(self, user: str, token_id: str) -> bool:
        """Delete the user's token (False when the user has no such token)."""
        if not await self._store().delete_token(user, token_id):
            return False
        self.server.auth.drop_token(user, token_id)
        return True

    def revoke(self, token_or_jti: str) -> None:
        """Revoke a whole token or a token id (cache now, database behind)."""
        revocations = self.server.auth.revoke(token_or_jti)

        async def write(storage: Storage) -> None:
            for revocation in revocations:
                await storage.revoke(revocation)

        self._write_behind(write)

    async def revoke_now(self, revocation: Revocation) -> None:
        """Store a revocation, then apply it."""
        await self._store().revoke(revocation)
        self.server.auth.revoke(revocation.jti, revocation.user)
