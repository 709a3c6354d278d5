"""Alarms over real sockets: rules on properties, bucket writes and device resources."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from endpoints_helpers import Target, next_event, running_target
from server_helpers import api_call, make_lamp, running_device

from iotmp.server.events import make_event
from iotmp.server.testing import TEST_LIMITS, TestDevice, TestServer, run_test_server

LIMITS = replace(TEST_LIMITS, alarm_rules_per_user=3, endpoint_timeout=2.0)
RULES = "/v1/users/alice/alarms/rules"
INSTANCES = "/v1/users/alice/alarms/instances"


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with running_target() as running:
        yield running


@pytest.fixture
async def server(database: str) -> AsyncIterator[TestServer]:
    devices = [TestDevice("lamp", credential="lamp-pw"), TestDevice("bobdev", user="bob")]
    async with run_test_server(
        devices=devices, user="alice", database=database, limits=LIMITS
    ) as running:
        yield running


@pytest.fixture
async def events(
    server: TestServer, http: aiohttp.ClientSession
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with http.ws_connect(server.ws_url + "/v2/users/alice/events", headers=headers) as ws:
        await ws.send_json({"event": "alarm_.*"})
        assert "registered" in await ws.receive_json(timeout=5)
        yield ws


def property_rule(rule: str = "hot", **extra: Any) -> dict[str, Any]:
    return {
        "rule": rule,
        "name": "Too hot",
        "source": {
            "type": "device_property",
            "device": "lamp",
            "property": "config",
            "field": "max",
        },
        "condition": {"operator": ">", "threshold": 10, "duration": 0},
        **extra,
    }


def set_property(
    server: TestServer, value: Any, *, user: str = "alice", prop: str = "config"
) -> None:
    """Publish the event exactly as the properties feature does."""
    server.server.events.publish(
        make_event("device_property_update", user, device="lamp", property=prop, value=value)
    )


def write_bucket(server: TestServer, data: Any) -> None:
    """Publish the event exactly as the buckets feature does."""
    server.server.events.publish(make_event("bucket_write", "alice", bucket="weather", data=data))


async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def instances(
    http: aiohttp.ClientSession, server: TestServer, query: str = ""
) -> list[dict[str, Any]]:
    status, found = await api_call(http, server, "GET", INSTANCES + query)
    assert status == 200, found
    assert isinstance(found, list)
    return found


async def test_property_alarm_lifecycle(
    server: TestServer,
    http: aiohttp.ClientSession,
    target: Target,
    events: aiohttp.ClientWebSocketResponse,
) -> None:
    await server.server.endpoints.create("alice", "notify", url=target.url + "/ok")
    status, rule = await api_call(http, server, "POST", RULES, property_rule(endpoint="notify"))
    assert status == 200, rule
    assert (await next_event(events, "alarm_rule_create"))["rule"] == "hot"
    assert rule["condition"] == {"operator": ">", "threshold": 10, "duration": 0.0}

    set_property(server, {"max": 5})  # below: nothing
    set_property(server, {"max": 50}, prop="other")  # another property: nothing
    set_property(server, {"max": 20})
    created = await next_event(events, "alarm_instance_create")
    assert (created["rule"], created["state"], created["value"]) == ("hot", "active", 20)
    instance_id = created["instance"]
    found = await instances(http, server)
    assert [(i["instance"], i["state"], i["value"]) for i in found] == [(instance_id, "active", 20)]
    # the rule's endpoint got the instance
    notified = await target.next_request()
    assert notified.json()["instance"] == instance_id
    assert (notified.json()["rule"], notified.json()["state"]) == ("hot", "active")

    # acknowledged
    status, acked = await api_call(
        http,
        server,
        "PUT",
        f"{INSTANCES}/{instance_id}",
        {"state": "acknowledged", "annotation": "on it"},
    )
    assert status == 200, acked
    assert (acked["state"], acked["annotation"]) == ("acknowledged", "on it")
    updated = await next_event(events, "alarm_instance_update")
    assert (updated["instance"], updated["state"]) == (instance_id, "acknowledged")
    set_property(server, {"max": 15})  # still holds: no second instance

    # cleared when the condition stops holding
    set_property(server, {"max": 3})
    cleared = await next_event(events, "alarm_instance_normalize")
    assert (cleared["instance"], cleared["state"], cleared["value"]) == (instance_id, "cleared", 3)
    status, got = await api_call(http, server, "GET", f"{INSTANCES}/{instance_id}")
    assert status == 200
    assert got["state"] == "cleared"
    assert got["raised"] <= got["acknowledged"] <= got["cleared"]

    # raised anew, filters, delete
    set_property(server, {"max": 30})
    second = await next_event(events, "alarm_instance_create")
    assert second["instance"] != instance_id
    assert len(await instances(http, server, "?rule=hot")) == 2
    assert [i["instance"] for i in await instances(http, server, "?state=active")] == [
        second["instance"]
    ]
    assert await instances(http, server, "?rule=other") == []
    status, _ = await api_call(http, server, "GET", INSTANCES + "?state=burning")
    assert status == 400
    status, _ = await api_call(http, server, "DELETE", f"{INSTANCES}/{instance_id}")
    assert status == 200
    status, _ = await api_call(http, server, "GET", f"{INSTANCES}/{instance_id}")
    assert status == 404
    status, _ = await api_call(
        http, server, "PUT", f"{INSTANCES}/{second['instance']}", {"state": 2}
    )
    assert status == 400


async def test_bucket_alarm_respects_the_held_duration(
    server: TestServer, http: aiohttp.ClientSession, events: aiohttp.ClientWebSocketResponse
) -> None:
    rule = {
        "rule": "heat",
        "source": {"type": "bucket", "bucket": "weather", "field": "temp"},
        "condition": {"operator": ">=", "threshold": 30, "duration": 0.5},
    }
    status, body = await api_call(http, server, "POST", RULES, rule)
    assert status == 200, body
    write_bucket(server, {"temp": 35})
    await asyncio.sleep(0.25)
    write_bucket(server, {"temp": 20})  # dropped before the duration was up
    await asyncio.sleep(0.5)
    assert await instances(http, server) == []

    started = time.monotonic()
    write_bucket(server, {"temp": 31})  # and no further write: the held value raises
    created = await next_event(events, "alarm_instance_create")
    assert time.monotonic() - started >= 0.45
    assert created["value"] == 31
    write_bucket(server, {"humidity": 3})  # no such field: ignored, not a clear
    write_bucket(server, {"temp": 29.5})
    assert (await next_event(events, "alarm_instance_normalize"))["value"] == 29.5


async def test_device_resource_alarm_and_reconnect(
    server: TestServer, http: aiohttp.ClientSession, events: aiohttp.ClientWebSocketResponse
) -> None:
    rule = {
        "rule": "bright",
        "source": {
            "type": "device_resource",
            "device": "lamp",
            "resource": "brightness",
            "interval": 0.05,
        },
        "condition": {"operator": ">", "threshold": 50, "duration": 0},
    }
    status, body = await api_call(http, server, "POST", RULES, rule)  # the lamp is offline now
    assert status == 200, body
    device, state = make_lamp("alice", "lamp", "lamp-pw")
    async with running_device(device, server.tcp_port):
        await server.wait_device_connected("lamp")
        state.brightness = 80
        created = await next_event(events, "alarm_instance_create")
        assert created["value"] == 80
        state.brightness = 10
        assert (await next_event(events, "alarm_instance_normalize"))["value"] == 10
    await server.wait_device_disconnected("lamp")
    state.brightness = 90  # changed while offline
    await asyncio.sleep(0.2)
    assert await instances(http, server, "?state=active") == []
    device, state = make_lamp("alice", "lamp", "lamp-pw", state=state)
    async with running_device(device, server.tcp_port):
        created = await next_event(events, "alarm_instance_create")  # re-armed on reconnect
        assert created["value"] == 90
    # a rule on another field path of an output resource
    status, body = await api_call(
        http,
        server,
        "PUT",
        RULES + "/bright",
        {
            "source": {
                "type": "device_resource",
                "device": "lamp",
                "resource": "temperature",
                "field": "celsius",
            }
        },
    )
    assert (status, body["source"]["interval"]) == (200, 10.0)


async def test_users_are_isolated_and_rules_checked(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    status, _ = await api_call(http, server, "POST", RULES, property_rule())
    assert status == 200
    bob = server.issue_token(user="bob")
    for method, path in [("GET", RULES), ("GET", RULES + "/hot"), ("GET", INSTANCES)]:
        status, _ = await api_call(http, server, method, path, token=bob)
        assert status == 403
    status, listed = await api_call(http, server, "GET", "/v1/users/bob/alarms/rules", token=bob)
    assert (status, listed) == (200, [])
    set_property(server, {"max": 99}, user="bob")  # bob's event about a device "lamp"
    await asyncio.sleep(0.1)
    assert await instances(http, server) == []

    source = property_rule()["source"]
    bad = [
        {**property_rule("b1"), "source": {**source, "device": "bobdev"}},  # bob's device
        {**property_rule("b2"), "endpoint": "nowhere"},
        {**property_rule("b3"), "condition": {"operator": "~", "threshold": 1}},
        {**property_rule("b4"), "condition": {"operator": ">", "threshold": "hot"}},
        {**property_rule("b5"), "source": {"type": "weather"}},
        {**property_rule("b6"), "colour": "red"},
        {**property_rule("b7"), "severity": 9},
        {"rule": "b8", "source": source},
        {**property_rule(), "rule": "no spaces"},
    ]
    for body in bad:
        status, answer = await api_call(http, server, "POST", RULES, body)
        assert status == 400, (body, answer)
        assert isinstance(answer["error"]["message"], str)
    status, _ = await api_call(http, server, "POST", RULES, property_rule())
    assert status == 409  # taken
    # Thinger's envelope: the settings under "config"
    thinger = {"rule": "t1", "name": "T", "enabled": True, "config": property_rule("t1")}
    del thinger["config"]["rule"]
    status, created = await api_call(http, server, "POST", RULES, thinger)
    assert (status, created["source"]["property"]) == (200, "config")
    status, _ = await api_call(http, server, "POST", RULES, property_rule("t2"))
    assert status == 200
    status, answer = await api_call(http, server, "POST", RULES, property_rule("t3"))
    assert (status, answer["error"]["message"]) == (409, "at most 3 alarm rules per user")
    status, _ = await api_call(http, server, "DELETE", RULES + "/t2")
    assert status == 200
    status, _ = await api_call(http, server, "DELETE", RULES + "/t2")
    assert status == 404


async def test_rules_and_open_instances_survive_a_restart(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    record = await server.server.alarms.create_rule(
        "alice",
        "hot",
        source={"type": "device_property", "device": "lamp", "property": "config", "field": "max"},
        condition={"operator": ">", "threshold": 10},
        severity=2,
    )
    assert (record["rule"], record["severity"], record["enabled"]) == ("hot", 2, True)
    set_property(server, {"max": 11})

    async def one_active() -> bool:
        return len(await instances(http, server, "?state=active")) == 1

    await eventually(one_active)
    await server.stop()
    await server.start()
    status, rules = await api_call(http, server, "GET", RULES)
    assert (status, [r["rule"] for r in rules]) == (200, ["hot"])
    set_property(server, {"max": 12})  # still holds: the open instance is remembered
    await asyncio.sleep(0.1)
    assert len(await instances(http, server)) == 1
    set_property(server, {"max": 1})

    async def cleared() -> bool:
        return [i["state"] for i in await instances(http, server)] == ["cleared"]

    await eventually(cleared)
    # disabled rules are not evaluated
    status, _ = await api_call(http, server, "PUT", RULES + "/hot", {"enabled": False})
    assert status == 200
    set_property(server, {"max": 50})
    await asyncio.sleep(0.1)
    assert [i["state"] for i in await instances(http, server)] == ["cleared"]
