"""``iotmp endpoint ...`` and ``iotmp alarm ...`` as a user runs them: real processes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import pytest
from endpoints_helpers import Target, running_target

from iotmp.server.events import make_event
from iotmp.server.testing import TestDevice, TestServer, run_test_server


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with running_target() as running:
        yield running


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with run_test_server(devices=[TestDevice("lamp", credential="lamp-pw")]) as running:
        yield running


async def iotmp(server: TestServer, *args: str) -> tuple[int, str, str]:
    """Run ``python -m iotmp ARGS --url --token`` without blocking the server's loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "iotmp",
        *args,
        "--url",
        server.http_url,
        "--token",
        server.token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_endpoint_and_alarm_commands(server: TestServer, target: Target) -> None:
    endpoints, alarms = server.server.endpoints, server.server.alarms
    await endpoints.create("alice", "hook", url=target.url + "/ok", name="Hook")
    await endpoints.create("alice", "fail", url=target.url + "/fail")
    code, out, err = await iotmp(server, "endpoint", "list")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == ["ENDPOINT", "ENABLED", "TYPE", "NAME"]
    assert out.splitlines()[2].split() == ["hook", "on", "http_request", "Hook"]

    code, out, err = await iotmp(server, "endpoint", "call", "hook", '{"t": 21}', "--json")
    assert (code, json.loads(out)) == (0, {"ok": True, "echo": {"t": 21}})
    assert target.seen[-1].json() == {"t": 21}
    code, out, err = await iotmp(server, "endpoint", "call", "fail")
    assert code == 1
    assert "broken" in err or "500" in err
    code, out, err = await iotmp(server, "endpoint", "call", "nope")
    assert code == 1
    assert "endpoint not found" in err
    code, out, err = await iotmp(server, "endpoint", "call", "hook", "{bad")
    assert code == 2

    await alarms.create_rule(
        "alice",
        "hot",
        source={"type": "device_property", "device": "lamp", "property": "cfg"},
        condition={"operator": ">", "threshold": 10},
    )
    code, out, _ = await iotmp(server, "alarm", "rules")
    assert code == 0
    assert out.splitlines()[1].split()[:4] == ["hot", "on", "device_property", "lamp/cfg"]
    code, out, _ = await iotmp(server, "alarm", "list", "--active")
    assert (code, out.strip()) == (0, "no active alarms")

    server.server.events.publish(
        make_event("device_property_update", "alice", device="lamp", property="cfg", value=42)
    )
    async with asyncio.timeout(5):
        while not (found := await alarms.store.instances_of("alice")):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    instance = found[0].instance
    code, out, _ = await iotmp(server, "alarm", "list", "--active", "--json")
    assert code == 0
    assert [(i["instance"], i["value"]) for i in map(json.loads, out.splitlines())] == [
        (instance, 42)
    ]
    code, out, _ = await iotmp(server, "alarm", "ack", instance, "--note", "seen")
    assert (code, out.strip()) == (0, f"{instance}: acknowledged")
    code, out, _ = await iotmp(server, "alarm", "list", "--active")
    assert (code, out.strip()) == (0, "no active alarms")
    code, out, _ = await iotmp(server, "alarm", "list")
    assert code == 0
    assert out.splitlines()[1].split()[:4] == [instance, "hot", "acknowledged", "42"]
    code, _, err = await iotmp(server, "alarm", "ack", "unknown1")
    assert code == 1
    assert "alarm instance not found" in err
