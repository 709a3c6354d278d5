"""In-process access to the server (iotmp.server.embedded), with real devices over TCP."""

from __future__ import annotations

import asyncio

import pytest

from iotmp.server.config import DeviceConfig
from iotmp.server.embedded import (
    ApiError,
    LocalAccess,
    remove_device,
    replace_device,
    watch_refusals,
)
from iotmp.server.testing import TestDevice, run_test_server
from iotmp.sim.testing import run_virtual_devices


async def test_list_describe_write_and_stream() -> None:
    async with run_test_server(user="alice") as server:
        access = LocalAccess(server.server, "alice")
        async with run_virtual_devices(server, profiles=["smart_plug"]) as fleet:
            await fleet.wait_connected()
            records = access.records()
            assert [(r["device"], r["connection"]["active"]) for r in records] == [
                ("smart-plug", True)
            ]
            description = await access.describe("smart-plug")
            assert description["relay"]["fn"] == 2
            assert (await access.sample("smart-plug", "relay")) == {"in": False}
            went_offline = asyncio.Event()
            remove_listener = access.add_state_listener(
                lambda device_id, up: (
                    went_offline.set() if (device_id, up) == ("smart-plug", False) else None
                )
            )
            echoed = asyncio.Event()
            sub = access.subscribe(
                "smart-plug", "relay", 0, lambda _r, v: echoed.set() if v is True else None
            )
            assert await access.write("smart-plug", "relay", True) is None
            assert fleet["smart-plug"].state["relay"] is True
            async with asyncio.timeout(5):
                await echoed.wait()
            access.unsubscribe(sub)
            with pytest.raises(ApiError) as missing:
                await access.write("smart-plug", "nothing", 1)
            assert missing.value.status == 404
            await fleet["smart-plug"].stop()
            async with asyncio.timeout(5):
                await went_offline.wait()
            remove_listener()
            with pytest.raises(ApiError) as offline:
                await access.describe("smart-plug")
            assert offline.value.status == 404


async def test_other_users_devices_are_not_visible() -> None:
    async with run_test_server(
        devices=[TestDevice("bobs", credential="x", user="bob")], user="alice"
    ) as server:
        access = LocalAccess(server.server, "alice")
        assert access.records() == []
        with pytest.raises(ApiError) as err:
            await access.describe("bobs")
        assert err.value.status == 404


async def test_remove_and_replace_close_the_connection_and_refusals_are_seen() -> None:
    async with run_test_server(user="alice") as server:
        refused = asyncio.Event()
        watch_refusals(
            server.server.registry,
            lambda device_id: refused.set() if device_id == "counter" else None,
        )
        async with run_virtual_devices(server, profiles=["counter"], reconnect_delay=0.05) as fleet:
            await fleet.wait_connected()
            counter = fleet["counter"]
            # New credential: the session made with the old one ends, reconnects fail.
            await replace_device(
                server.server, DeviceConfig(id="counter", user="alice", credential="new")
            )
            async with asyncio.timeout(10):
                await refused.wait()
            assert not counter.connected
            assert server.devices_online() == []
            assert await remove_device(server.server, "counter") is True
            assert server.server.registry.get("counter") is None
            assert all(d.id != "counter" for d in server.server.config.devices)
            assert await remove_device(server.server, "counter") is False
