"""Routes real Thinger clients call (Node-RED, thinr, thinger-node), errors, access log."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from server_helpers import LOCALHOST, WAIT, Lab

ACCESS_LOGGER = "iotmp.server.access"


async def _call(lab: Lab, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
    headers = kwargs.pop("headers", lab.headers)
    async with lab.http.request(method, lab.url(path), headers=headers, **kwargs) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None), resp.headers


async def test_resources_api_is_the_resource_map(lab: Lab) -> None:
    status, body, _ = await _call(lab, "GET", "/v3/users/alice/devices/lamp/resources/api")
    assert status == 200
    _, listing, _ = await _call(lab, "GET", "/v3/users/alice/devices/lamp/resources")
    assert body == listing
    assert body["led"]["fn"] == 2 and body["temperature"]["fn"] == 3
    # offline device: 404 like /resources
    status, body, _ = await _call(lab, "GET", "/v3/users/alice/devices/spare/resources/api")
    assert status == 404
    assert body["error"]["message"] == "device not connected"
    # a resource's own /api still works
    status, body, _ = await _call(lab, "GET", "/v3/users/alice/devices/lamp/resources/led/api")
    assert (status, body) == (200, {"in": False})


async def test_v1_resource_api_reads_and_runs_like_v3(lab: Lab) -> None:
    dev = "/v1/users/alice/devices/lamp"
    status, body, _ = await _call(lab, "GET", f"{dev}/temperature")
    assert (status, body) == (200, {"celsius": 21.5, "humidity": 45})
    status, body, _ = await _call(lab, "POST", f"{dev}/led", json=True)
    assert (status, body) == (200, None)
    assert lab.state.led is True
    status, body, _ = await _call(lab, "POST", f"{dev}/calc", json={"a": 2, "b": 3})
    assert (status, body) == (200, {"sum": 5, "product": 6})
    status, body, _ = await _call(lab, "POST", f"{dev}/reboot")
    assert status == 200 and lab.state.reboots == 1
    status, body, _ = await _call(lab, "GET", f"{dev}/$ota/options")
    assert (status, body) == (200, {"chunk": 8192})
    status, body, _ = await _call(lab, "GET", f"{dev}/nope")
    assert status == 404 and body["error"]["message"] == "resource not found"
    status, body, _ = await _call(lab, "GET", f"{dev}/broken")
    assert status == 409 and body["error"]["message"] == "sensor unplugged"


async def test_v1_resource_api_leaves_the_device_subroutes_alone(lab: Lab) -> None:
    # /stats is the stats route, not a resource called "stats"
    status, body, _ = await _call(lab, "GET", "/v1/users/alice/devices/lamp/stats")
    assert status == 200 and body["connected"] is True
    # /tokens belongs to the token routes: never sent to the device as a resource
    status, body, _ = await _call(lab, "GET", "/v1/users/alice/devices/lamp/tokens")
    assert (status, body) == (200, []), "the device-token list, not a resource"


async def test_device_stats_count_bytes(lab: Lab) -> None:
    status, first, _ = await _call(lab, "GET", "/v3/users/alice/devices/lamp/stats")
    assert status == 200
    assert first["connected"] is True
    assert first["ip_address"] == LOCALHOST
    assert isinstance(first["connected_ts"], int)
    assert first["rx_bytes"] > 0 and first["tx_bytes"] > 0  # CONNECT, DESCRIBE so far
    await _call(lab, "GET", "/v3/users/alice/devices/lamp/resources/temperature")
    _, second, _ = await _call(lab, "GET", "/v3/users/alice/devices/lamp/stats")
    assert second["tx_bytes"] > first["tx_bytes"]  # the RUN request
    assert second["rx_bytes"] > first["rx_bytes"] + 10  # its answer (a map)
    status, offline, _ = await _call(lab, "GET", "/v3/users/alice/devices/spare/stats")
    assert status == 200
    assert offline["connected"] is False
    assert (offline["rx_bytes"], offline["tx_bytes"]) == (0, 0)
    status, body, _ = await _call(lab, "GET", "/v3/users/alice/devices/ghost/stats")
    assert status == 404 and body["error"]["message"] == "device not found"


async def test_user_profile_and_device_counts(lab: Lab) -> None:
    status, body, _ = await _call(lab, "GET", "/v1/users/alice")
    assert status == 200
    assert body["user"] == "alice" and body["role"] == "user"
    status, body, _ = await _call(lab, "GET", "/v1/users/alice/info/devices/stats")
    assert (status, body) == (200, {"total": 2, "connected": 1, "disconnected": 1})
    lab.server.add_user("bob")
    status, body, _ = await _call(lab, "GET", "/v1/users/bob")
    assert status == 403
    status, body, _ = await _call(lab, "GET", "/v1/users/alice", headers={})
    assert status == 401 and "message" in body["error"]


async def test_server_assets_and_proxies(lab: Lab) -> None:
    status, body, _ = await _call(lab, "GET", "/v1/server/assets", headers={})
    assert status == 200
    device = next(a for a in body if a["asset"] == "device")
    assert device["role"] == "user"
    assert device["paths"]["list"] == "v1/users/(?<user>[a-zA-Z0-9_-]{1,32})/devices"
    status, body, _ = await _call(lab, "GET", "/v1/proxies")
    assert (status, body) == (200, [])
    status, body, _ = await _call(lab, "GET", "/v1/proxies", headers={})
    assert status == 401
    bad = {"Authorization": "Bearer not-a-token"}
    status, body, _ = await _call(lab, "GET", "/v1/proxies", headers=bad)
    assert status == 401 and "message" in body["error"]


async def test_405_carries_allow(lab: Lab) -> None:
    status, body, headers = await _call(lab, "DELETE", "/v1/server/version")
    assert status == 405
    assert "GET" in headers["Allow"]
    assert "message" in body["error"]
    status, _, headers = await _call(lab, "PUT", "/v3/users/alice/devices/lamp/resources/led")
    assert status == 405
    assert {"GET", "POST"} <= set(headers["Allow"].split(","))


async def test_unknown_path_is_a_json_404(lab: Lab) -> None:
    status, body, headers = await _call(lab, "GET", "/no/such/path")
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert isinstance(body["error"]["message"], str)


async def _raw_request(lab: Lab, data: bytes) -> tuple[int, dict[str, Any]]:
    port = int(lab.server.http_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head
    return status, json.loads(body)


async def test_aiohttp_own_400s_are_json(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    huge = b"GET /v1/server/version HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    status, body = await _raw_request(lab, huge)
    assert status == 400
    assert body["error"]["message"]
    status, body = await _raw_request(lab, b"NOT A REQUEST\r\n\r\n")
    assert status == 400 and body["error"]["message"]
    # client input is not a server error: no ERROR record, no traceback
    ours = [r for r in caplog.records if r.name.startswith(("iotmp", "aiohttp"))]
    assert not [r for r in ours if r.levelno >= logging.ERROR]
    assert not [r for r in ours if r.exc_info]


async def test_access_log_line_redacts_tokens(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    token = lab.server.token
    path = f"/v3/users/alice/devices/lamp/resources/temperature?authorization={token}&x=1"
    status, _, _ = await _call(lab, "GET", path, headers={})
    assert status == 200
    await _call(lab, "GET", "/v1/users/alice/devices/ghost")  # Bearer header, 404
    records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(records) == 2
    ok, missing = records
    line = ok.getMessage()
    assert token not in line and token[:20] not in line
    assert "authorization=REDACTED&x=1" in line
    assert line.startswith("127.0.0.1 alice ")
    assert '"GET /v3/users/alice/devices/lamp/resources/temperature' in line
    fields = ok.access  # type: ignore[attr-defined]
    assert fields["status"] == 200 and fields["bytes"] > 0 and fields["duration_ms"] >= 0
    assert fields["user"] == "alice"
    assert missing.access["status"] == 404  # type: ignore[attr-defined]
    assert token not in missing.getMessage()


async def test_access_log_websocket_open_and_close(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    url = lab.server.ws_url + "/v3/users/alice/devices/lamp/resources"
    async with lab.http.ws_connect(f"{url}?authorization={lab.server.token}") as ws:
        await ws.send_json({"resource": "led", "interval": 0})
        await ws.receive_json(timeout=WAIT)
    async with asyncio.timeout(WAIT):
        while len([r for r in caplog.records if r.name == ACCESS_LOGGER]) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    opened, closed = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert "websocket open" in opened.getMessage()
    assert "websocket closed" in closed.getMessage()
    assert closed.access["status"] == 101  # type: ignore[attr-defined]
    for record in (opened, closed):
        assert lab.server.token not in record.getMessage()
        assert "authorization=REDACTED" in record.getMessage()
        assert record.access["user"] == "alice"  # type: ignore[attr-defined]
