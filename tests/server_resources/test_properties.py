"""Device properties over REST, on SQLite and PostgreSQL (real server, real sockets).

Thinger's shapes: ``/v3/users/{u}/devices/{d}/properties[/{p}]``, property
objects ``{"property", "name", "description", "type", "value"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from server_helpers import api_call

from iotmp.server.config import DeviceConfig
from iotmp.server.limits import ServerLimits
from iotmp.server.testing import TestDevice, TestServer, run_test_server

BASE = "/v3/users/alice/devices/lamp/properties"


@pytest.fixture
async def server(database: str) -> AsyncIterator[TestServer]:
    devices = [TestDevice("lamp"), TestDevice("spare"), TestDevice("bobdev", user="bob")]
    async with run_test_server(devices=devices, user="alice", database=database) as running:
        yield running


def error(status: int, body: Any) -> tuple[int, str]:
    assert isinstance(body["error"]["message"], str), body
    return status, body["error"]["message"]


def shape(item: dict[str, Any]) -> dict[str, Any]:
    """The Thinger members of a property object (times checked apart)."""
    assert isinstance(item.pop("created"), int)
    assert isinstance(item.pop("modified"), int)
    return item


async def test_create_read_replace_patch_delete(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    assert await api_call(http, server, "GET", BASE) == (200, [])
    new = {"property": "cfg", "name": "Config", "type": "configuration", "value": {"a": 1}}
    status, created = await api_call(http, server, "POST", BASE, new)
    assert status == 200
    assert shape(created) == {
        "property": "cfg",
        "name": "Config",
        "description": "",
        "type": "configuration",
        "value": {"a": 1},
    }
    status, got = await api_call(http, server, "GET", BASE + "/cfg")
    assert (status, got["value"], got["name"]) == (200, {"a": 1}, "Config")

    # PUT replaces the value; members it does not name are kept
    status, put = await api_call(http, server, "PUT", BASE + "/cfg", {"value": [1, 2]})
    assert (status, put["value"], put["name"], put["type"]) == (
        200,
        [1, 2],
        "Config",
        "configuration",
    )
    assert put["created"] == got["created"]
    # PUT creates when missing (what Node-RED's property-write does once it exists)
    status, made = await api_call(
        http, server, "PUT", BASE + "/mode", {"value": "eco", "description": "d"}
    )
    assert (status, made["value"], made["description"]) == (200, "eco", "d")

    # PATCH: RFC 7386 merge into the value
    await api_call(http, server, "PUT", BASE + "/cfg", {"value": {"a": 1, "b": {"c": 2, "d": 3}}})
    status, patched = await api_call(
        http, server, "PATCH", BASE + "/cfg", {"value": {"a": None, "b": {"c": 9}, "e": True}}
    )
    assert (status, patched["value"]) == (200, {"b": {"c": 9, "d": 3}, "e": True})
    # a fragment without a value changes the members only
    status, renamed = await api_call(http, server, "PATCH", BASE + "/cfg", {"name": "Settings"})
    assert (status, renamed["name"], renamed["value"]) == (200, "Settings", patched["value"])
    # a non-object patch replaces; null sets null
    assert (await api_call(http, server, "PATCH", BASE + "/cfg", {"value": 5}))[1]["value"] == 5
    assert (await api_call(http, server, "PATCH", BASE + "/cfg", {"value": None}))[1][
        "value"
    ] is None

    status, listed = await api_call(http, server, "GET", BASE)
    assert status == 200
    assert [(p["property"], p["value"]) for p in listed] == [("cfg", None), ("mode", "eco")]

    assert await api_call(http, server, "DELETE", BASE + "/mode") == (200, None)
    assert error(*await api_call(http, server, "GET", BASE + "/mode")) == (
        404,
        "property not found",
    )
    assert error(*await api_call(http, server, "DELETE", BASE + "/mode")) == (
        404,
        "property not found",
    )
    assert error(*await api_call(http, server, "PATCH", BASE + "/mode", {"value": 1}))[0] == 404
    assert [p["property"] for p in (await api_call(http, server, "GET", BASE))[1]] == ["cfg"]


async def test_post_an_array_creates_all_or_nothing(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    items = [{"property": "a", "value": 1}, {"property": "b", "value": {"x": "y"}}]
    status, created = await api_call(http, server, "POST", BASE, items)
    assert status == 200
    assert [(p["property"], p["value"]) for p in created] == [("a", 1), ("b", {"x": "y"})]
    # one of them exists: 409 and "c" is not created either
    status, body = await api_call(
        http, server, "POST", BASE, [{"property": "c", "value": 3}, {"property": "a", "value": 0}]
    )
    assert error(status, body) == (409, "property 'a' already exists")
    assert [p["property"] for p in (await api_call(http, server, "GET", BASE))[1]] == ["a", "b"]
    assert (await api_call(http, server, "GET", BASE + "/a"))[1]["value"] == 1


async def test_perm_and_form_are_kept(server: TestServer, http: aiohttp.ClientSession) -> None:
    body = {"property": "p", "value": 1, "perm": {"readOnly": ["member"]}, "form": {"fields": []}}
    status, created = await api_call(http, server, "POST", BASE, body)
    assert status == 200
    assert created["perm"] == {"readOnly": ["member"]}
    assert created["form"] == {"fields": []}
    # a client may send back what it read (created/modified are ignored)
    status, again = await api_call(http, server, "PUT", BASE + "/p", {**created, "value": 2})
    assert (status, again["value"], again["perm"]) == (200, 2, {"readOnly": ["member"]})
    assert again["created"] == created["created"]


BAD_BODIES: list[tuple[str, str, Any, str]] = [
    ("POST", "", {"value": 1}, 'missing "property" (the property id)'),
    ("POST", "", {"property": "a"}, 'missing "value"'),
    ("POST", "", {"property": "bad id", "value": 1}, "property id must be 1-64 of"),
    ("POST", "", {"property": "x" * 65, "value": 1}, "property id must be 1-64 of"),
    ("POST", "", [], "expected a property or a non-empty array"),
    ("POST", "", 5, "expected a JSON object"),
    (
        "POST",
        "",
        [{"property": "a", "value": 1}, {"property": "a", "value": 2}],
        "property 'a' appears twice",
    ),
    ("POST", "", {"property": "a", "value": 1, "colour": "red"}, "unknown fields: colour"),
    ("POST", "", {"property": "a", "value": 1, "type": "other"}, 'type must be "" or'),
    ("POST", "", {"property": "a", "value": 1, "name": 7}, "name must be a string"),
    ("POST", "", {"property": "a", "value": 1, "name": "n" * 256}, "name must be a string"),
    ("POST", "", {"property": "a", "value": 1, "perm": []}, "perm must be an object"),
    ("PUT", "/a", {"name": "no value"}, 'missing "value"'),
    ("PUT", "/a", {"property": "b", "value": 1}, "does not match the path"),
    ("PUT", "/a", [1], "expected a JSON object"),
    ("PATCH", "/a", [{"op": "add", "path": "/x", "value": 1}], "JSON Patch arrays"),
    ("PATCH", "/a", "text", "expected a JSON object"),
    (
        "PUT",
        "/a",
        {"value": {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
        "nested",
    ),
]


@pytest.mark.parametrize("case", BAD_BODIES, ids=[c[3][:30] for c in BAD_BODIES])
async def test_bad_bodies_get_400_and_change_nothing(
    server: TestServer, http: aiohttp.ClientSession, case: tuple[str, str, Any, str]
) -> None:
    method, tail, body, message = case
    await api_call(http, server, "PUT", BASE + "/a", {"value": "before"})
    status, answer = await api_call(http, server, method, BASE + tail, body)
    got_status, got_message = error(status, answer)
    assert got_status == 400
    assert message in got_message
    assert [
        (p["property"], p["value"]) for p in (await api_call(http, server, "GET", BASE))[1]
    ] == [("a", "before")]


@pytest.mark.parametrize(
    ("raw", "message"), [(b"{nope", "malformed JSON body"), (b"", "expected a JSON body")]
)
async def test_unreadable_bodies_get_400(
    server: TestServer, http: aiohttp.ClientSession, raw: bytes, message: str
) -> None:
    for method, path in (("POST", BASE), ("PUT", BASE + "/a"), ("PATCH", BASE + "/a")):
        assert error(*await api_call(http, server, method, path, raw=raw)) == (400, message)


async def test_bad_ids_unknown_devices_and_tokens(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    for path in (BASE + "/bad%20id", BASE + "/" + "x" * 65, BASE + "/%C3%A9"):
        status, body = await api_call(http, server, "GET", path)
        assert error(status, body)[0] == 400
        status, body = await api_call(http, server, "PUT", path, {"value": 1})
        assert error(status, body)[0] == 400
    for method in ("GET", "POST"):
        status, body = await api_call(
            http,
            server,
            method,
            "/v3/users/alice/devices/nodev/properties",
            {"property": "a", "value": 1},
        )
        assert error(status, body) == (404, "device not found")
    status, body = await api_call(
        http, server, "PUT", "/v3/users/alice/devices/nodev/properties/a", {"value": 1}
    )
    assert error(status, body) == (404, "device not found")
    async with http.get(server.http_url + BASE) as resp:
        assert resp.status == 401


async def test_users_are_isolated(server: TestServer, http: aiohttp.ClientSession) -> None:
    bob = server.issue_token(user="bob")
    bob_base = "/v3/users/bob/devices/bobdev/properties"
    assert (await api_call(http, server, "PUT", bob_base + "/secret", {"value": 42}, token=bob))[
        0
    ] == 200
    # alice's token on bob's path: 403; bob's device under alice's path: 404
    assert error(*await api_call(http, server, "GET", bob_base))[0] == 403
    assert error(*await api_call(http, server, "PUT", bob_base + "/secret", {"value": 0}))[0] == 403
    theirs = "/v3/users/alice/devices/bobdev/properties"
    assert error(*await api_call(http, server, "GET", theirs)) == (404, "device not found")
    assert error(*await api_call(http, server, "GET", theirs + "/secret")) == (
        404,
        "device not found",
    )
    assert error(*await api_call(http, server, "DELETE", theirs + "/secret"))[0] == 404
    # and bob still has it, unchanged
    status, body = await api_call(http, server, "GET", bob_base + "/secret", token=bob)
    assert (status, body["value"]) == (200, 42)
    # bob cannot reach alice's either
    assert error(*await api_call(http, server, "GET", BASE, token=bob))[0] == 403


async def test_properties_survive_a_restart(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    await api_call(
        http, server, "POST", BASE, {"property": "cfg", "name": "C", "value": {"n": 1.5}}
    )
    await api_call(http, server, "PUT", BASE + "/flag", {"value": True})
    await server.stop()
    await server.start()
    status, listed = await api_call(http, server, "GET", BASE)
    assert status == 200
    assert [(p["property"], p["name"], p["value"]) for p in listed] == [
        ("cfg", "C", {"n": 1.5}),
        ("flag", "", True),
    ]
    assert await server.server.properties.value("lamp", "flag") is True


async def test_deleting_the_device_deletes_its_properties(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    new = {"device": "sensor1", "credentials": "s3cret-pw"}
    assert (await api_call(http, server, "POST", "/v1/users/alice/devices", new))[0] == 200
    path = "/v3/users/alice/devices/sensor1/properties"
    await api_call(
        http, server, "POST", path, [{"property": "a", "value": 1}, {"property": "b", "value": 2}]
    )
    assert len((await api_call(http, server, "GET", path))[1]) == 2
    assert (await api_call(http, server, "DELETE", "/v1/users/alice/devices/sensor1"))[0] == 200
    assert error(*await api_call(http, server, "GET", path)) == (404, "device not found")
    # a new device under the same id starts without properties
    assert (await api_call(http, server, "POST", "/v1/users/alice/devices", new))[0] == 200
    assert await api_call(http, server, "GET", path) == (200, [])
    # and the rows are gone from the database, not just hidden
    rows = await server.server.properties.store.of_device("sensor1")
    assert rows == []


async def test_a_device_added_at_runtime_takes_properties_at_once(server: TestServer) -> None:
    props = server.server.properties
    server.add_device(DeviceConfig(id="late", user="alice", credential="late-pw"))
    await props.set_value("late", "p", {"v": 1})  # its row is still being written behind
    assert await props.value("late", "p") == {"v": 1}


async def test_in_process_contract(server: TestServer) -> None:
    props = server.server.properties
    with pytest.raises(KeyError):
        await props.value("lamp", "nothing")
    await props.set_value("lamp", "p", [1, "two"])
    assert await props.value("lamp", "p") == [1, "two"]
    await props.set_value("lamp", "p", b"\x00\x01")  # PSON bytes are kept as base64 text
    assert await props.value("lamp", "p") == "AAE="
    with pytest.raises(KeyError):
        await props.set_value("no-such-device", "p", 1)
    stored = await props.get_property("lamp", "p")
    assert stored is not None and stored.size == len('"AAE="')
    assert await props.delete_property("lamp", "p") is True
    assert await props.delete_property("lamp", "p") is False


async def test_concurrent_patches_lose_no_update(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    await api_call(http, server, "PUT", BASE + "/counter", {"value": {}})
    keys = [f"k{i}" for i in range(20)]
    results = await asyncio.gather(
        *(api_call(http, server, "PATCH", BASE + "/counter", {"value": {key: 1}}) for key in keys),
        *(server.server.properties.set_value("spare", f"s{i}", i) for i in range(10)),
    )
    assert all(status == 200 for status, _ in results[:20])
    status, body = await api_call(http, server, "GET", BASE + "/counter")
    assert status == 200
    assert sorted(body["value"]) == sorted(keys)
    spare = await server.server.properties.list_properties("spare")
    assert sorted(p.property for p in spare) == sorted(f"s{i}" for i in range(10))


async def test_events_on_the_v2_socket(server: TestServer, http: aiohttp.ClientSession) -> None:
    url = f"{server.ws_url}/v2/users/alice/events?authorization={server.token}"
    async with http.ws_connect(url) as ws:
        await ws.send_json({"event": "device_property_create"})
        await ws.send_json({"event": "device_property_update", "filters": {"property": "cfg"}})
        for _ in range(2):
            ack = await ws.receive_json(timeout=5)
            assert ack["success"] is True and "registered" in ack
        await api_call(http, server, "POST", BASE, {"property": "cfg", "value": {"a": 1}})
        await api_call(
            http, server, "PUT", BASE + "/cfg", {"value": {"a": 1}}
        )  # unchanged: no event
        await api_call(http, server, "PUT", BASE + "/other", {"value": 0})  # a create
        await api_call(http, server, "PUT", BASE + "/other", {"value": 1})  # filtered out
        await api_call(http, server, "PATCH", BASE + "/cfg", {"value": {"b": 2}})
        await server.server.properties.set_value("lamp", "cfg", "in-process")
        frames = [await ws.receive_json(timeout=5) for _ in range(4)]
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive_json(timeout=0.3)
    got = [(f["event"], f["device"], f["property"], f["value"]) for f in frames]
    assert got == [
        ("device_property_create", "lamp", "cfg", {"a": 1}),
        ("device_property_create", "lamp", "other", 0),
        ("device_property_update", "lamp", "cfg", {"a": 1, "b": 2}),
        ("device_property_update", "lamp", "cfg", "in-process"),
    ]
    for item in frames:
        assert set(item) == {"event", "user", "ts", "device", "property", "value"}
        assert item["user"] == "alice"


async def test_bob_sees_none_of_alices_events(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    bob = server.issue_token(user="bob")
    url = f"{server.ws_url}/v2/users/bob/events?authorization={bob}"
    async with http.ws_connect(url) as ws:
        await ws.send_json({"event": "device_property_.*"})
        assert (await ws.receive_json(timeout=5))["success"] is True
        await api_call(http, server, "PUT", BASE + "/a", {"value": 1})
        bob_path = "/v3/users/bob/devices/bobdev/properties/mine"
        await api_call(http, server, "PUT", bob_path, {"value": 2}, token=bob)
        first = await ws.receive_json(timeout=5)
        assert (first["device"], first["property"]) == ("bobdev", "mine")
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive_json(timeout=0.3)


@pytest.fixture
async def small(database: str) -> AsyncIterator[TestServer]:
    limits = ServerLimits(
        property_max_bytes=20, properties_per_device=3, device_properties_max_bytes=40
    )
    async with run_test_server(
        devices=[TestDevice("lamp")], user="alice", database=database, limits=limits
    ) as running:
        yield running


async def test_limits(small: TestServer, http: aiohttp.ClientSession) -> None:
    server = small
    status, body = await api_call(http, server, "PUT", BASE + "/big", {"value": "x" * 19})
    assert error(status, body) == (413, "property value larger than 20 bytes (21)")
    assert await api_call(http, server, "GET", BASE) == (200, [])
    # 3 properties of 12 bytes each: 36 of 40
    for name in ("a", "b", "c"):
        assert (await api_call(http, server, "PUT", BASE + "/" + name, {"value": "x" * 10}))[
            0
        ] == 200
    status, body = await api_call(http, server, "PUT", BASE + "/d", {"value": 1})
    assert error(status, body) == (409, "a device can have at most 3 properties")
    status, body = await api_call(http, server, "POST", BASE, {"property": "d", "value": 1})
    assert error(status, body)[0] == 409
    # growing one by 5 bytes passes 40 in all
    status, body = await api_call(http, server, "PUT", BASE + "/a", {"value": "x" * 15})
    assert error(status, body) == (
        413,
        "a device's property values can take at most 40 bytes in all",
    )
    status, body = await api_call(http, server, "PATCH", BASE + "/a", {"value": "x" * 15})
    assert error(status, body)[0] == 413
    # nothing of that was stored; shrinking is fine
    assert (await api_call(http, server, "GET", BASE + "/a"))[1]["value"] == "x" * 10
    assert (await api_call(http, server, "PUT", BASE + "/a", {"value": 1}))[0] == 200
    assert (await api_call(http, server, "DELETE", BASE + "/c"))[0] == 200
    assert (await api_call(http, server, "PUT", BASE + "/d", {"value": "x" * 10}))[0] == 200
    # the in-process call refuses the same way
    from iotmp.server.properties import PropertyError

    with pytest.raises(PropertyError, match="at most 3 properties"):
        await server.server.properties.set_value("lamp", "e", 1)
