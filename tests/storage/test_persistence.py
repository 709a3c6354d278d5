"""What users create survives a restart and a kill -9 of a real server process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from iotmp.device import Device
from iotmp.protocol.errors import AuthenticationError

SECRET = "a-fixed-secret-so-tokens-survive-restarts"
START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m iotmp server --config ... --data-dir ...`` on fixed loopback ports."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.http_port = _free_port()
        self.tcp_port = _free_port()
        self.data_dir = tmp_path / "data"
        self.config = tmp_path / "server.json"
        self.log = tmp_path / "server.log"
        document: dict[str, Any] = {
            "host": "127.0.0.1",
            "http_port": self.http_port,
            "tcp_port": self.tcp_port,
            "tls_port": None,
            "secret": SECRET,
            "users": [{"name": "alice", "password": "alice-pw"}],
            "devices": [{"id": "seeded", "credential": "seeded-pw"}],
        }
        if database.startswith("postgresql"):
            document["database"] = database
        self.config.write_text(json.dumps(document), encoding="utf-8")
        self.process: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{self.http_port}"

    async def start(self, http: aiohttp.ClientSession) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "iotmp",
                "server",
                "--config",
                str(self.config),
                "--data-dir",
                str(self.data_dir),
                stdout=log,
                stderr=log,
            )
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"server exited: {self.log.read_text()}")
                try:
                    async with http.get(self.url + "/v1/server/version") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        async with asyncio.timeout(START_TIMEOUT):
            await self.process.wait()
        if sig == signal.SIGTERM:
            assert self.process.returncode == 0, self.log.read_text()


@asynccontextmanager
async def server_process(
    tmp_path: Path, database: str, http: aiohttp.ClientSession
) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path, database)
    await process.start(http)
    try:
        yield process
    finally:
        if process.process is not None and process.process.returncode is None:
            await process.stop(signal.SIGKILL)


async def _request(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str,
    body: Any = None,
) -> tuple[int, Any]:
    async with http.request(
        method, url, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


async def _oauth(http: aiohttp.ClientSession, url: str, form: dict[str, str]) -> tuple[int, Any]:
    async with http.post(url + "/oauth/token", data=form) as resp:
        return resp.status, await resp.json()


async def _make_things(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """Use a refresh token, create tokens (one then deleted) and a device."""
    status, first = await _oauth(
        http, url, {"grant_type": "password", "username": "alice", "password": "alice-pw"}
    )
    assert status == 200
    status, second = await _oauth(
        http, url, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert status == 200
    admin = second["access_token"]
    tokens = {}
    for token_id in ("keep", "gone"):
        status, body = await _request(
            http,
            "POST",
            url + "/v1/users/alice/tokens",
            admin,
            {"token": token_id, "name": token_id, "enabled": True},
        )
        assert status == 200
        tokens[token_id] = body["access_token"]
    status, _ = await _request(http, "DELETE", url + "/v1/users/alice/tokens/gone", admin)
    assert status == 200
    status, made = await _request(
        http,
        "POST",
        url + "/v1/users/alice/devices",
        admin,
        {"device": "made", "credentials": "made-secret", "name": "Made by the API"},
    )
    assert status == 200
    return {"first": first, "second": second, "admin": admin, "tokens": tokens, "made": made}


async def _check_things(
    http: aiohttp.ClientSession, server: ServerProcess, things: dict[str, Any]
) -> None:
    url = server.url
    devices_url = url + "/v1/users/alice/devices"
    status, _ = await _request(http, "GET", devices_url, things["tokens"]["gone"])
    assert status == 401  # the revoked token stays revoked
    status, listed = await _request(http, "GET", devices_url, things["tokens"]["keep"])
    assert status == 200
    by_id = {d["device"]: d for d in listed}
    assert by_id["made"]["name"] == "Made by the API"
    assert by_id["made"]["created"] == things["made"]["created"]
    assert "seeded" in by_id
    first, second = things["first"], things["second"]
    status, body = await _oauth(
        http, url, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert status == 401  # the used refresh token stays used
    assert body == {"error": {"message": "invalid refresh token"}}
    status, _ = await _oauth(
        http, url, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}
    )
    assert status == 200
    # the device made through the API logs in with its credential (and only with it)
    session = await Device("alice", "made", "made-secret").connect("127.0.0.1", server.tcp_port)
    await session.close("done")
    with pytest.raises(AuthenticationError):
        await Device("alice", "made", "other-secret").connect("127.0.0.1", server.tcp_port)


async def _token_burst(
    http: aiohttp.ClientSession, server: ServerProcess, admin: str, kill_after: int
) -> dict[str, str]:
    """Create tokens 8 at a time; kill -9 the server after ``kill_after`` got 200."""
    committed: dict[str, str] = {}
    enough = asyncio.Event()

    async def creator(start: int) -> None:
        for index in range(start, 5000, 8):
            if server.process is None or server.process.returncode is not None:
                return
            token_id = f"burst_{index}"
            try:
                status, body = await _request(
                    http,
                    "POST",
                    server.url + "/v1/users/alice/tokens",
                    admin,
                    {"token": token_id, "name": f"burst {index}", "enabled": True},
                )
            except aiohttp.ClientError:
                return  # the server died under this request: nothing was promised
            if status == 200:
                committed[token_id] = body["access_token"]
                if len(committed) >= kill_after:
                    enough.set()

    workers = [asyncio.create_task(creator(i)) for i in range(8)]
    async with asyncio.timeout(60):
        await enough.wait()
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGKILL)  # with requests in flight
    await asyncio.gather(*workers)
    await server.process.wait()
    return committed


async def test_restart_after_kill_9_keeps_everything_committed(
    tmp_path: Path, database: str, http: aiohttp.ClientSession
) -> None:
    """Restart a real server process (killed with -9 in a burst of token creations).

    The revoked token stays revoked, the used refresh token stays used, the
    device created through the API is there and logs in, and every token whose
    POST got 200 is intact; the database opens (and SQLite's file checks ok).
    """
    async with server_process(tmp_path, database, http) as server:
        things = await _make_things(http, server.url)
        committed = await _token_burst(http, server, things["admin"], kill_after=25)
        assert len(committed) >= 25

        if database.startswith("sqlite"):
            with sqlite3.connect(server.data_dir / "iotmp.db") as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

        await server.start(http)
        await _check_things(http, server, things)
        status, listed = await _request(
            http, "GET", server.url + "/v1/users/alice/tokens", things["admin"]
        )
        assert status == 200
        stored = {t["token"]: t["access_token"] for t in listed}
        for token_id, access_token in committed.items():
            assert stored.get(token_id) == access_token, token_id
        for access_token in list(committed.values())[:5]:
            status, _ = await _request(
                http, "GET", server.url + "/v1/users/alice/devices", access_token
            )
            assert status == 200
        # and a clean stop / start keeps it all too
        await server.stop()
        await server.start(http)
        status, _ = await _request(
            http, "GET", server.url + "/v1/users/alice/devices", things["tokens"]["gone"]
        )
        assert status == 401
        await server.stop()
