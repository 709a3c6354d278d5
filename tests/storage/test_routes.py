"""Device CRUD, device tokens and access tokens over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from server_helpers import api_call

from iotmp.device import Device
from iotmp.protocol.errors import AuthenticationError
from iotmp.server.testing import TestDevice, TestServer, run_test_server


@pytest.fixture
async def server(database: str) -> AsyncIterator[TestServer]:
    devices = [TestDevice("lamp", credential="lamp-pw"), TestDevice("bobdev", user="bob")]
    async with run_test_server(devices=devices, user="alice", database=database) as running:
        yield running


def assert_error(status: int, body: Any, expected: int) -> None:
    assert status == expected
    assert isinstance(body["error"]["message"], str)


async def test_device_crud(server: TestServer, http: aiohttp.ClientSession) -> None:
    new = {
        "device": "sensor1",
        "credentials": "s3cret-pw",
        "name": "Sensor",
        "description": "in the hall",
        "type": "MQTT",
        "asset_group": "hall",
    }
    status, created = await api_call(http, server, "POST", "/v1/users/alice/devices", new)
    assert status == 200
    assert created["device"] == "sensor1"
    assert created["type"] == "MQTT"
    assert created["asset_group"] == "hall"
    assert created["connection"]["active"] is False
    assert "credentials" not in created
    status, body = await api_call(http, server, "POST", "/v1/users/alice/devices", new)
    assert_error(status, body, 409)
    status, listed = await api_call(http, server, "GET", "/v1/users/alice/devices")
    assert status == 200
    assert sorted(d["device"] for d in listed) == ["lamp", "sensor1"]

    status, body = await api_call(
        http, server, "PUT", "/v1/users/alice/devices/sensor1", {"name": "Hall sensor"}
    )
    assert status == 200
    assert body["name"] == "Hall sensor"
    assert body["description"] == "in the hall"  # untouched
    assert body["created"] == created["created"]
    status, body = await api_call(http, server, "GET", "/v1/users/alice/devices/sensor1")
    assert (status, body["name"]) == (200, "Hall sensor")

    # the stored credential logs the device in; a wrong one does not
    session = await Device("alice", "sensor1", "s3cret-pw").connect("127.0.0.1", server.tcp_port)
    await server.wait_device_connected("sensor1")
    with pytest.raises(AuthenticationError):
        await Device("alice", "sensor1", "wrong-pw").connect("127.0.0.1", server.tcp_port)
    # deleting disconnects it, and it cannot log in again
    status, _ = await api_call(http, server, "DELETE", "/v1/users/alice/devices/sensor1")
    assert status == 200
    async with asyncio.timeout(5):
        await session.wait_closed()
    assert "sensor1" not in server.devices_online()
    with pytest.raises(AuthenticationError):
        await Device("alice", "sensor1", "s3cret-pw").connect("127.0.0.1", server.tcp_port)
    status, body = await api_call(http, server, "GET", "/v1/users/alice/devices/sensor1")
    assert_error(status, body, 404)
    status, body = await api_call(http, server, "DELETE", "/v1/users/alice/devices/sensor1")
    assert_error(status, body, 404)


async def test_device_changes_of_credential(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    status, _ = await api_call(
        http, server, "PUT", "/v1/users/alice/devices/lamp", {"credentials": "changed-pw"}
    )
    assert status == 200
    with pytest.raises(AuthenticationError):
        await Device("alice", "lamp", "lamp-pw").connect("127.0.0.1", server.tcp_port)
    session = await Device("alice", "lamp", "changed-pw").connect("127.0.0.1", server.tcp_port)
    await session.close("done")


BAD_DEVICE_BODIES: list[tuple[Any, str]] = [
    ({"credentials": "long-enough"}, "no id"),
    ({"device": "bad id!", "credentials": "long-enough"}, "bad id"),
    ({"device": "d1"}, "no credentials"),
    ({"device": "d1", "credentials": "short"}, "credentials too short"),
    ({"device": "d1", "credentials": "long-enough", "type": "Zigbee"}, "bad type"),
    ({"device": "d1", "credentials": "long-enough", "colour": "red"}, "unknown key"),
    ({"device": "d1", "credentials": "long-enough", "enabled": "yes"}, "bad enabled"),
    (["d1"], "not an object"),
]


async def test_device_create_refuses_bad_bodies(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    for body, why in BAD_DEVICE_BODIES:
        status, answer = await api_call(http, server, "POST", "/v1/users/alice/devices", body)
        assert status == 400, why
        assert_error(status, answer, 400)
        assert server.server.registry.get("d1") is None, why
    async with http.post(
        server.http_url + "/v1/users/alice/devices",
        data=b"{not json",
        headers={"Authorization": f"Bearer {server.token}"},
    ) as resp:
        assert resp.status == 400


async def test_http_device_needs_no_credentials(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    body = {"device": "hook", "type": "HTTP", "description": "callback"}
    status, created = await api_call(http, server, "POST", "/v1/users/alice/devices", body)
    assert (status, created["type"]) == (200, "HTTP")


async def test_other_users_devices_are_invisible(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    for method, body in (("GET", None), ("PUT", {"name": "x"}), ("DELETE", None)):
        status, answer = await api_call(
            http, server, method, "/v1/users/alice/devices/bobdev", body
        )
        assert_error(status, answer, 404)
    status, answer = await api_call(http, server, "DELETE", "/v1/users/bob/devices/bobdev")
    assert_error(status, answer, 403)
    assert server.server.registry.get("bobdev") is not None


async def test_access_tokens(server: TestServer, http: aiohttp.ClientSession) -> None:
    body = {
        "token": "ThinRemote",
        "name": "Remote CLI",
        "enabled": True,
        "allow": {"Device": {"*": ["AccessDeviceResources", "ReadDeviceStatus"]}},
        "deny": {},
    }
    status, created = await api_call(http, server, "POST", "/v1/users/alice/tokens", body)
    assert status == 200
    assert created["token"] == "ThinRemote"
    assert created["name"] == "Remote CLI"
    assert created["allow"] == body["allow"]
    jwt_token = created["access_token"]
    status, again = await api_call(http, server, "POST", "/v1/users/alice/tokens", body)
    assert_error(status, again, 409)

    status, listed = await api_call(http, server, "GET", "/v1/users/alice/tokens")
    assert status == 200
    assert "ThinRemote" in [t["token"] for t in listed]
    status, one = await api_call(http, server, "GET", "/v1/users/alice/tokens/ThinRemote")
    assert (status, one["access_token"]) == (200, jwt_token)
    status, answer = await api_call(http, server, "GET", "/v1/users/alice/tokens/nope")
    assert_error(status, answer, 404)

    # the token works within its permissions only
    status, _ = await api_call(http, server, "GET", "/v1/users/alice/devices/lamp", token=jwt_token)
    assert status == 200
    status, answer = await api_call(
        http, server, "DELETE", "/v1/users/alice/devices/lamp", token=jwt_token
    )
    assert_error(status, answer, 403)
    status, answer = await api_call(http, server, "GET", "/v1/users/alice/tokens", token=jwt_token)
    assert_error(status, answer, 403)

    # PUT: disable, then enable with a new name
    status, updated = await api_call(
        http, server, "PUT", "/v1/users/alice/tokens/ThinRemote", {"enabled": False}
    )
    assert (status, updated["enabled"], updated["name"]) == (200, False, "Remote CLI")
    status, answer = await api_call(
        http, server, "GET", "/v1/users/alice/devices/lamp", token=jwt_token
    )
    assert_error(status, answer, 401)
    status, updated = await api_call(
        http, server, "PUT", "/v1/users/alice/tokens/ThinRemote", {"enabled": True, "name": "R"}
    )
    assert (status, updated["name"]) == (200, "R")
    status, _ = await api_call(http, server, "GET", "/v1/users/alice/devices/lamp", token=jwt_token)
    assert status == 200

    # DELETE: unknown ids are 404, a known one stops working at once
    status, answer = await api_call(http, server, "DELETE", "/v1/users/alice/tokens/nope")
    assert_error(status, answer, 404)
    status, _ = await api_call(http, server, "DELETE", "/v1/users/alice/tokens/ThinRemote")
    assert status == 200
    status, answer = await api_call(
        http, server, "GET", "/v1/users/alice/devices/lamp", token=jwt_token
    )
    assert_error(status, answer, 401)
    status, answer = await api_call(http, server, "DELETE", "/v1/users/alice/tokens/ThinRemote")
    assert_error(status, answer, 404)

    # the same id can be created again: a new token, the old one stays dead
    status, recreated = await api_call(http, server, "POST", "/v1/users/alice/tokens", body)
    assert status == 200
    assert recreated["access_token"] != jwt_token
    status, _ = await api_call(
        http, server, "GET", "/v1/users/alice/devices/lamp", token=recreated["access_token"]
    )
    assert status == 200
    status, answer = await api_call(
        http, server, "GET", "/v1/users/alice/devices/lamp", token=jwt_token
    )
    assert_error(status, answer, 401)


async def test_token_of_one_device_cannot_reach_another(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    server.add_device(TestDevice("other", credential="other-pw"))
    body = {
        "token": "lamp_only",
        "name": "lamp",
        "enabled": True,
        "allow": {"Device": {"lamp": "*"}},
    }
    status, created = await api_call(http, server, "POST", "/v1/users/alice/tokens", body)
    assert status == 200
    token = created["access_token"]
    status, _ = await api_call(http, server, "GET", "/v1/users/alice/devices/lamp", token=token)
    assert status == 200
    for path in (
        "/v1/users/alice/devices/other",
        "/v3/users/alice/devices/other/resources",
        "/v3/users/alice/devices/other/resources/temp",
        "/v2/users/alice/devices/other/api",
    ):
        status, answer = await api_call(http, server, "GET", path, token=token)
        assert_error(status, answer, 403)
    # a deny entry wins over the allow
    body = {
        "token": "no_delete",
        "name": "x",
        "enabled": True,
        "allow": {"*": {"*": "*"}},
        "deny": {"Device": {"lamp": ["DeleteDevice"]}},
    }
    status, created = await api_call(http, server, "POST", "/v1/users/alice/tokens", body)
    status, answer = await api_call(
        http, server, "DELETE", "/v1/users/alice/devices/lamp", token=created["access_token"]
    )
    assert_error(status, answer, 403)
    assert server.server.registry.get("lamp") is not None


async def test_token_expiry_and_bad_bodies(server: TestServer, http: aiohttp.ClientSession) -> None:
    body = {"token": "past", "name": "p", "enabled": True, "expire": 1_000_000_000_000}
    status, created = await api_call(http, server, "POST", "/v1/users/alice/tokens", body)
    assert status == 200
    status, answer = await api_call(
        http, server, "GET", "/v1/users/alice/devices", token=created["access_token"]
    )
    assert_error(status, answer, 401)
    for bad in (
        {"token": "has space", "name": "x", "enabled": True},
        {"token": "t", "name": "x", "enabled": True, "allow": ["Device"]},
        {"token": "t", "name": "x", "enabled": True, "expire": "soon"},
        {"token": "t", "name": 5, "enabled": True},
        {"token": "t", "name": "x", "enabled": True, "extra": 1},
    ):
        status, answer = await api_call(http, server, "POST", "/v1/users/alice/tokens", bad)
        assert_error(status, answer, 400)


async def test_a_user_revokes_only_own_tokens(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    bob_token = server.issue_token(user="bob")
    body = {"token": "shared_name", "name": "bob's", "enabled": True}
    status, bobs = await api_call(
        http, server, "POST", "/v1/users/bob/tokens", body, token=bob_token
    )
    assert status == 200
    # alice, with her own token, aims at bob's token id under her own user: 404
    status, answer = await api_call(http, server, "DELETE", "/v1/users/alice/tokens/shared_name")
    assert_error(status, answer, 404)
    # ... and under bob's user: 403
    status, answer = await api_call(http, server, "DELETE", "/v1/users/bob/tokens/shared_name")
    assert_error(status, answer, 403)
    status, _ = await api_call(
        http, server, "GET", "/v1/users/bob/devices", token=bobs["access_token"]
    )
    assert status == 200
    # alice may have a token of the same id; deleting it leaves bob's alone
    status, _ = await api_call(http, server, "POST", "/v1/users/alice/tokens", body)
    assert status == 200
    status, _ = await api_call(http, server, "DELETE", "/v1/users/alice/tokens/shared_name")
    assert status == 200
    status, _ = await api_call(
        http, server, "GET", "/v1/users/bob/devices", token=bobs["access_token"]
    )
    assert status == 200


async def test_device_tokens(server: TestServer, http: aiohttp.ClientSession) -> None:
    server.add_device(TestDevice("other", credential="other-pw"))
    base = "/v1/users/alice/devices/lamp/tokens"
    body = {"token_name": "callback", "token_resources": ["temp"]}
    status, created = await api_call(http, server, "POST", base, body)
    assert status == 200
    assert created["device"] == "lamp"
    assert created["token_name"] == "callback"
    token = created["access_token"]
    status, listed = await api_call(http, server, "GET", base)
    assert (status, [t["token"] for t in listed]) == (200, [created["token"]])
    status, listed = await api_call(http, server, "GET", "/v1/users/alice/devices/other/tokens")
    assert (status, listed) == (200, [])
    # the device token reaches its device only, and is not a user access token
    status, _ = await api_call(http, server, "GET", "/v1/users/alice/devices/lamp", token=token)
    assert status == 200
    for path in (
        "/v1/users/alice/devices/other",
        "/v1/users/alice/devices",
        "/v1/users/alice/tokens",
    ):
        status, answer = await api_call(http, server, "GET", path, token=token)
        assert_error(status, answer, 403)
    status, answer = await api_call(
        http, server, "GET", "/v1/users/alice/tokens/" + created["token"]
    )
    assert_error(status, answer, 404)  # not among the access tokens
    status, answer = await api_call(http, server, "DELETE", base + "/unknown")
    assert_error(status, answer, 404)
    status, _ = await api_call(http, server, "DELETE", base + "/" + created["token"])
    assert status == 200
    status, answer = await api_call(
        http, server, "GET", "/v1/users/alice/devices/lamp", token=token
    )
    assert_error(status, answer, 401)
