"""The configuration file seeds the database: entries created or updated, never deleted."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from iotmp.device import Device
from iotmp.protocol.errors import AuthenticationError
from iotmp.server.app import IotmpServer
from iotmp.server.config import DeviceConfig, ServerConfig, UserConfig
from iotmp.server.storage.records import StoredDevice


def _config(database: str, data_dir: Path, *devices: DeviceConfig) -> ServerConfig:
    return ServerConfig(
        host="127.0.0.1",
        http_port=None,
        tcp_port=0,
        tls_port=None,
        secret="seeding-test-secret-seeding-test",
        users=(UserConfig("alice", "pw"),),
        devices=devices,
        data_dir=str(data_dir),
        database=None if database.startswith("sqlite") else database,
    )


async def test_config_seeds_without_deleting(database: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    first = _config(
        database,
        data_dir,
        DeviceConfig("kept", "alice", "kept-pw", name="Kept"),
        DeviceConfig("dropped", "alice", "dropped-pw", name="Dropped from the file"),
    )
    server = IotmpServer(first)
    await server.start()
    try:
        await server.accounts.create_device(StoredDevice("api", "alice", name="API"), "api-pw")
    finally:
        await server.stop()
    if database.startswith("sqlite"):
        assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(data_dir / "iotmp.db").st_mode) == 0o600

    second = _config(
        database,
        data_dir,
        DeviceConfig("kept", "alice", "new-pw", name="Renamed in the file", type="MQTT"),
        DeviceConfig("added", "alice", "added-pw"),
    )
    server = IotmpServer(second)
    await server.start()
    try:
        names = {state.id: state.config.name for state in server.registry}
        assert names == {
            "kept": "Renamed in the file",
            "dropped": "Dropped from the file",  # not in the file any more, still stored
            "api": "API",
            "added": "",
        }
        kept = server.registry.get("kept")
        assert kept is not None and kept.config.type == "MQTT"
        port = server.tcp_port
        assert port is not None
        for device_id, credential in (
            ("kept", "new-pw"),
            ("dropped", "dropped-pw"),
            ("api", "api-pw"),
            ("added", "added-pw"),
        ):
            session = await Device("alice", device_id, credential).connect("127.0.0.1", port)
            await session.close("done")
        with pytest.raises(AuthenticationError):
            await Device("alice", "kept", "kept-pw").connect("127.0.0.1", port)
        assert await server.accounts.check_password("alice", "pw")
        assert not await server.accounts.check_password("alice", "nope")
    finally:
        await server.stop()


async def test_a_generated_secret_is_kept(database: str, tmp_path: Path) -> None:
    config = replace(_config(database, tmp_path / "state"), secret=None)
    server = IotmpServer(config)
    await server.start()
    try:
        token = server.issue_token("alice")
        session = server.auth.issue_access_token("alice", expires_in=600)
    finally:
        await server.stop()
    server = IotmpServer(config)  # a new process would generate another secret
    await server.start()
    try:
        assert server.auth.verify_access_token(token)["usr"] == "alice"
        assert server.auth.verify_access_token(session)["usr"] == "alice"
    finally:
        await server.stop()
