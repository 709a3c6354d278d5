"""Migrations: a database made by the baseline migration opens and upgrades, keeping its data."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from sqlalchemy import text

from iotmp.server.storage.engine import create_engine, database_url
from iotmp.server.storage.hashing import verify_secret
from iotmp.server.storage.migrate import current_revision, head_revision, upgrade
from iotmp.server.storage.repository import Storage

BASELINE = "0001_baseline"
# Made with make_baseline() below by the first release's migration, kept as a file so
# that a later schema change is tested against a database written back then.
BASELINE_FILE = Path(__file__).parent / "data" / "baseline-0001.db"
ALICE_HASH = "scrypt$14$8$1$ZF3xvLRn0Y0JL7b1T9qCkA==$6Q2hHxq0rJ8yH9w6n3wMbH1u0W0lQ4i6m1mY2yJx3h0="


async def make_baseline(url: str, password_hash: str) -> None:
    """A database at the baseline revision with one row in every table."""
    engine = create_engine(database_url(url, Path()))
    try:
        await upgrade(engine, BASELINE)
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO users VALUES ('alice', :h, 1700000000000, 1700000000000)"),
                {"h": password_hash},
            )
            await conn.execute(
                text(
                    "INSERT INTO devices VALUES ('lamp', 'alice', 'Lamp', '', 'Generic', true,"
                    " :h, '{}', 1700000000000, 1700000000001)"
                ),
                {"h": password_hash},
            )
            await conn.execute(
                text(
                    "INSERT INTO access_tokens VALUES ('alice', 'ha', NULL, 'HA', '', true,"
                    ' \'{"Device": {"*": "*"}}\', NULL, NULL, \'n1\', 1, 1, NULL)'
                )
            )
            await conn.execute(text("INSERT INTO revocations VALUES ('alice', 'old', 1, NULL)"))
            await conn.execute(
                text("INSERT INTO used_refresh_tokens VALUES ('r1', 'alice', 1, 99999999999999)")
            )
    finally:
        await engine.dispose()


async def _check_upgraded(url: str) -> None:
    storage = await Storage.open(database_url(url, Path()))
    try:
        assert await current_revision(storage.engine) == head_revision()
        assert [u.name for u in await storage.users()] == ["alice"]
        (device,) = await storage.devices()
        assert (device.id, device.user, device.name, device.created) == (
            "lamp",
            "alice",
            "Lamp",
            1700000000000,
        )
        token = await storage.token("alice", "ha")
        assert token is not None
        assert token.allow == {"Device": {"*": "*"}}
        assert [(r.user, r.jti) for r in await storage.revocations()] == [("alice", "old")]
        assert await storage.is_revoked("alice", "old")
        assert not await storage.is_revoked("bob", "old")
        assert await storage.refresh_token_used("r1")
        assert await storage.setting("token_secret") is None  # 0002 adds an empty table
        assert not await storage.use_refresh_token("r1", "alice", 99999999999999)
    finally:
        await storage.close()


async def test_baseline_database_upgrades(database: str) -> None:
    await make_baseline(database, ALICE_HASH)
    await _check_upgraded(database)
    await _check_upgraded(database)  # opening again is a no-op


async def test_first_release_sqlite_file_opens(tmp_path: Path) -> None:
    path = tmp_path / "iotmp.db"
    shutil.copyfile(BASELINE_FILE, path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(BASELINE,)]
    await _check_upgraded(f"sqlite:///{path}")
    storage = await Storage.open(database_url(f"sqlite:///{path}", tmp_path))
    try:
        (device,) = await storage.devices()
        assert device.credential_hash is not None
        assert verify_secret("lamp-secret", device.credential_hash)
    finally:
        await storage.close()
