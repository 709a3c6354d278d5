"""Every read and write of the server's data; each write is one transaction."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from . import schema
from .engine import StorageConfigError, create_engine, quiet_driver_logs, redacted
from .migrate import ensure_current
from .records import AlreadyExistsError, Revocation, StoredDevice, StoredToken, StoredUser


def now_ms() -> int:
    """Return milliseconds since the epoch."""
    return int(time.time() * 1000)


class Storage:
    """The database behind the server (one per server; open with :meth:`open`)."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url

    @classmethod
    async def open(cls, url: str) -> Storage:
        """Connect to ``url`` and run the migrations."""
        try:
            engine = create_engine(url)
        except (SQLAlchemyError, OSError, ImportError) as exc:
            raise StorageConfigError(f"cannot use database {redacted(url)}: {exc}") from exc
        try:
            await ensure_current(engine)
        except BaseException as exc:
            await engine.dispose()
            if isinstance(exc, SQLAlchemyError | OSError):
                raise StorageConfigError(f"cannot open database {redacted(url)}: {exc}") from exc
            raise
        quiet_driver_logs(True)
        return cls(engine, url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Storage({redacted(self.url)})"

    async def close(self) -> None:
        """Close every connection."""
        await self.engine.dispose()
        quiet_driver_logs(False)

    # -- settings --------------------------------------------------------------

    async def setting(self, key: str) -> str | None:
        """Return a server-wide setting (None when unset)."""
        table = schema.settings
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(table.c.value).where(table.c.key == key))).first()
        return None if row is None else str(row[0])

    async def setting_or_default(self, key: str, default: str) -> str:
        """Return the setting, storing ``default`` first if unset (first writer wins)."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(schema.settings).values(key=key, value=default))
        except IntegrityError:
            value = await self.setting(key)
            assert value is not None
            return value
        return default

    # -- users -----------------------------------------------------------------

    async def users(self) -> list[StoredUser]:
        """All users."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(schema.users))).mappings().all()
        return [StoredUser(**row) for row in rows]

    async def put_user(self, name: str, password_hash: str | None) -> StoredUser:
        """Create the user or set its password hash."""
        now = now_ms()
        table = schema.users
        async with self.engine.begin() as conn:
            found = (
                await conn.execute(select(table.c.created).where(table.c.name == name))
            ).first()
            if found is None:
                await conn.execute(
                    insert(table).values(
                        name=name, password_hash=password_hash, created=now, modified=now
                    )
                )
                return StoredUser(name, password_hash, now, now)
            await conn.execute(
                update(table)
                .where(table.c.name == name)
                .values(password_hash=password_hash, modified=now)
            )
            return StoredUser(name, password_hash, int(found[0]), now)

    # -- devices -------------------------------------------------------------

    async def devices(self) -> list[StoredDevice]:
        """All devices, oldest first."""
        table = schema.devices
        async with self.engine.connect() as conn:
            rows = (
                (await conn.execute(select(table).order_by(table.c.created, table.c.id)))
                .mappings()
                .all()
            )
        return [StoredDevice(**row) for row in rows]

    async def create_device(self, device: StoredDevice) -> StoredDevice:
        """Insert a new device (:class:`AlreadyExistsError` when the id is taken)."""
        now = now_ms()
        device = replace(device, created=device.created or now, modified=now)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(schema.devices).values(**asdict(device)))
        except IntegrityError as exc:
            raise AlreadyExistsError(device.id) from exc
        return device

    async def put_device(self, device: StoredDevice) -> StoredDevice:
        """Insert the device or update every column but ``created``."""
        table = schema.devices
        now = now_ms()
        values = asdict(device)
        async with self.engine.begin() as conn:
            found = (
                await conn.execute(select(table.c.created).where(table.c.id == device.id))
            ).first()
            if found is None:
                device = replace(device, created=device.created or now, modified=now)
                await conn.execute(insert(table).values(**asdict(device)))
                return device
            del values["created"]
            values["modified"] = now
            await conn.execute(update(table).where(table.c.id == device.id).values(**values))
        return replace(device, created=int(found[0]), modified=now)

    async def update_device(self, device_id: str, changes: Mapping[str, Any]) -> None:
        """Change some columns of a device."""
        table = schema.devices
        async with self.engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.id == device_id)
                .values(**dict(changes), modified=now_ms())
            )

    async def delete_device(self, user: str, device_id: str) -> bool:
        """Delete the user's device and its device tokens; False when it was not there."""
        devices, tokens = schema.devices, schema.access_tokens
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(devices).where(devices.c.id == device_id, devices.c.user == user)
            )
            await conn.execute(
                delete(tokens).where(tokens.c.user == user, tokens.c.device == device_id)
            )
        return bool(result.rowcount)

    # -- access tokens -----------------------------------------------------------

    async def tokens(self) -> list[StoredToken]:
        """All access and device tokens."""
        table = schema.access_tokens
        async with self.engine.connect() as conn:
            rows = (
                (await conn.execute(select(table).order_by(table.c.created, table.c.id)))
                .mappings()
                .all()
            )
        return [StoredToken(**row) for row in rows]

    async def token(self, user: str, token_id: str) -> StoredToken | None:
        """One token (the uncached look-up)."""
        table = schema.access_tokens
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(table).where(table.c.user == user, table.c.id == token_id)
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else StoredToken(**row)

    async def create_token(self, token: StoredToken) -> StoredToken:
        """Insert a token; a revocation of its id (an earlier token) is dropped."""
        now = now_ms()
        token = replace(token, created=token.created or now, modified=now)
        revocations = schema.revocations
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(schema.access_tokens).values(**asdict(token)))
                await conn.execute(
                    delete(revocations).where(
                        revocations.c.user == token.user, revocations.c.jti == token.id
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExistsError(token.id) from exc
        return token

    async def update_token(self, token: StoredToken) -> StoredToken:
        """Rewrite a token's columns (not its key or ``created``)."""
        table = schema.access_tokens
        token = replace(token, modified=now_ms())
        values = asdict(token)
        for key in ("user", "id", "created"):
            del values[key]
        async with self.engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.user == token.user, table.c.id == token.id)
                .values(**values)
            )
        return token

    async def delete_token(self, user: str, token_id: str) -> bool:
        """Delete the user's token and revoke its id, atomically."""
        table = schema.access_tokens
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(table).where(table.c.user == user, table.c.id == token_id)
            )
            if not result.rowcount:
                return False
            await self._revoke(conn, Revocation(user, token_id, now_ms()))
        return True

    # -- revocations and used refresh tokens -----------------------------------

    async def revocations(self) -> list[Revocation]:
        """All revocations that have not expired."""
        table = schema.revocations
        now = now_ms()
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(table).where(table.c.expires.is_not(None), table.c.expires <= now)
            )
            rows = (await conn.execute(select(table))).mappings().all()
        return [Revocation(**row) for row in rows]

    async def is_revoked(self, user: str, jti: str) -> bool:
        """Whether the user's token id (or any user's, ``*``) is revoked (uncached read)."""
        table = schema.revocations
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(table.c.jti).where(table.c.user.in_((user, "*")), table.c.jti == jti)
                )
            ).first()
        return row is not None

    async def revoke(self, revocation: Revocation) -> None:
        """Record a revocation (idempotent)."""
        async with self.engine.begin() as conn:
            await self._revoke(conn, revocation)

    @staticmethod
    async def _revoke(conn: Any, revocation: Revocation) -> None:
        table = schema.revocations
        await conn.execute(
            delete(table).where(table.c.user == revocation.user, table.c.jti == revocation.jti)
        )
        await conn.execute(insert(table).values(**asdict(revocation)))

    async def use_refresh_token(self, jti: str, user: str, expires: int) -> bool:
        """Mark a refresh token used; False when it was used before (any process)."""
        table = schema.used_refresh_tokens
        now = now_ms()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(table).values(jti=jti, user=user, used=now, expires=expires)
                )
        except IntegrityError:
            return False
        if now % 64 == 0:  # now and then: forget tokens that expired anyway
            async with self.engine.begin() as conn:
                await conn.execute(delete(table).where(table.c.expires <= now))
        return True

    async def refresh_token_used(self, jti: str) -> bool:
        """Whether a refresh token id was used."""
        table = schema.used_refresh_tokens
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(table.c.jti).where(table.c.jti == jti))).first()
        return row is not None
