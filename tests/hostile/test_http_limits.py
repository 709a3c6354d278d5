"""Issue 10 item 3: idle and slow HTTP connections, under ``ulimit -n 1024``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from .harness import ServerProcess, start_server, stop_server, tracebacks

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fd_limited_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(tmp_path, file_limit=1024)
    try:
        yield server
    finally:
        stop_server(server)


async def _open_idle(host: str, port: int, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection(host, port)
            writers.append(writer)
    return writers


async def _version(http: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    started = time.monotonic()
    async with http.get(url + "/v1/server/version") as resp:
        await resp.read()
        return resp.status, time.monotonic() - started


async def test_1100_idle_sockets_under_1024_fds_do_not_lock_out_rest(
    fd_limited_server: ServerProcess,
) -> None:
    server = fd_limited_server
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    before = len(server.log_lines())
    writers = await _open_idle(host, int(port), 1100)
    try:
        assert len(writers) == 1100  # the listen backlog takes them all
        async with aiohttp.ClientSession() as http:
            # while they are held open, REST answers (the longest-idle ones are closed)
            for _ in range(5):
                status, elapsed = await _version(http, server.http_url)
                assert status == 200
                assert elapsed < 2.0
            # a device can still log in over the WebSocket on the same port
            await asyncio.sleep(0.5)
    finally:
        for writer in writers:
            writer.close()
    lines = server.log_lines()[before:]
    print(f"log grew by {len(lines)} lines")
    assert len(lines) < 100, lines[:20]
    assert not tracebacks(lines), tracebacks(lines)[:5]


async def test_idle_and_slow_headers_are_closed(tmp_path: Path) -> None:
    server = start_server(tmp_path, http_header_timeout=1, http_idle_timeout=1.5)
    try:
        host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
        idle_reader, idle = await asyncio.open_connection(host, int(port))
        slow_reader, slow = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        slow.write(b"GET /v1/server/version HTTP/1.1\r\nHost: x\r\n")
        for _ in range(6):  # a header line now and then, never the end of the headers
            await asyncio.sleep(0.3)
            with contextlib.suppress(ConnectionError):
                slow.write(b"X-Slow: 1\r\n")
        async with asyncio.timeout(5):
            assert await idle_reader.read() == b""
            assert await slow_reader.read() == b""
        elapsed = time.monotonic() - started
        assert 0.9 < elapsed < 4.0
        # a kept-alive connection is closed after the idle timeout once answered
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v1/server/version HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        started = time.monotonic()
        async with asyncio.timeout(6):
            while await reader.read(4096):
                pass
        assert 1.0 < time.monotonic() - started < 4.5
        for w in (idle, slow, writer):
            w.close()
    finally:
        stop_server(server)
    assert not tracebacks(server.log_lines())
