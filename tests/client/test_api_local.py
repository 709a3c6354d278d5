"""REST client against the real local server (iotmp.server) and a real IOTMP device."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from iotmp.client import (
    ABSENT,
    IotmpApiClient,
    IotmpAuthError,
    IotmpConnectionError,
    IotmpDeviceTimeoutError,
    IotmpNotFoundError,
    IotmpRequestError,
    ResourceInfo,
)
from iotmp.server.testing import TestDevice, TestServer, run_test_server

from .conftest import DEVICE_ID, Lab


def client_for(session: aiohttp.ClientSession, server: TestServer, **kwargs: Any) -> IotmpApiClient:
    return IotmpApiClient(session, server.http_url, server.token, **kwargs)


async def test_password_login_refresh_and_reuse(
    session: aiohttp.ClientSession, server: TestServer
) -> None:
    tokens = await IotmpApiClient.password_login(
        session, server.http_url + "/", server.user, server.password
    )
    assert tokens.access_token
    assert tokens.refresh_token
    assert tokens.expires_at is not None
    client = IotmpApiClient(session, server.http_url, tokens.access_token)
    assert client.user == "alice"
    assert [d.device_id for d in await client.list_devices()] == [DEVICE_ID]

    assert tokens.refresh_token is not None
    refreshed = await IotmpApiClient.refresh_login(session, server.http_url, tokens.refresh_token)
    assert refreshed.access_token
    assert refreshed.refresh_token not in (None, tokens.refresh_token)
    assert IotmpApiClient.token_user(refreshed.access_token) == "alice"

    # A refresh token works once (a used one is rejected, and never echoed).
    with pytest.raises(IotmpAuthError) as err:
        await IotmpApiClient.refresh_login(session, server.http_url, tokens.refresh_token)
    assert err.value.status == 401
    assert tokens.refresh_token not in str(err.value)


async def test_password_login_wrong_password(
    session: aiohttp.ClientSession, server: TestServer
) -> None:
    with pytest.raises(IotmpAuthError) as err:
        await IotmpApiClient.password_login(session, server.http_url, server.user, "wrong-pw-123")
    assert err.value.server_message
    assert err.value.server_message in str(err.value)
    assert "wrong-pw-123" not in str(err.value)


async def test_list_devices_pages(session: aiohttp.ClientSession, socket_enabled: None) -> None:
    devices = [TestDevice(f"dev{i:03d}", name=f"Device {i}") for i in range(123)]
    async with run_test_server(devices=devices) as server:
        client = client_for(session, server)
        records = await client.list_devices()
    assert [r.device_id for r in records] == [d.id for d in devices]
    assert records[5].name == "Device 5"
    assert all(not r.connected and r.enabled and r.type == "Generic" for r in records)


async def test_list_devices_exact_multiple_of_page(
    session: aiohttp.ClientSession, socket_enabled: None
) -> None:
    devices = [TestDevice(f"d{i}") for i in range(50)]
    async with run_test_server(devices=devices) as server:
        records = await client_for(session, server).list_devices()
    assert len(records) == 50


async def test_get_device_and_state(session: aiohttp.ClientSession, lab: Lab) -> None:
    client = client_for(session, lab.server)
    record = await client.get_device(DEVICE_ID)
    assert record.device_id == DEVICE_ID
    assert record.name == "Desk lamp"
    assert record.connected is True
    assert isinstance(record.connection_ts, int)
    assert record.raw["device"] == DEVICE_ID
    with pytest.raises(IotmpNotFoundError) as err:
        await client.get_device("nope")
    assert err.value.device_offline is False


async def test_server_version(session: aiohttp.ClientSession, server: TestServer) -> None:
    version = await client_for(session, server).server_version()
    assert isinstance(version, str)
    assert version


async def test_get_resources_with_samples(session: aiohttp.ClientSession, lab: Lab) -> None:
    lab.state.light = True
    resources = await client_for(session, lab.server).get_resources(DEVICE_ID)
    assert "$ota/options" not in resources
    assert resources["light"] == ResourceInfo("light", 2, True, ABSENT, {"fn": 2})
    assert resources["brightness"].sample_in == 10
    assert resources["temperature"].fn == 3
    assert resources["temperature"].sample_out == 21.5
    assert resources["temperature"].sample_in is ABSENT
    assert resources["dht"].sample_out == {"celsius": 21.5, "humidity": 40}
    assert resources["reboot"].fn == 1
    assert resources["reboot"].sample_in is ABSENT
    assert resources["reboot"].sample_out is ABSENT
    assert resources["double"].fn == 4
    assert resources["double"].sample_in == 1
    assert resources["double"].sample_out == {"result": 2}
    assert resources["living room/lamp"].sample_in is True
    assert resources["température"].sample_out == 21.5
    # Samples the device cannot give (timeout 504, error 500, error 400) are ABSENT.
    for name in ("slow", "broken", "refuses"):
        assert resources[name].fn == 3
        assert resources[name].sample_out is ABSENT


async def test_offline_device(session: aiohttp.ClientSession, server: TestServer) -> None:
    client = client_for(session, server)
    for call in (
        client.get_resources(DEVICE_ID),
        client.read(DEVICE_ID, "temperature"),
        client.write(DEVICE_ID, "light", True),
        client.get_resource_sample(DEVICE_ID, "light"),
    ):
        with pytest.raises(IotmpNotFoundError) as err:
            await call
        assert err.value.device_offline is True
        assert err.value.status == 404
        assert "not connected" in str(err.value)


async def test_read_write_run(session: aiohttp.ClientSession, lab: Lab) -> None:
    client = client_for(session, lab.server)
    assert await client.read(DEVICE_ID, "temperature") == 21.5
    assert await client.read(DEVICE_ID, "dht") == {"celsius": 21.5, "humidity": 40}
    assert await client.write(DEVICE_ID, "light", True) is None
    assert lab.state.light is True
    assert await client.get_resource_sample(DEVICE_ID, "light") == {"in": True}
    assert await client.write(DEVICE_ID, "brightness", 200) is None
    assert lab.state.brightness == 200
    assert await client.write(DEVICE_ID, "reboot") is None
    assert lab.state.reboots == 1
    assert await client.write(DEVICE_ID, "double", 21) == {"result": 42}
    assert await client.write(DEVICE_ID, "living room/lamp", False) is None
    assert lab.state.room_light is False
    assert await client.read(DEVICE_ID, "température") == 21.5


async def test_resource_errors(session: aiohttp.ClientSession, lab: Lab) -> None:
    client = client_for(session, lab.server)
    with pytest.raises(IotmpNotFoundError) as not_found:
        await client.read(DEVICE_ID, "missing")
    assert not_found.value.device_offline is False
    with pytest.raises(IotmpConnectionError) as broken:
        await client.read(DEVICE_ID, "broken")
    assert broken.value.status == 500
    assert "sensor exploded" in str(broken.value)
    with pytest.raises(IotmpRequestError) as refused:
        await client.read(DEVICE_ID, "refuses")
    assert refused.value.status == 400
    assert "value out of range" in str(refused.value)
    with pytest.raises(IotmpDeviceTimeoutError) as timeout:
        await client.read(DEVICE_ID, "slow")
    assert timeout.value.status == 504


async def test_body_too_large(session: aiohttp.ClientSession, socket_enabled: None) -> None:
    async with run_test_server(devices=[TestDevice(DEVICE_ID)], max_body_bytes=1000) as server:
        client = client_for(session, server)
        with pytest.raises(IotmpRequestError) as err:
            await client.write(DEVICE_ID, "light", "x" * 5000)
    assert err.value.status == 413


async def test_value_not_json(session: aiohttp.ClientSession, server: TestServer) -> None:
    client = client_for(session, server)
    with pytest.raises(IotmpRequestError) as err:
        await client.write(DEVICE_ID, "light", {1, 2})
    assert err.value.status is None
    with pytest.raises(IotmpRequestError):
        await client.write(DEVICE_ID, "light", float("nan"))


async def test_revoked_token(session: aiohttp.ClientSession, server: TestServer) -> None:
    token = server.issue_token()
    server.revoke_token(token)
    client = IotmpApiClient(session, server.http_url, token)
    with pytest.raises(IotmpAuthError) as err:
        await client.list_devices()
    assert err.value.status == 401
    assert token not in str(err.value)
    assert err.value.server_message


async def test_refresher_called_once_for_concurrent_401(
    session: aiohttp.ClientSession, server: TestServer
) -> None:
    token = server.issue_token()
    server.revoke_token(token)
    calls = 0

    async def refresher() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # concurrent 401s must wait for this one refresh
        return server.issue_token()

    client = IotmpApiClient(session, server.http_url, token, token_refresher=refresher)
    results = await asyncio.gather(*(client.list_devices() for _ in range(6)))
    assert all(len(r) == 1 for r in results)
    assert calls == 1
    assert client.token != token


async def test_refresher_cannot_help(session: aiohttp.ClientSession, server: TestServer) -> None:
    bad = server.issue_token()
    server.revoke_token(bad)
    calls = 0

    async def refresher() -> str:
        nonlocal calls
        calls += 1
        return bad  # still revoked: the retry fails, no second refresh

    client = IotmpApiClient(session, server.http_url, bad, token_refresher=refresher)
    with pytest.raises(IotmpAuthError):
        await client.list_devices()
    assert calls == 1

    async def failing_refresher() -> str:
        raise IotmpAuthError("refresh token already used")

    client = IotmpApiClient(session, server.http_url, bad, token_refresher=failing_refresher)
    with pytest.raises(IotmpAuthError, match="already used"):
        await client.list_devices()

    async def empty_refresher() -> str:
        return ""

    client = IotmpApiClient(session, server.http_url, bad, token_refresher=empty_refresher)
    with pytest.raises(IotmpAuthError, match="no access token"):
        await client.list_devices()


async def test_expired_session_token_refreshes_with_login(
    session: aiohttp.ClientSession, server: TestServer
) -> None:
    """The integration's usual wiring: refresher = refresh_login with the stored refresh token."""
    tokens = await IotmpApiClient.password_login(
        session, server.http_url, server.user, server.password
    )
    stored = {"refresh": tokens.refresh_token}

    async def refresher() -> str:
        refresh = stored["refresh"]
        assert refresh is not None
        new = await IotmpApiClient.refresh_login(session, server.http_url, refresh)
        stored["refresh"] = new.refresh_token
        return new.access_token

    client = IotmpApiClient(
        session, server.http_url, tokens.access_token, token_refresher=refresher
    )
    server.revoke_token(tokens.access_token)
    assert len(await asyncio.gather(*(client.list_devices() for _ in range(4)))) == 4
    assert stored["refresh"] != tokens.refresh_token


async def test_server_unreachable(session: aiohttp.ClientSession, socket_enabled: None) -> None:
    async with run_test_server() as server:
        url, token = server.http_url, server.token
    client = IotmpApiClient(session, url, token, request_timeout=2)
    with pytest.raises(IotmpConnectionError, match="cannot reach"):
        await client.list_devices()
    with pytest.raises(IotmpConnectionError):
        await IotmpApiClient.password_login(session, url, "alice", "pw")
