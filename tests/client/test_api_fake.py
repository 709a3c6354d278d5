"""REST client against small aiohttp servers for shapes the local server cannot produce.

The local server (iotmp.server) never answers 403 to this client, 5xx of a
cloud proxy, 3xx, non-JSON bodies, legacy ``"/"``-nested descriptions, 501
samples, or ignores paging; these tests serve the recorded shapes from
shared/docs/thinger-api.md instead.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from iotmp.client import (
    ABSENT,
    IotmpApiClient,
    IotmpApiError,
    IotmpAuthError,
    IotmpConnectionError,
    IotmpDeviceTimeoutError,
    IotmpForbiddenError,
    IotmpNotFoundError,
    IotmpRequestError,
)
from iotmp.client import api as api_module

from .conftest import fake_server, make_jwt

TOKEN = make_jwt({"usr": "alice", "jti": "t1", "svr": "127.0.0.1"})
DEVICES = "/v1/users/alice/devices"


def answer(status: int, body: Any = None, *, text: str | None = None) -> web.Response:
    if text is not None:
        return web.Response(status=status, text=text)
    if body is None:
        return web.Response(status=status)
    return web.json_response(body, status=status)


def fixed(status: int, body: Any = None, *, text: str | None = None) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return answer(status, body, text=text)

    return handler


ERR = {"error": {"message": "something specific"}}


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, IotmpRequestError),
        (401, IotmpAuthError),
        (403, IotmpForbiddenError),
        (404, IotmpNotFoundError),
        (405, IotmpRequestError),
        (409, IotmpRequestError),
        (413, IotmpRequestError),
        (429, IotmpRequestError),
        (500, IotmpConnectionError),
        (501, IotmpConnectionError),
        (502, IotmpConnectionError),
        (503, IotmpConnectionError),
        (504, IotmpDeviceTimeoutError),
        (302, IotmpApiError),
    ],
)
async def test_status_mapping(
    session: aiohttp.ClientSession, status: int, error_type: type[IotmpApiError]
) -> None:
    async with fake_server([web.get(DEVICES, fixed(status, ERR))]) as url:
        client = IotmpApiClient(session, url, TOKEN)
        with pytest.raises(IotmpApiError) as err:
            await client.list_devices()
    assert type(err.value) is error_type
    assert err.value.status == status
    assert err.value.server_message == "something specific"
    assert "something specific" in str(err.value)
    assert f"HTTP {status}" in str(err.value)
    assert TOKEN not in str(err.value)
    if status == 404:
        assert isinstance(err.value, IotmpNotFoundError)
        assert err.value.device_offline is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"body": {"message": "License is not enabled"}}, "License is not enabled"),
        ({"body": {"error": "access_denied"}}, "access_denied"),
        ({"body": {"error": {"message": ""}}}, None),
        ({"body": {"error": {"context": []}}}, None),
        ({"body": ["x"]}, None),
        ({"text": "<html>Bad gateway</html>"}, None),
        ({}, None),
    ],
)
async def test_error_bodies(
    session: aiohttp.ClientSession, kwargs: dict[str, Any], message: str | None
) -> None:
    async with fake_server([web.get(DEVICES, fixed(502, **kwargs))]) as url:
        with pytest.raises(IotmpConnectionError) as err:
            await IotmpApiClient(session, url, TOKEN).list_devices()
    assert err.value.server_message == message
    assert "<html>" not in str(err.value)


@pytest.mark.parametrize(
    ("message", "offline"),
    [
        ("device not connected", True),
        ("Device is offline", True),
        ("device not found", False),
        ("resource not found", False),
        ("Unknown resource", False),
        ("nothing useful", None),
    ],
)
async def test_not_found_hints(
    session: aiohttp.ClientSession, message: str, offline: bool | None
) -> None:
    body = {"error": {"message": message}}
    async with fake_server([web.get(DEVICES + "/lamp", fixed(404, body))]) as url:
        with pytest.raises(IotmpNotFoundError) as err:
            await IotmpApiClient(session, url, TOKEN).get_device("lamp")
    assert err.value.device_offline is offline


async def test_token_never_in_messages(session: aiohttp.ClientSession) -> None:
    body = {"error": {"message": f"token {TOKEN} is revoked"}}
    async with fake_server([web.get(DEVICES, fixed(401, body))]) as url:
        with pytest.raises(IotmpAuthError) as err:
            await IotmpApiClient(session, url, TOKEN).list_devices()
    assert TOKEN not in str(err.value)
    assert "***" in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": "OK"},
        {"text": "{not json"},
        {"text": "\xff\xfe"},
    ],
)
async def test_non_json_success_body(
    session: aiohttp.ClientSession, kwargs: dict[str, Any]
) -> None:
    async with fake_server([web.get(DEVICES, fixed(200, **kwargs))]) as url:
        with pytest.raises(IotmpApiError, match="not JSON") as err:
            await IotmpApiClient(session, url, TOKEN).list_devices()
    assert type(err.value) is IotmpApiError
    assert err.value.status == 200


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"devices": []}, "expected a list"),
        (None, "expected a list"),
        ([{"name": "no id"}], "device record"),
        (["lamp"], "device record"),
    ],
)
async def test_unexpected_device_lists(
    session: aiohttp.ClientSession, body: Any, match: str
) -> None:
    async with fake_server([web.get(DEVICES, fixed(200, body))]) as url:
        with pytest.raises(IotmpApiError, match=match):
            await IotmpApiClient(session, url, TOKEN).list_devices()


def device(i: int) -> dict[str, Any]:
    return {"device": f"d{i}", "connection": {"active": i % 2 == 0, "ts": i}}


async def test_paging_parameters(session: aiohttp.ClientSession) -> None:
    seen: list[tuple[str, str]] = []
    all_devices = [device(i) for i in range(130)]

    async def handler(request: web.Request) -> web.Response:
        count, index = request.query["count"], request.query["index"]
        seen.append((count, index))
        return web.json_response(all_devices[int(index) : int(index) + int(count)])

    async with fake_server([web.get(DEVICES, handler)]) as url:
        records = await IotmpApiClient(session, url, TOKEN).list_devices()
    assert seen == [("50", "0"), ("50", "50"), ("50", "100")]
    assert [r.device_id for r in records] == [f"d{i}" for i in range(130)]
    assert records[2].connected is True
    assert records[3].connected is False


async def test_paging_server_ignores_paging(session: aiohttp.ClientSession) -> None:
    calls = 0
    everything = [device(i) for i in range(120)]

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response(everything)  # ignores count and index

    async with fake_server([web.get(DEVICES, handler)]) as url:
        records = await IotmpApiClient(session, url, TOKEN).list_devices()
    assert len(records) == 120
    assert calls == 2  # the second page repeats the first: stop


async def test_paging_ignores_index_only(session: aiohttp.ClientSession) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response([device(i) for i in range(50)])

    async with fake_server([web.get(DEVICES, handler)]) as url:
        records = await IotmpApiClient(session, url, TOKEN).list_devices()
    assert len(records) == 50
    assert calls == 2


async def test_paging_page_cap(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_module, "MAX_PAGES", 4)
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        start = calls * 1000  # always a new full page
        return web.json_response([device(start + i) for i in range(50)])

    async with fake_server([web.get(DEVICES, handler)]) as url:
        records = await IotmpApiClient(session, url, TOKEN).list_devices()
    assert calls == 4
    assert len(records) == 200


async def test_base_url_prefix_and_headers(session: aiohttp.ClientSession) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization")
        seen["path"] = request.path
        return web.json_response([])

    async with fake_server([web.get("/thinger" + DEVICES, handler)]) as url:
        client = IotmpApiClient(session, url + "/thinger//", TOKEN)
        assert client.base_url == url + "/thinger"
        assert await client.list_devices() == []
    assert seen == {"auth": f"Bearer {TOKEN}", "path": "/thinger" + DEVICES}


async def test_invalid_base_url(session: aiohttp.ClientSession) -> None:
    with pytest.raises(IotmpRequestError):
        IotmpApiClient(session, "api.thinger.io", TOKEN)
    with pytest.raises(IotmpRequestError):
        await IotmpApiClient.password_login(session, "ftp://x", "u", "p")


async def test_user_claims(session: aiohttp.ClientSession) -> None:
    client = IotmpApiClient(session, "https://api.thinger.io", make_jwt({"jti": "x"}))
    with pytest.raises(IotmpAuthError):
        _ = client.user
    client.set_token(TOKEN)
    assert client.user == "alice"
    client.set_token(TOKEN)
    assert client.token == TOKEN
    assert client.session is session
    assert client.verify_ssl is True
    assert client.request_timeout == 15.0
    assert "api.thinger.io" in repr(client)
    assert await client.refresh_token() is False


async def test_quoting_of_resource_paths(session: aiohttp.ClientSession) -> None:
    raw_paths: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        raw_paths.append(request.raw_path)
        return web.json_response({"resource": request.match_info["resource"]})

    base = "/v3/users/alice/devices/{device}/resources/{resource:.+}"
    async with fake_server([web.get(base, handler), web.post(base, handler)]) as url:
        client = IotmpApiClient(session, url, TOKEN)
        assert await client.read("lamp", "living room/lamp") == {"resource": "living room/lamp"}
        assert await client.read("lamp", "température") == {"resource": "température"}
        assert await client.read("lamp", "$ota/options") == {"resource": "$ota/options"}
        assert await client.read("lamp", "50%?#") == {"resource": "50%?#"}
        assert await client.write("a b", "x", 1) == {"resource": "x"}
    assert raw_paths == [
        "/v3/users/alice/devices/lamp/resources/living%20room/lamp",
        "/v3/users/alice/devices/lamp/resources/temp%C3%A9rature",
        "/v3/users/alice/devices/lamp/resources/%24ota/options",
        "/v3/users/alice/devices/lamp/resources/50%25%3F%23",
        "/v3/users/alice/devices/a%20b/resources/x",
    ]


async def test_write_bodies(session: aiohttp.ClientSession) -> None:
    seen: list[tuple[str | None, bytes]] = []
    replies = iter(
        [answer(200), answer(200, {"result": 42}), answer(200, text=" \n"), answer(200, None)]
    )

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Content-Type"), await request.read()))
        return next(replies)

    path = "/v3/users/alice/devices/lamp/resources/{resource:.+}"
    async with fake_server([web.post(path, handler)]) as url:
        client = IotmpApiClient(session, url, TOKEN)
        assert await client.write("lamp", "light", False) is None
        assert await client.write("lamp", "calc", {"a": 1, "b": [1.5, None, "é"]}) == {"result": 42}
        assert await client.write("lamp", "reboot") is None
        assert await client.write("lamp", "nothing", None) is None
    assert seen[0] == ("application/json", b"false")
    assert seen[1][0] == "application/json"
    assert json.loads(seen[1][1]) == {"a": 1, "b": [1.5, None, "é"]}
    assert seen[2] == (None, b"")
    assert seen[3] == ("application/json", b"null")


async def test_legacy_description_and_sample_failures(session: aiohttp.ClientSession) -> None:
    # A legacy (protoson) device's description: "al" plus "/" nesting (thinger-api.md 3.2).
    description = {
        "led": {"al": 0, "fn": 2},
        "sensors": {"al": 0, "fn": 0, "/": {"temp": {"al": 0, "fn": 3}, "hum": {"al": 0, "fn": 3}}},
        "$ota": {"al": 0, "fn": 0, "/": {"options": {"al": 0, "fn": 3}}},
        "noapi": {"al": 0, "fn": 3},
        "missing": {"al": 0, "fn": 3},
        "slow": {"al": 0, "fn": 3},
        "gateway": {"al": 0, "fn": 3},
        "notjson": {"al": 0, "fn": 3},
        "empty": {"al": 0, "fn": 1},
    }
    requested: list[str] = []
    release = asyncio.Event()

    async def resources(request: web.Request) -> web.Response:
        return web.json_response(description)

    async def sample(request: web.Request) -> web.Response:
        name = request.match_info["resource"]
        requested.append(name)
        if name == "slow":
            await release.wait()  # until the client gave up on it
        if name == "noapi":
            return answer(501, {"error": {"message": "not implemented"}})
        if name == "missing":
            return answer(404)
        if name == "gateway":
            return answer(500, {"error": {"message": "device script failed"}})
        if name == "notjson":
            return answer(200, text="nope")
        if name == "empty":
            return answer(200)
        if name == "led":
            return answer(200, {"in": True})
        return answer(200, {"out": 21.5 if name.endswith("temp") else 40})

    base = "/v3/users/alice/devices/lamp/resources"
    async with fake_server(
        [web.get(base, resources), web.get(base + "/{resource:.+}/api", sample)]
    ) as url:
        client = IotmpApiClient(session, url, TOKEN, request_timeout=1.0)
        result = await client.get_resources("lamp")
        release.set()
    assert sorted(result) == sorted(
        [
            "led",
            "sensors/temp",
            "sensors/hum",
            "noapi",
            "missing",
            "slow",
            "gateway",
            "notjson",
            "empty",
        ]
    )
    assert sorted(requested) == sorted(result)
    assert result["led"].sample_in is True
    assert result["led"].raw == {"al": 0, "fn": 2}
    assert result["sensors/temp"].sample_out == 21.5
    assert result["sensors/hum"].sample_out == 40
    for name in ("noapi", "missing", "slow", "gateway", "notjson", "empty"):
        assert result[name].sample_in is ABSENT
        assert result[name].sample_out is ABSENT


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, IotmpAuthError), (403, IotmpForbiddenError), (503, IotmpConnectionError)],
)
async def test_sample_failures_that_propagate(
    session: aiohttp.ClientSession, status: int, error_type: type[IotmpApiError]
) -> None:
    description = {f"r{i}": {"fn": 3} for i in range(20)}
    description["bad"] = {"fn": 3}

    async def resources(request: web.Request) -> web.Response:
        return web.json_response(description)

    async def sample(request: web.Request) -> web.Response:
        if request.match_info["resource"] == "bad":
            return answer(status, ERR)
        await asyncio.sleep(0.01)
        return answer(200, {"out": 1})

    base = "/v3/users/alice/devices/lamp/resources"
    async with fake_server(
        [web.get(base, resources), web.get(base + "/{resource:.+}/api", sample)]
    ) as url:
        with pytest.raises(error_type):
            await IotmpApiClient(session, url, TOKEN).get_resources("lamp")


async def test_sample_shapes(session: aiohttp.ClientSession) -> None:
    replies = iter([answer(200, [1, 2]), answer(200), answer(200, {"in": 1, "out": 2})])

    async def sample(request: web.Request) -> web.Response:
        return next(replies)

    path = "/v3/users/alice/devices/lamp/resources/{resource:.+}/api"
    async with fake_server([web.get(path, sample)]) as url:
        client = IotmpApiClient(session, url, TOKEN)
        with pytest.raises(IotmpApiError, match="expected an object"):
            await client.get_resource_sample("lamp", "x")
        assert await client.get_resource_sample("lamp", "x") == {}
        assert await client.get_resource_sample("lamp", "x") == {"in": 1, "out": 2}


async def test_description_not_an_object(session: aiohttp.ClientSession) -> None:
    path = "/v3/users/alice/devices/lamp/resources"
    async with fake_server([web.get(path, fixed(200, ["led"]))]) as url:
        with pytest.raises(IotmpApiError, match="unexpected resource description"):
            await IotmpApiClient(session, url, TOKEN).get_resources("lamp")


async def test_client_timeout(session: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response([])

    async with fake_server([web.get(DEVICES, slow)]) as url:
        client = IotmpApiClient(session, url, TOKEN, request_timeout=0.2)
        with pytest.raises(IotmpConnectionError, match="timed out") as err:
            await client.list_devices()
        release.set()
    assert isinstance(err.value.__cause__, TimeoutError)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (answer(200, {"version": "5.0.1", "build_date": "x"}), "5.0.1"),
        (answer(200, {"version": 5}), None),
        (answer(200, "5.0"), None),
        (answer(404), None),
    ],
)
async def test_server_version_shapes(
    session: aiohttp.ClientSession, response: web.Response, expected: str | None
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return response

    async with fake_server([web.get("/v1/server/version", handler)]) as url:
        assert await IotmpApiClient(session, url, TOKEN).server_version() == expected


async def test_login_shapes(session: aiohttp.ClientSession) -> None:
    access = make_jwt({"usr": "alice", "exp": 2_000_000_000})
    replies = iter(
        [
            answer(200, {"access_token": access, "expires_in": 7200, "refresh_token": "r1"}),
            answer(200, {"access_token": access, "token_type": "bearer", "refresh_token": None}),
            answer(200, {"token_type": "bearer"}),
            answer(200, ["x"]),
            answer(200, text="<html>"),
            answer(400, {"error": "unsupported_grant_type"}),
        ]
    )
    forms: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        forms.append({k: str(v) for k, v in (await request.post()).items()})
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert "Authorization" not in request.headers
        return next(replies)

    async with fake_server([web.post("/oauth/token", handler)]) as url:
        first = await IotmpApiClient.password_login(session, url, "alice", "pw")
        assert first.refresh_token == "r1"
        assert first.expires_at is not None
        second = await IotmpApiClient.refresh_login(session, url, "r1")
        assert second.refresh_token is None
        assert second.expires_at == 2_000_000_000.0
        with pytest.raises(IotmpApiError, match="no access_token"):
            await IotmpApiClient.password_login(session, url, "alice", "pw")
        with pytest.raises(IotmpApiError, match="array"):
            await IotmpApiClient.password_login(session, url, "alice", "pw")
        with pytest.raises(IotmpApiError, match="not JSON"):
            await IotmpApiClient.password_login(session, url, "alice", "pw")
        with pytest.raises(IotmpRequestError, match="unsupported_grant_type"):
            await IotmpApiClient.refresh_login(session, url, "r1")
    assert forms[0] == {"grant_type": "password", "username": "alice", "password": "pw"}
    assert forms[1] == {"grant_type": "refresh_token", "refresh_token": "r1"}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from iotmp.server.certs import make_self_signed

    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    make_self_signed(cert, key, hosts=("127.0.0.1",))
    return cert, key


async def test_verify_ssl_switch(
    session: aiohttp.ClientSession, tls_files: tuple[Path, Path]
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    async with fake_server([web.get(DEVICES, fixed(200, [device(1)]))], ssl_context=context) as url:
        assert url.startswith("https://")
        with pytest.raises(IotmpConnectionError):
            await IotmpApiClient(session, url, TOKEN).list_devices()
        records = await IotmpApiClient(session, url, TOKEN, verify_ssl=False).list_devices()
    assert [r.device_id for r in records] == ["d1"]
