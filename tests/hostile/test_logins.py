"""Issue 10 item 8: brute force on the password grant and on device logins.

The server here spaces attempts 0.05 s doubling up to 0.4 s (``login_delay``);
the arithmetic for the default 0.5 .. 8 s (1,000 tries from 20 connections
take far over 100 s) is in ``test_throttle_unit.py`` and the fuzz script.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from iotmp.protocol.message import Message, MessageType

from .harness import (
    PASSWORD,
    USER,
    ServerProcess,
    credential,
    start_server,
    stop_server,
    tracebacks,
)
from .raw import RawDevice

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def login_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(tmp_path, login_max_wait=4)
    try:
        yield server
    finally:
        stop_server(server)
    assert not tracebacks(server.log_lines())


async def _grant(http: aiohttp.ClientSession, url: str, password: str) -> tuple[int, float]:
    started = time.monotonic()
    form = {"grant_type": "password", "username": USER, "password": password}
    async with http.post(url + "/oauth/token", data=form) as resp:
        await resp.read()
        return resp.status, time.monotonic() - started


async def test_password_grant_brute_force_is_slowed_not_the_owner(
    login_server: ServerProcess,
) -> None:
    url = login_server.http_url
    async with (
        aiohttp.ClientSession() as attacker,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as owner,
    ):
        sequential = [await _grant(attacker, url, f"guess-{i}") for i in range(5)]
        assert [status for status, _ in sequential] == [401] * 5
        times = [elapsed for _, elapsed in sequential]
        assert times[0] < 0.2
        assert times[2] >= 0.09 and times[3] >= 0.19 and times[4] >= 0.38, times

        # parallel connections queue behind each other instead of multiplying the rate
        started = time.monotonic()
        attack = asyncio.gather(*(_grant(attacker, url, f"p-{i}") for i in range(8)))
        await asyncio.sleep(0.1)
        status, owner_time = await _grant(owner, url, PASSWORD)  # from another address
        results = await attack
        total = time.monotonic() - started
        assert status == 200
        assert owner_time < 0.3, owner_time  # not delayed
        assert {s for s, _ in results} == {401}
        assert total >= 7 * 0.38, total  # eight checks spaced by the 0.4 s cap
        # far-away turns are refused at once, unchecked, with a time to retry
        burst = asyncio.gather(*(_grant(attacker, url, f"q-{i}") for i in range(30)))
        await asyncio.sleep(0.2)
        async with attacker.post(
            url + "/oauth/token",
            data={"grant_type": "password", "username": USER, "password": "x"},
        ) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) > 0
            assert "too many failed logins" in (await resp.json())["error"]["message"]
        assert 429 in {s for s, _ in await burst}
        # the right password from the attacking address waits its turn too
        status, elapsed = await _grant(attacker, url, PASSWORD)
        assert status == 200
        assert elapsed >= 0.3
    print(f"sequential waits {[round(t, 2) for t in times]}, 8 parallel took {total:.2f} s")


async def _device_login(port: int, device: str, secret: str, source: str | None = None) -> bool:
    peer = await RawDevice.open(port, source)
    try:
        await peer.send(
            Message.build(MessageType.CONNECT, stream_id=1, payload=[USER, device, secret])
        )
        return (await peer.receive(15)).type == MessageType.OK
    finally:
        await peer.close()


async def test_parallel_device_logins_cannot_bypass_the_throttle(
    login_server: ServerProcess,
) -> None:
    port = login_server.tcp_port
    for _ in range(4):
        assert not await _device_login(port, "victim", "wrong")
    started = time.monotonic()
    attack = asyncio.gather(*(_device_login(port, "victim", f"w{i}") for i in range(6)))
    await asyncio.sleep(0.1)
    good_started = time.monotonic()
    assert await _device_login(port, "victim", credential("victim"), "127.0.0.2")
    good_time = time.monotonic() - good_started
    assert not any(await attack)
    total = time.monotonic() - started
    assert good_time < 0.3, good_time
    assert total >= 5 * 0.38, total
