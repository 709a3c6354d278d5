"""HTTPS and WSS on the API port, and failed device handshakes in the log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from server_helpers import LOCALHOST, WAIT, make_lamp

from iotmp.protocol.transport import client_ssl_context
from iotmp.server.certs import make_self_signed
from iotmp.server.handshake_log import HandshakeLog
from iotmp.server.testing import TestDevice, TestServer, run_test_server

HANDSHAKE_LOGGER = "iotmp.server.handshake"


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TestServer]:
    """A server with a fresh self-signed certificate (HTTPS API + device TLS)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key)
    async with run_test_server(
        devices=[TestDevice("lamp", credential="pw")], tls_cert=str(cert), tls_key=str(key)
    ) as server:
        yield server


async def test_https_serves_the_api(tls_server: TestServer, http: aiohttp.ClientSession) -> None:
    url = tls_server.https_url
    assert url is not None and url.startswith("https://127.0.0.1:")
    async with http.get(f"{url}/v1/server/version", ssl=False) as resp:
        assert resp.status == 200
        assert "version" in await resp.json()
    headers = {"Authorization": f"Bearer {tls_server.token}"}
    async with http.get(f"{url}/v1/users/alice/devices", headers=headers, ssl=False) as resp:
        assert resp.status == 200
        assert [d["device"] for d in await resp.json()] == ["lamp"]
    # an unknown path over TLS still gets the JSON error body
    async with http.get(f"{url}/nope", ssl=False) as resp:
        assert resp.status == 404
        assert "message" in (await resp.json())["error"]


async def test_https_certificate_verifies_with_its_own_ca(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key)
    async with (
        run_test_server(tls_cert=str(cert), tls_key=str(key)) as server,
        aiohttp.ClientSession() as http,
    ):
        context = ssl.create_default_context(cafile=str(cert))
        async with http.get(f"{server.https_url}/v1/server/version", ssl=context) as resp:
            assert resp.status == 200


