"""Endpoints over real sockets: REST CRUD, calls to a local HTTP service, secrets, devices."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from endpoints_helpers import Target, running_target
from server_helpers import RawPeer, api_call, frame_hex, varint_hex

from iotmp.protocol.message import Message, MessageType
from iotmp.server.testing import TEST_LIMITS, TestDevice, TestServer, run_test_server

SECRET_TOKEN = "Bearer sk-live-0123456789"
SECRET_PASSWORD = "hunter2-pw"
SECRET_KEY = "k3y-abcdef"
LIMITS = replace(
    TEST_LIMITS,
    endpoint_timeout=1.0,
    endpoint_response_max_bytes=1000,
    endpoint_calls_in_flight=2,
)


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with running_target() as running:
        yield running


@pytest.fixture
async def server(database: str) -> AsyncIterator[TestServer]:
    devices = [TestDevice("refdev1", credential="s3cret"), TestDevice("bobdev", user="bob")]
    async with run_test_server(
        devices=devices, user="alice", database=database, limits=LIMITS
    ) as running:
        yield running


def http_endpoint(target: Target, path: str = "/ok", **config: Any) -> dict[str, Any]:
    return {
        "endpoint": config.pop("endpoint", "hook"),
        "name": "Hook",
        "type": "http_request",
        "config": {"url": target.url + path, "method": "POST", **config},
    }


async def create(http: aiohttp.ClientSession, server: TestServer, body: dict[str, Any]) -> Any:
    status, created = await api_call(http, server, "POST", "/v1/users/alice/endpoints", body)
    assert status == 200, created
    return created


# ----------------------------------------------------------------------------- CRUD


async def test_crud_and_validation(
    server: TestServer, http: aiohttp.ClientSession, target: Target
) -> None:
    created = await create(http, server, {**http_endpoint(target), "description": "d"})
    assert created["endpoint"] == "hook"
    assert created["enabled"] is True
    assert created["config"]["body_type"] == "json"
    status, listed = await api_call(http, server, "GET", "/v1/users/alice/endpoints")
    assert status == 200
    assert [e["endpoint"] for e in listed] == ["hook"]
    assert "config" not in listed[0]  # Thinger's list shows no config

    status, body = await api_call(http, server, "POST", "/v1/users/alice/endpoints", created)
    assert status == 400  # created/modified are not input
    status, body = await api_call(
        http, server, "POST", "/v1/users/alice/endpoints", http_endpoint(target)
    )
    assert (status, body["error"]["message"]) == (409, "endpoint already exists")

    status, body = await api_call(
        http, server, "PUT", "/v1/users/alice/endpoints/hook", {"name": "Renamed"}
    )
    assert (status, body["name"], body["config"]["url"]) == (200, "Renamed", target.url + "/ok")

    bad: list[dict[str, Any]] = [
        http_endpoint(target, endpoint="x1", url="ftp://example.com/x"),
        http_endpoint(target, endpoint="x2", method="TRACE"),
        http_endpoint(target, endpoint="x3", body_type="xml"),
        http_endpoint(target, endpoint="x4", colour="red"),
        http_endpoint(target, endpoint="x5", headers=[{"key": "X-A", "value": "a\r\nX-B: b"}]),
        http_endpoint(target, endpoint="x6", timeout=-1),
        {**http_endpoint(target, endpoint="x7"), "type": "email"},
        {**http_endpoint(target), "endpoint": "bad id!"},
        {"endpoint": "x8", "type": "http_request"},
    ]
    for body in bad:
        status, answer = await api_call(http, server, "POST", "/v1/users/alice/endpoints", body)
        assert status == 400, (body, answer)
        assert isinstance(answer["error"]["message"], str)

    status, _ = await api_call(http, server, "DELETE", "/v1/users/alice/endpoints/hook")
    assert status == 200
    for method in ("GET", "DELETE"):
        status, _ = await api_call(http, server, method, "/v1/users/alice/endpoints/hook")
        assert status == 404
    status, _ = await api_call(http, server, "POST", "/v1/users/alice/endpoints/hook/call", {})
    assert status == 404


async def test_users_are_isolated(
    server: TestServer, http: aiohttp.ClientSession, target: Target
) -> None:
    await create(http, server, http_endpoint(target))
    bob = server.issue_token(user="bob")
    status, _ = await api_call(http, server, "GET", "/v1/users/alice/endpoints/hook", token=bob)
    assert status == 403
    status, _ = await api_call(
        http, server, "POST", "/v1/users/alice/endpoints/hook/call", token=bob
    )
    assert status == 403
    status, listed = await api_call(http, server, "GET", "/v1/users/bob/endpoints", token=bob)
    assert (status, listed) == (200, [])
    status, _ = await api_call(http, server, "POST", "/v1/users/bob/endpoints/hook/call", token=bob)
    assert status == 404
    assert target.seen == []


# --------------------------------------------------------------------------- calls


async def test_call_sends_the_template_and_headers(
    server: TestServer, http: aiohttp.ClientSession, target: Target
) -> None:
    body = http_endpoint(
        target,
        path="/ok/{{room}}?unit={{payload.unit}}",
        body='{"val": {{temperature}}, "where": "{{room}}", "all": {{payload}}, "x": "{{nope}}"}',
        body_type="custom",
        headers=[
            {"key": "Authorization", "value": SECRET_TOKEN},
            {"key": "Content-Type", "value": "application/json"},
            {"key": "X-Room", "value": "room {{room}}"},
        ],
    )
    await create(http, server, body)
    payload = {"temperature": 21.5, "room": "hall/1", "unit": "°C"}
    status, answer = await api_call(
        http, server, "POST", "/v1/users/alice/endpoints/hook/call", payload
    )
    assert status == 200
    seen = target.seen[-1]
    assert seen.raw_path == "/ok/hall%2F1?unit=%C2%B0C"  # values are percent-encoded in URLs
    assert seen.headers["Authorization"] == SECRET_TOKEN
    assert seen.headers["X-Room"] == "room hall/1"
    assert seen.json() == {"val": 21.5, "where": "hall/1", "all": payload, "x": ""}
    assert answer == {"ok": True, "echo": seen.json()}

    # body_type json (the default) sends the payload itself; none sends nothing
    await create(http, server, http_endpoint(target, endpoint="plain"))
    status, answer = await api_call(
        http, server, "POST", "/v1/users/alice/endpoints/plain/call", {"a": [1, 2]}
    )
    assert (status, answer) == (200, {"ok": True, "echo": {"a": [1, 2]}})
    assert target.seen[-1].headers["Content-Type"] == "application/json"
    await create(http, server, http_endpoint(target, endpoint="bare", body_type="none"))
    status, answer = await api_call(
        http, server, "POST", "/v1/users/alice/endpoints/bare/call", {"a": 1}
    )
    assert (status, answer, target.seen[-1].body) == (200, {"ok": True, "echo": None}, b"")


async def test_call_results(
    server: TestServer, http: aiohttp.ClientSession, target: Target
) -> None:
    for name, path in [
        ("text", "/text"),
        ("fail", "/fail"),
        ("denied", "/denied"),
        ("empty", "/empty"),
        ("big", "/big"),
    ]:
        await create(http, server, http_endpoint(target, path=path, endpoint=name))
    await create(http, server, http_endpoint(target, endpoint="gone", url="http://127.0.0.1:9/x"))
    results = {}
    for name in ("text", "fail", "denied", "empty", "big", "gone"):
        results[name] = await api_call(
            http, server, "POST", f"/v1/users/alice/endpoints/{name}/call", {"n": 1}
        )
    assert results["text"] == (200, "pong")
    assert results["fail"] == (500, "broken")
    # a target's 401 is not passed on: the caller would take it for its own token
    assert results["denied"][0] == 502
    assert "401" in results["denied"][1]["error"]["message"]
    assert results["empty"] == (204, None)  # no body
    assert results["big"][0] == 502
    assert "larger than 1000 bytes" in results["big"][1]["error"]["message"]
    assert results["gone"][0] == 502
    assert "cannot connect to 127.0.0.1:9" in results["gone"][1]["error"]["message"]

    status, _ = await api_call(
        http, server, "PUT", "/v1/users/alice/endpoints/text", {"enabled": False}
    )
    assert status == 200
    status, body = await api_call(http, server, "POST", "/v1/users/alice/endpoints/text/call")
    assert (status, body["error"]["message"]) == (409, "endpoint is disabled")


async def test_slow_endpoint_times_out_without_stalling_others(
    server: TestServer, http: aiohttp.ClientSession, target: Target
) -> None:
    await create(http, server, http_endpoint(target, path="/slow", endpoint="slow", timeout=30))
    await create(http, server, http_endpoint(target, endpoint="fast"))
    started = time.monotonic()
    slow = asyncio.ensure_future(
        api_call(http, server, "POST", "/v1/users/alice/endpoints/slow/call", {})
    )
    await target.next_request()  # the slow call is in flight
    before = time.monotonic()
    status, answer = await api_call(http, server, "POST", "/v1/users/alice/endpoints/fast/call", {})
    assert (status, answer["ok"]) == (200, True)
    status, _ = await api_call(http, server, "GET", "/v1/users/alice/endpoints")
    assert status == 200
    assert time.monotonic() - before < 0.5  # neither waited for the slow call
    status, body = await slow
    elapsed = time.monotonic() - started
    # the endpoint asked for 30 s; limits.endpoint_timeout (1 s) wins
    assert status == 504
    assert body["error"]["message"] == "endpoint did not answer within 1 s"
    assert 0.9 < elapsed < 3


async def test_calls_in_flight_are_capped_per_user(
    server: TestServer, http: aiohttp.ClientSession, target: Target
) -> None:
    await create(http, server, http_endpoint(target, path="/slow", endpoint="slow"))
    path = "/v1/users/alice/endpoints/slow/call"
    first = [asyncio.ensure_future(api_call(http, server, "POST", path, {})) for _ in range(2)]
    await target.next_request()
    await target.next_request()
    status, body = await api_call(http, server, "POST", path, {})
    assert status == 429
    assert "at most 2 endpoint calls" in body["error"]["message"]
    target.release.set()
    assert [(await f)[0] for f in first] == [200, 200]
    status, _ = await api_call(http, server, "POST", path, {})
    assert status == 200  # the slots are free again


# ------------------------------------------------------------------------- secrets


async def test_secrets_are_redacted_kept_and_never_logged(
    server: TestServer,
    http: aiohttp.ClientSession,
    target: Target,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = target.url.rsplit(":", 1)[1]
    url = f"http://user:{SECRET_PASSWORD}@127.0.0.1:{port}/ok?api_key={SECRET_KEY}&q=1"
    body = http_endpoint(
        target,
        url=url,
        headers=[
            {"key": "X-Api-Key", "value": SECRET_TOKEN},
            {"key": "Content-Type", "value": "application/json"},
        ],
    )
    created = await create(http, server, body)
    shown = created["config"]
    assert shown["url"] == f"http://user:********@127.0.0.1:{port}/ok?api_key=********&q=1"
    assert shown["headers"] == [
        {"key": "X-Api-Key", "value": "********"},
        {"key": "Content-Type", "value": "application/json"},
    ]
    status, got = await api_call(http, server, "GET", "/v1/users/alice/endpoints/hook")
    assert (status, got["config"]) == (200, shown)

    # sending the redacted config back (e.g. to rename) keeps the stored secrets
    status, _ = await api_call(
        http,
        server,
        "PUT",
        "/v1/users/alice/endpoints/hook",
        {"name": "x", "config": {**shown, "method": "PUT"}},
    )
    assert status == 200
    status, _ = await api_call(
        http, server, "POST", "/v1/users/alice/endpoints/hook/call", {"a": 1}
    )
    assert status == 200
    seen = target.seen[-1]
    assert seen.method == "PUT"
    assert seen.headers["X-Api-Key"] == SECRET_TOKEN
    assert seen.raw_path == f"/ok?api_key={SECRET_KEY}&q=1"
    basic = base64.b64encode(f"user:{SECRET_PASSWORD}".encode()).decode()
    assert seen.headers["Authorization"] == f"Basic {basic}"  # the URL's user:password
    # URL credentials and an Authorization header would both set the same header
    status, _ = await api_call(
        http,
        server,
        "POST",
        "/v1/users/alice/endpoints",
        http_endpoint(target, endpoint="both", url=url, headers={"Authorization": "x"}),
    )
    assert status == 400
    # a redacted value with nothing stored behind it is refused
    status, answer = await api_call(
        http,
        server,
        "PUT",
        "/v1/users/alice/endpoints/hook",
        {"config": {**shown, "headers": [{"key": "X-Other", "value": "********"}]}},
    )
    assert status == 400
    assert "X-Other has no stored value" in answer["error"]["message"]
    # a failing call (the password is in the URL) logs nothing secret either
    await create(
        http,
        server,
        http_endpoint(
            target,
            endpoint="down",
            url=f"http://user:{SECRET_PASSWORD}@127.0.0.1:9/?token={SECRET_KEY}",
            headers=[{"key": "X-Api-Key", "value": SECRET_KEY}],
        ),
    )
    status, _ = await api_call(http, server, "POST", "/v1/users/alice/endpoints/down/call", {})
    assert status == 502
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert "endpoint alice/down" in logged  # the failure was logged ...
    for secret in (SECRET_TOKEN, SECRET_PASSWORD, SECRET_KEY, "sk-live"):
        assert secret not in logged  # ... without the secrets


# ------------------------------------------------------------------------- devices


REF_API = (
    "1a c7 8a 6272696768746e657373 c1 82 666e 02 84 63616c63 c1 82 666e 04"
    " 83 6c6564 c1 82 666e 02 86 7265626f6f74 c1 82 666e 01 83 726762 c1 82 666e 02"
    " 8b 74656d7065726174757265 c1 82 666e 03 86 757074696d65 c1 82 666e 03"
)
REF_CONNECT = "03 1b 1a e3 85 616c696365 87 72656664657631 86 733363726574 08 e7 8a 01"
HOOK = "84 686f6f6b"  # "hook"
PAYLOAD = "1a c1 81 74 15"  # {"t": 21}


async def _reference_device(server: TestServer) -> RawPeer:
    peer = await RawPeer.open(server.tcp_port)
    await peer.send_hex(REF_CONNECT)
    assert (await peer.receive()).type == MessageType.OK
    describe = await peer.receive()
    assert describe.type == MessageType.DESCRIBE
    await peer.send_hex(frame_hex(0x01, REF_API + " 08 " + varint_hex(describe.stream_id)))
    await server.wait_device_connected("refdev1")
    return peer


_STASH: dict[tuple[int, int], Message] = {}


async def _reply(peer: RawPeer, stream_id: int) -> Message:
    """Next OK/ERROR on ``stream_id`` (replies to concurrent calls come in any order)."""
    while (id(peer), stream_id) not in _STASH:
        message = await peer.receive()
        if message.type in (MessageType.OK, MessageType.ERROR):
            _STASH[(id(peer), message.stream_id)] = message
    return _STASH.pop((id(peer), stream_id))


@pytest.mark.parametrize(
    ("layout", "body"),
    [
        ("linux", f"08 b4 24 12 {HOOK} {PAYLOAD} 20 04"),
        ("embedded", f"08 b4 24 10 04 {PAYLOAD} 22 {HOOK}"),
    ],
)
async def test_device_call_endpoint(
    server: TestServer,
    http: aiohttp.ClientSession,
    target: Target,
    layout: str,
    body: str,
) -> None:
    await create(http, server, http_endpoint(target))
    await create(http, server, http_endpoint(target, path="/fail", endpoint="fail"))
    await create(http, server, http_endpoint(target, path="/text", endpoint="text"))
    await create(http, server, http_endpoint(target, path="/slow", endpoint="slow"))
    events_url = server.ws_url + "/v2/users/alice/events"
    headers = {"Authorization": f"Bearer {server.token}"}
    peer = await _reference_device(server)
    async with http.ws_connect(events_url, headers=headers) as events:
        await events.send_json({"event": "endpoint_call_response"})
        assert "registered" in await events.receive_json(timeout=5)
        try:
            # with STREAM_ID: OK with the decoded JSON answer
            await peer.send_hex(frame_hex(0x06, body))
            reply = await _reply(peer, 0x1234)
            assert reply.type == MessageType.OK
            assert reply.payload == {"ok": True, "echo": {"t": 21}}
            assert target.seen[-1].json() == {"t": 21}
            event = await events.receive_json(timeout=5)
            assert event["event"] == "endpoint_call_response"
            assert (event["endpoint"], event["status"]) == ("hook", 200)
            assert event["payload"] == {"ok": True, "echo": {"t": 21}}

            # a text answer comes back as text, a 500 as ERROR with the status
            def wire(sid: str, name: str) -> str:
                name_hex = f"{len(name) | 0x80:02x} {name.encode().hex()}"
                return frame_hex(0x06, body.replace("b4 24", sid).replace(HOOK, name_hex))

            await peer.send_hex(wire("b5 24", "text"))  # stream id 0x1235
            await peer.send_hex(wire("b6 24", "fail"))
            text = await _reply(peer, 0x1235)
            assert (text.type, text.payload) == (MessageType.OK, "pong")
            fail = await _reply(peer, 0x1236)
            assert fail.type == MessageType.ERROR
            assert fail.payload == {"error": "endpoint answered 500", "status": 500}

            # timeout and unknown endpoint: ERROR that says so
            await peer.send_hex(wire("b7 24", "slow"))
            slow = await _reply(peer, 0x1237)
            assert slow.type == MessageType.ERROR
            assert slow.payload == {"error": "endpoint did not answer within 1 s", "status": 0}
            await peer.send_hex(wire("b8 24", "none"))
            missing = await _reply(peer, 0x1238)
            assert (missing.type, missing.payload) == (
                MessageType.ERROR,
                {"error": "endpoint not found"},
            )

            # without STREAM_ID: the call is made, no reply is sent
            while not target.arrivals.empty():
                target.arrivals.get_nowait()
            await peer.send_hex(frame_hex(0x06, body.replace("08 b4 24 ", "")))
            seen = await target.next_request()
            assert (seen.path, seen.json()) == ("/ok", {"t": 21})
            with pytest.raises(TimeoutError):
                extra = await peer.receive(limit=0.3)
                raise AssertionError(f"unexpected reply {extra}")
        finally:
            _STASH.clear()
            await peer.close()
