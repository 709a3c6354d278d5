"""Migrations: a database made by the baseline migration opens and upgrades, keeping its data.

A database already at the newest revision opens without importing alembic; one a
newer iotmp wrote is refused with a clear message.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from iotmp.server.storage.engine import StorageConfigError, create_engine, database_url
from iotmp.server.storage.hashing import verify_secret
from iotmp.server.storage.migrate import (
    VERSIONS_DIR,
    alembic_config,
    current_revision,
    head_revision,
    shipped_head,
    upgrade,
)
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


# -- the start without alembic (issue 14) ------------------------------------------

# A fresh interpreter opens the storage like the server does, reads from it and tells
# which migration machinery it loaded (this test process has alembic loaded already).
_OPEN_AND_REPORT = """
import asyncio, json, sys
from iotmp.server.storage.repository import Storage

async def main():
    storage = await Storage.open(sys.argv[1])
    try:
        users = [u.name for u in await storage.users()]
    finally:
        await storage.close()
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"alembic", "mako", "pygments"})
    print(json.dumps({"users": users, "loaded": loaded}))

asyncio.run(main())
"""


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args`` (and this process's import path)."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _open_in_subprocess(url: str) -> dict[str, Any]:
    result = _python("-c", _OPEN_AND_REPORT, url)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


async def _set_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        await engine.dispose()


async def _seed_alice(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO users VALUES ('alice', NULL, 1700000000000, 1700000000000)")
            )
    finally:
        await engine.dispose()


async def test_fresh_database_is_migrated_to_the_head(database: str) -> None:
    url = database_url(database, Path())
    storage = await Storage.open(url)
    try:
        assert await current_revision(storage.engine) == head_revision()
        assert await storage.put_user("alice", None)
        assert [u.name for u in await storage.users()] == ["alice"]
    finally:
        await storage.close()


async def test_current_database_opens_without_alembic(database: str) -> None:
    url = database_url(database, Path())
    await (await Storage.open(url)).close()
    await _seed_alice(url)
    assert _open_in_subprocess(url) == {"users": ["alice"], "loaded": []}


async def test_older_database_is_upgraded_with_alembic(database: str) -> None:
    # The check of the fast path: a database one migration behind is not taken as current.
    url = database_url(database, Path())
    engine = create_engine(url)
    try:
        await upgrade(engine, "0004_buckets")
    finally:
        await engine.dispose()
    await _seed_alice(url)
    report = _open_in_subprocess(url)
    assert report["users"] == ["alice"]
    assert "alembic" in report["loaded"]
    engine = create_engine(url)
    try:
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            # 0005 made the alarm tables: the upgrade really ran.
            assert (await conn.execute(text("SELECT count(*) FROM alarm_rules"))).scalar() == 0
    finally:
        await engine.dispose()


async def test_database_of_a_newer_iotmp_is_refused_clearly(database: str) -> None:
    url = database_url(database, Path())
    await (await Storage.open(url)).close()
    await _set_revision(url, "0099_from_the_future")
    with pytest.raises(StorageConfigError) as caught:
        await Storage.open(url)
    message = str(caught.value)
    assert "'0099_from_the_future'" in message
    assert f"its newest is {head_revision()!r}" in message
    assert "newer iotmp" in message
    engine = create_engine(url)
    try:  # left as it was: no half-done migration
        async with engine.connect() as conn:
            stored = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert stored == [("0099_from_the_future",)]
    finally:
        await engine.dispose()


async def test_server_on_a_newer_database_exits_with_a_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = database_url(None, data)
    await (await Storage.open(url)).close()
    await _set_revision(url, "0099_from_the_future")
    config = tmp_path / "server.json"
    # Port 0 everywhere: the refusal comes before any listener is opened.
    config.write_text(json.dumps({"host": "127.0.0.1", "http_port": 0, "data_dir": str(data)}))
    result = _python("-m", "iotmp", "server", "--config", str(config), "--tcp-port", "0")
    assert result.returncode == 2, result.stderr
    assert "iotmp server: database " in result.stderr
    assert "'0099_from_the_future'" in result.stderr
    assert "Traceback" not in result.stderr


# -- the newest shipped revision, read without alembic --------------------------------


def test_shipped_head_is_alembics_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"the migrations must have one head, not {heads}"
    assert shipped_head() == heads[0]


def _copy_versions(tmp_path: Path) -> Path:
    versions = tmp_path / "versions"
    shutil.copytree(VERSIONS_DIR, versions, ignore=shutil.ignore_patterns("__pycache__"))
    return versions


def _script(revision: str, down: str) -> str:
    return (
        f'"""A later migration."""\n\nrevision: str = "{revision}"\n'
        f"down_revision: str | tuple[str, ...] | None = {down}\n"
        "branch_labels = None\ndepends_on = None\n"
    )


def test_a_new_migration_is_the_head_without_other_edits(tmp_path: Path) -> None:
    versions = _copy_versions(tmp_path)
    (versions / "0006_more.py").write_text(_script("0006_more", repr(shipped_head())))
    assert shipped_head(versions) == "0006_more"
    assert ScriptDirectory(str(tmp_path)).get_current_head() == "0006_more"


def test_unclear_migrations_leave_the_decision_to_alembic(tmp_path: Path) -> None:
    versions = _copy_versions(tmp_path)
    head = shipped_head()
    (versions / "0006_a.py").write_text(_script("0006_a", repr(head)))
    (versions / "0006_b.py").write_text(_script("0006_b", repr(head)))
    assert shipped_head(versions) is None  # two heads
    (versions / "0007_merge.py").write_text(_script("0007_merge", '("0006_a", "0006_b")'))
    assert shipped_head(versions) == "0007_merge"
    (versions / "0008_odd.py").write_text("revision = make_name()\ndown_revision = '0007_merge'\n")
    assert shipped_head(versions) is None  # a revision that cannot be read
    assert shipped_head(tmp_path / "missing") is None
