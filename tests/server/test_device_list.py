"""``GET /v1/users/{u}/devices``: paging, filters and sorting at the edges, fresh records.

The list is cut and sorted on the devices' fields and each record's JSON is cached,
so these tests compare pages with the full list sorted and sliced here, and check
that every change of a device shows in the next list at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from server_helpers import make_lamp, running_device

from iotmp.server.config import DeviceConfig
from iotmp.server.http_api import dumps
from iotmp.server.registry import DeviceRegistry
from iotmp.server.testing import TestDevice, TestServer, run_test_server

# Names and types chosen so that sorting by each field gives a different order,
# with ties (equal types, names differing only in case) to check the tie order.
FLEET = [
    TestDevice("d05", credential="pw-d05", name="kitchen", type="Generic"),
    TestDevice("d01", credential="pw-d01", name="Attic", type="MQTT"),
    TestDevice("d09", credential="pw-d09", name="attic", type="HTTP"),
    TestDevice("d03", credential="pw-d03", name="Zoo", type="Generic"),
    TestDevice("d07", credential="pw-d07", name="bath", type="MQTT"),
    TestDevice("d02", credential="pw-d02", name="", type="Generic"),
    TestDevice("d08", credential="pw-d08", name="Hall", type="HTTP"),
    TestDevice("d04", credential="pw-d04", name="garage", type="Generic"),
]
SORT_KEYS = ("device", "name", "type", "created")


@pytest.fixture
async def fleet_server() -> AsyncIterator[TestServer]:
    """A server with :data:`FLEET` for alice and one device of another user."""
    devices = [*FLEET, TestDevice("bob1", credential="pw-bob1", name="attic", user="bob")]
    async with run_test_server(devices=devices, user="alice") as server:
        server.add_user("bob", "bob-password")
        yield server


async def _call(
    http: aiohttp.ClientSession,
    server: TestServer,
    path: str,
    method: str = "GET",
    body: Any = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with http.request(method, server.http_url + path, json=body, headers=headers) as resp:
        text = await resp.text()
        return resp.status, (await resp.json()) if text else None


async def _list(http: aiohttp.ClientSession, server: TestServer, query: str = "") -> list[Any]:
    status, body = await _call(http, server, f"/v1/users/alice/devices?{query}")
    assert status == 200, body
    assert isinstance(body, list)
    return body


def _ids(records: list[Any]) -> list[str]:
    return [r["device"] for r in records]


async def test_paging_edges(http: aiohttp.ClientSession, fleet_server: TestServer) -> None:
    full = await _list(http, fleet_server)
    assert _ids(full) == [d.id for d in FLEET]  # configuration order, bob's device not listed
    assert await _list(http, fleet_server, "index=8") == []
    assert await _list(http, fleet_server, "index=1000&count=5") == []
    assert await _list(http, fleet_server, "count=0") == full  # 0 means no limit
    assert await _list(http, fleet_server, "count=0&index=6") == full[6:]
    assert await _list(http, fleet_server, "count=3&index=6") == full[6:]
    assert await _list(http, fleet_server, "count=1000") == full
    assert await _list(http, fleet_server, "count=3&index=2") == full[2:5]
    assert await _list(http, fleet_server, "count=&index=") == full
    status, _ = await _call(http, fleet_server, "/v1/users/alice/devices?index=-1")
    assert status == 400


@pytest.mark.parametrize("sort", SORT_KEYS)
async def test_sort_order_and_paging_match_the_sorted_full_list(
    http: aiohttp.ClientSession, fleet_server: TestServer, sort: str
) -> None:
    full = await _list(http, fleet_server)
    ascending = sorted(full, key=lambda r: str(r[sort]).lower())
    descending = list(reversed(ascending))
    assert await _list(http, fleet_server, f"sort={sort}") == ascending
    assert await _list(http, fleet_server, f"sort={sort}&order=asc") == ascending
    assert await _list(http, fleet_server, f"sort={sort}&order=DESC") == descending
    for index, count in ((0, 3), (3, 3), (6, 3), (7, 50), (2, 0)):
        page = descending[index:] if not count else descending[index : index + count]
        query = f"sort={sort}&order=desc&index={index}&count={count}"
        assert await _list(http, fleet_server, query) == page, query


async def test_filters_with_sort_and_paging(
    http: aiohttp.ClientSession, fleet_server: TestServer
) -> None:
    full = await _list(http, fleet_server)
    attic = [r for r in full if "attic" in r["name"].lower() or "attic" in r["device"].lower()]
    assert _ids(attic) == ["d01", "d09"]
    assert await _list(http, fleet_server, "name=ATTIC") == attic
    assert _ids(await _list(http, fleet_server, "name=d0")) == [d.id for d in FLEET]
    generic = [r for r in full if r["type"] == "Generic"]
    assert await _list(http, fleet_server, "type=generic") == generic
    by_name = sorted(generic, key=lambda r: str(r["name"]).lower(), reverse=False)[::-1]
    query = "type=Generic&sort=name&order=desc&index=1&count=2"
    assert await _list(http, fleet_server, query) == by_name[1:3]
    assert await _list(http, fleet_server, "name=nothing-like-this") == []
    assert await _list(http, fleet_server, "type=Zigbee") == []


async def test_unknown_sort_key_keeps_the_configuration_order(
    http: aiohttp.ClientSession, fleet_server: TestServer
) -> None:
    full = await _list(http, fleet_server)
    assert await _list(http, fleet_server, "sort=enabled") == full
    assert await _list(http, fleet_server, "order=desc") == full[::-1]


async def test_listed_records_equal_the_device_records(
    http: aiohttp.ClientSession, fleet_server: TestServer
) -> None:
    for record in await _list(http, fleet_server):
        status, body = await _call(
            http, fleet_server, f"/v1/users/alice/devices/{record['device']}"
        )
        assert (status, body) == (200, record)


async def test_list_shows_connect_disconnect_and_changes_at_once(
    http: aiohttp.ClientSession, fleet_server: TestServer
) -> None:
    def entry(records: list[Any], device_id: str) -> Any:
        return next(r for r in records if r["device"] == device_id)

    before = entry(await _list(http, fleet_server), "d05")  # cached from here on
    assert before["connection"] == {"active": False}
    device, _ = make_lamp("alice", "d05", "pw-d05")
    async with running_device(device, fleet_server.tcp_port):
        await fleet_server.wait_device_connected("d05", 5)
        online = entry(await _list(http, fleet_server), "d05")
        assert online["connection"]["active"] is True
        assert isinstance(online["connection"]["ts"], int)
        assert online["connection"]["ip_address"] == "127.0.0.1"
        assert online == entry(await _list(http, fleet_server, "name=kitchen"), "d05")
    await fleet_server.wait_device_disconnected("d05", 5)
    offline = entry(await _list(http, fleet_server), "d05")
    assert offline["connection"]["active"] is False
    assert offline["connection"]["ts"] >= online["connection"]["ts"]
    assert "ip_address" not in offline["connection"]

    status, _ = await _call(
        http,
        fleet_server,
        "/v1/users/alice/devices/d05",
        "PUT",
        {"name": "Pantry", "asset_group": "ground_floor"},
    )
    assert status == 200
    changed = entry(await _list(http, fleet_server), "d05")
    assert changed["name"] == "Pantry"
    assert changed["asset_group"] == "ground_floor"
    assert _ids(await _list(http, fleet_server, "name=pantry")) == ["d05"]
    assert await _list(http, fleet_server, "name=kitchen") == []

    status, _ = await _call(http, fleet_server, "/v1/users/alice/devices/d05", "DELETE")
    assert status == 200
    assert "d05" not in _ids(await _list(http, fleet_server))
    fleet_server.add_device(TestDevice("d10", credential="pw-d10", name="late"))
    assert _ids(await _list(http, fleet_server))[-1] == "d10"


async def test_each_user_lists_only_their_devices(
    http: aiohttp.ClientSession, fleet_server: TestServer
) -> None:
    token = fleet_server.issue_token(user="bob")
    headers = {"Authorization": f"Bearer {token}"}
    url = fleet_server.http_url + "/v1/users/bob/devices"
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert _ids(await resp.json()) == ["bob1"]
    assert "bob1" not in _ids(await _list(http, fleet_server, "name=attic"))


def test_record_json_follows_every_field_and_encodes_what_orjson_refuses() -> None:
    registry = DeviceRegistry([DeviceConfig("d1", "alice", "pw", name="One")])
    state = registry.get("d1")
    assert state is not None
    assert json.loads(state.record_json()) == state.record()
    assert state.record_json() is state.record_json()  # cached while nothing changed
    registry.add(DeviceConfig("d1", "alice", "pw", name="Renamed"))
    assert json.loads(state.record_json())["name"] == "Renamed"
    state.modified_ms = 12345
    assert json.loads(state.record_json())["modified"] == 12345
    state.attributes = {"blob": b"\x00\x01", "big": 2**70, "nan": float("nan")}
    assert json.loads(state.record_json()) == json.loads(dumps(state.record()))
    assert json.loads(state.record_json())["blob"] == "AAE="  # base64, as every answer has it