async def test_wss_device_connects_and_answers(
    tls_server: TestServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = tls_server.server.https_port
    assert port is not None
    device, _ = make_lamp("alice", "lamp", "pw")
    task = asyncio.create_task(
        device.run(LOCALHOST, port, transport="wss", ssl_context=client_ssl_context(verify=False))
    )
    try:
        await tls_server.wait_device_connected("lamp", WAIT)
        assert tls_server.device("lamp").transport == "wss"
        headers = {"Authorization": f"Bearer {tls_server.token}"}
        url = f"{tls_server.https_url}/v3/users/alice/devices/lamp/resources/temperature"
        async with http.get(url, headers=headers, ssl=False) as resp:
            assert resp.status == 200
            assert await resp.json() == {"celsius": 21.5, "humidity": 45}
        assert not _warnings(caplog)
    finally:
        await device.stop()
        await asyncio.wait_for(task, WAIT)


async def test_ws_device_still_works_on_the_plain_port(tls_server: TestServer) -> None:
    device, _ = make_lamp("alice", "lamp", "pw")
    task = asyncio.create_task(device.run(url=tls_server.device_ws_url, transport="ws"))
    try:
        await tls_server.wait_device_connected("lamp", WAIT)
        assert tls_server.device("lamp").transport == "ws"
    finally:
        await device.stop()
        await asyncio.wait_for(task, WAIT)


async def _send_and_close(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            return await reader.read(4096)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """WARNING+ records of the server and aiohttp (asyncio's debug-mode timing notes aside)."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("iotmp", "aiohttp"))
    ]


async def _wait_for_record(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    async with asyncio.timeout(WAIT):
        while True:
            for record in caplog.records:
                if record.name == HANDSHAKE_LOGGER and text in record.getMessage():
                    return record
            await asyncio.sleep(0.02)


async def test_failed_handshakes_are_logged_at_info(
    tls_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=HANDSHAKE_LOGGER)
    https_port, tls_port = tls_server.server.https_port, tls_server.tls_port
    assert https_port is not None and tls_port is not None
    http_port = int(tls_server.http_url.rsplit(":", 1)[1])

    # plain HTTP to the HTTPS port (what a misconfigured client does)
    assert await _send_and_close(https_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    record = await _wait_for_record(caplog, "https: TLS error")
    assert record.levelno == logging.INFO
    assert "127.0.0.1" in record.getMessage()

    caplog.clear()
    tls_server.server.handshake_log = HandshakeLog()  # fresh rate limit for each case
    # plain IOTMP to the device TLS port
    await _send_and_close(tls_port, bytes.fromhex("03 1b 1a e3 85 616c696365"))
    await _wait_for_record(caplog, "tls: TLS error")

    # a TLS ClientHello to the plain HTTP port (a wss:// device on http_port)
    caplog.clear()
    tls_server.server._handler_cls.handshake_log = HandshakeLog()
    hello = bytes.fromhex("16030100a5010000a10303") + bytes(160)
    answer = await _send_and_close(http_port, hello)
    assert answer.startswith(b"HTTP/1.")
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert "TLS" in body["error"]["message"]
    await _wait_for_record(caplog, "TLS sent to the plain HTTP port")

    # GET /iotmp without a WebSocket upgrade
    caplog.clear()
    tls_server.server.handshake_log = HandshakeLog()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{tls_server.http_url}/iotmp") as resp,
    ):
        assert resp.status == 400
        assert "WebSocket" in (await resp.json())["error"]["message"]
    await _wait_for_record(caplog, "websocket: GET /iotmp without a WebSocket upgrade")

    # garbage instead of CONNECT on the device TCP port
    caplog.clear()
    tls_server.server.handshake_log = HandshakeLog()
    caplog.set_level(logging.INFO)
    await _send_and_close(tls_server.tcp_port, b"\x07\x03garbage" + bytes(20))
    await _wait_for_record(caplog, "connect:")
    # that one INFO line is all: no WARNING for client garbage
    assert not _warnings(caplog)


def test_handshake_log_is_rate_limited_per_address(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    log = HandshakeLog(interval=60.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger=HANDSHAKE_LOGGER)
    assert log.failed("10.0.0.1", "tls", "wrong version number")
    for _ in range(5):
        now[0] += 5
        assert not log.failed("10.0.0.1", "tls", "wrong version number")
    assert log.failed("10.0.0.2", "tls", "wrong version number")  # another address
    now[0] += 60
    assert log.failed("10.0.0.1", "tls", "wrong version number")
    lines = [r.getMessage() for r in caplog.records if r.name == HANDSHAKE_LOGGER]
    assert len(lines) == 3
    assert "5 more from this address" in lines[2]


def test_demo_serves_https_with_a_reused_certificate(tmp_path: Path) -> None:
    """``iotmp server --demo``: self-signed certificate made once, https_url in the file."""
    demo_file = tmp_path / "demo" / "demo.json"
    command = [
        sys.executable,
        "-c",
        "import asyncio, argparse, sys\n"
        "from iotmp.cli import server\n"
        "async def main():\n"
        "    p = argparse.ArgumentParser(); server.add_arguments(p)\n"
        "    args = p.parse_args(sys.argv[1:])\n"
        "    srv, doc = await server.start_server(args)\n"
        "    import aiohttp\n"
        "    async with aiohttp.ClientSession() as http:\n"
        "        async with http.get(doc['https_url'] + '/v1/server/version', ssl=False) as r:\n"
        "            print(r.status, doc['https_url'])\n"
        "    await srv.stop()\n"
        "asyncio.run(main())\n",
        "--demo",
        "--demo-file",
        str(demo_file),
        "--http-port",
        "0",
        "--tcp-port",
        "0",
        "--tls-port",
        "0",
        "--https-port",
        "0",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    status, url = first.stdout.split()
    assert status == "200" and url.startswith("https://127.0.0.1:")
    cert = demo_file.parent / "demo-cert.pem"
    pem = cert.read_bytes()
    document = json.loads(demo_file.read_text())
    assert document["https_url"] == url
    second = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert second.stdout.split()[0] == "200"
    assert cert.read_bytes() == pem  # generated once, then reused


async def test_refused_logins_are_logged_once_per_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from server_helpers import RawPeer

    from iotmp.protocol.message import Message, MessageType

    caplog.set_level(logging.INFO, logger=HANDSHAKE_LOGGER)
    async with run_test_server(
        devices=[TestDevice("lamp", credential="pw")], login_delay=0.0, login_delay_max=0.0
    ) as server:
        for _ in range(3):
            peer = await RawPeer.open(server.tcp_port)
            try:
                await peer.send(
                    Message.build(
                        MessageType.CONNECT, stream_id=1, payload=["alice", "lamp", "wrong"]
                    )
                )
                assert (await peer.receive()).type == MessageType.ERROR
                assert await peer.wait_eof()
            finally:
                await peer.close()
    lines = [r.getMessage() for r in caplog.records if r.name == HANDSHAKE_LOGGER]
    assert len(lines) == 1
    assert "login refused" in lines[0] and "'lamp'" in lines[0] and "wrong" not in lines[0]


async def test_wss_device_with_text_frames_like_a_reference_device(
    tls_server: TestServer,
) -> None:
    """IOTMP bytes (not UTF-8) in masked TEXT frames over TLS, TLS 1.3, any certificate."""
    from server_helpers import reference_websocket_login

    async with run_test_server(
        devices=[TestDevice("refdev1", credential="s3cret")],
        tls_cert=tls_server.config.tls_cert,
        tls_key=tls_server.config.tls_key,
    ) as server:
        port = server.server.https_port
        assert port is not None
        reader, writer = await asyncio.open_connection(
            LOCALHOST, port, ssl=client_ssl_context(verify=False)
        )
        try:
            data = await reference_websocket_login(reader, writer)
            assert data == bytes.fromhex("01 04 08 e7 8a 01")  # OK with the CONNECT's id
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def test_https_port_in_use_fails_start_and_frees_the_rest(tmp_path: Path) -> None:
    import socket

    from iotmp.server.app import IotmpServer
    from iotmp.server.config import ServerConfig, UserConfig

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key)
    with socket.socket() as busy:
        busy.bind((LOCALHOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = ServerConfig(
            http_port=0,
            tcp_port=0,
            tls_port=None,
            https_port=port,
            tls_cert=str(cert),
            tls_key=str(key),
            secret="s",
            users=(UserConfig("alice"),),
        )
        server = IotmpServer(config)
        with pytest.raises(OSError):
            await server.start()
        assert not server.running
        http_port = server.http_port
    assert http_port is not None
    with pytest.raises(OSError):  # the HTTP listener that did start was closed again
        await asyncio.open_connection(LOCALHOST, http_port)
