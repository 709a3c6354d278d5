"""CALL_DEVICE (3), LOCK_SYNC (6) and UNLOCK_SYNC (7) against the real server.

Devices are the SDK's (both layouts) and raw peers sending exact bytes. These
features keep no stored state, so the default SQLite database is enough.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from device_side import WAIT, RawPeer, running, sdk_device, sid
from server_helpers import frame_hex

from iotmp.device import Device, ResourceError, ServerCallError
from iotmp.protocol.errors import ConnectionClosedError
from iotmp.protocol.message import MessageType
from iotmp.server.testing import TEST_LIMITS, TestDevice, TestServer, run_test_server

LAYOUTS = ("embedded", "linux")
DEVICES = [
    TestDevice("caller", credential="caller-pw"),
    TestDevice("helper", credential="helper-pw"),
    TestDevice("lamp", credential="lamp-pw"),
    TestDevice("away", credential="away-pw"),
    TestDevice("bobdev", credential="bob-pw", user="bob"),
]


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    limits = replace(TEST_LIMITS, sync_locks_per_device=3)
    async with run_test_server(devices=DEVICES, request_timeout=1.0, limits=limits) as running_:
        yield running_


def make_lamp() -> tuple[Device, dict[str, Any]]:
    state: dict[str, Any] = {"led": False}
    lamp = sdk_device("alice", "lamp", "lamp-pw")

    def set_led(value: Any) -> None:
        state["led"] = bool(value)

    def calc(value: Any) -> Any:
        if not isinstance(value, dict):
            raise ResourceError("calc needs {a, b}", 400)
        return {"sum": value["a"] + value["b"], "product": value["a"] * value["b"]}

    def broken() -> None:
        raise ResourceError("sensor unplugged", 409)

    async def slow() -> int:
        await asyncio.sleep(3)
        return 1

    lamp.input_resource("led", lambda: state["led"], set_led)
    lamp.input_output_resource("calc", calc, {"a": 0, "b": 0})
    lamp.output_resource("broken", broken)
    lamp.output_resource("slow", slow)
    return lamp, state


def exact(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


async def online(server: TestServer, device: Device) -> None:
    await server.wait_device_connected(device.device_id, WAIT)


# -- CALL_DEVICE ------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_call_device_runs_the_resource_and_returns_its_output(
    server: TestServer, layout: str
) -> None:
    lamp, state = make_lamp()
    caller = sdk_device("alice", "caller", "caller-pw", layout=layout)
    async with running(lamp, server.tcp_port), running(caller, server.tcp_port):
        await online(server, lamp)
        await online(server, caller)
        assert await caller.call_device("lamp", "calc", {"a": 2, "b": 3}) == {
            "sum": 5,
            "product": 6,
        }
        assert await caller.call_device("lamp", "led", True) is None
        assert state["led"] is True


async def test_call_device_errors_say_what_went_wrong(server: TestServer) -> None:
    lamp, _state = make_lamp()
    caller = sdk_device("alice", "caller", "caller-pw")
    async with running(lamp, server.tcp_port), running(caller, server.tcp_port):
        await online(server, lamp)
        await online(server, caller)
        expected = {
            ("away", "led"): "device 'away' is offline",
            ("ghost", "led"): "device 'ghost' not found",
            ("bobdev", "led"): "device 'bobdev' not found",  # another user's: not revealed
            ("lamp", "broken"): "device 'lamp' refused 'broken': sensor unplugged",
            ("lamp", "nothing"): "device 'lamp' refused 'nothing': no such resource, or it failed",
            ("lamp", "slow"): "device 'lamp' did not answer 'slow' within 1 s",
        }
        for (device, resource), message in expected.items():
            with pytest.raises(ServerCallError) as caught:
                await caller.call_device(device, resource)
            assert str(caught.value) == message


# Exact bytes: CALL_DEVICE ["lamp", "calc"] with {"a": 2, "b": 3}.
TARGET = "e2 84 6c616d70 84 63616c63"
INPUT = "c2 81 61 02 81 62 03"
OUTPUT = "c2 83 73756d 05 87 70726f64756374 06"  # {"sum": 5, "product": 6}


def raw_run(layout: str, stream_id: int | None, code: str, target: str, payload: str | None) -> str:
    """A server-resource RUN as hex, in ``layout``."""
    head = "" if stream_id is None else sid(stream_id)
    data = "" if payload is None else f"1a {payload}"
    if layout == "embedded":
        return frame_hex(MessageType.RUN, f"{head} 10 {code} {data} 22 {target}")
    return frame_hex(MessageType.RUN, f"{head} 12 {target} {data} 20 {code}")


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_call_device_raw_bytes(server: TestServer, layout: str) -> None:
    lamp, _state = make_lamp()
    async with running(lamp, server.tcp_port):
        await online(server, lamp)
        peer = await RawPeer.open(server.tcp_port)
        try:
            await peer.login("alice", "caller", "caller-pw")
            await peer.send_hex(raw_run(layout, 0x21, "03", TARGET, INPUT))
            assert (await peer.reply_to(0x21)).type == MessageType.OK
            assert frame_hex(MessageType.OK, f"{sid(0x21)} 1a {OUTPUT}") in peer.raw.hex()
            # A bad target is refused with a message, and the connection stays up.
            await peer.send_hex(raw_run(layout, 0x23, "03", "84 6c616d70", None))
            refused = await peer.reply_to(0x23)
            assert refused.type == MessageType.ERROR
            assert refused.payload == {
                "error": 'CALL_DEVICE needs the target ["device_id", "resource"]'
            }
            await peer.send_hex(raw_run(layout, 0x25, "03", TARGET, INPUT))
            assert (await peer.reply_to(0x25)).type == MessageType.OK
        finally:
            await peer.close()


# -- LOCK_SYNC / UNLOCK_SYNC ---------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_lock_waits_until_its_holder_unlocks(server: TestServer, layout: str) -> None:
    first = sdk_device("alice", "caller", "caller-pw", layout=layout)
    second = sdk_device("alice", "helper", "helper-pw", layout=layout)
    async with running(first, server.tcp_port), running(second, server.tcp_port):
        await online(server, first)
        await online(server, second)
        await first.lock_sync("door")
        waiting = asyncio.ensure_future(second.lock_sync("door", timeout=5))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert server.server.device_calls.syncs.waiting("alice", "door") == 1
        started = time.monotonic()
        await first.unlock_sync("door")
        await asyncio.wait_for(waiting, WAIT)
        handover = time.monotonic() - started
        assert handover < 1.0
        assert server.server.device_calls.syncs.holders("alice", "door") == [("helper", "")]
        # The second one holds it now: the first waits and gives up after its timeout.
        started = time.monotonic()
        with pytest.raises(ServerCallError, match=exact("sync 'door' still locked after 0.3 s")):
            await first.lock_sync("door", timeout=0.3)
        assert 0.25 < time.monotonic() - started < 2.0
        with pytest.raises(ServerCallError, match=exact("sync 'door' is locked")):
            await first.lock_sync("door", timeout=0)
        with pytest.raises(ServerCallError, match="is not held by this device"):
            await first.unlock_sync("door")


async def test_slots_locks_ids_and_users(server: TestServer) -> None:
    first = sdk_device("alice", "caller", "caller-pw")
    second = sdk_device("alice", "helper", "helper-pw")
    bob = sdk_device("bob", "bobdev", "bob-pw")
    async with (
        running(first, server.tcp_port),
        running(second, server.tcp_port),
        running(bob, server.tcp_port),
    ):
        for device in (first, second, bob):
            await online(server, device)
        await first.lock_sync("pump", slots=2)
        await second.lock_sync("pump", slots=2)
        with pytest.raises(ServerCallError, match="still locked"):
            await first.lock_sync("pump", lock="other", slots=2, timeout=0.1)
        await first.lock_sync("pump", slots=2)  # already held: granted again, not counted twice
        await bob.lock_sync("pump", timeout=0)  # bob's syncs are his own
        await second.unlock_sync("pump")
        await first.lock_sync("pump", lock="other", slots=2, timeout=1)
        syncs = server.server.device_calls.syncs
        assert sorted(syncs.holders("alice", "pump")) == [("caller", ""), ("caller", "other")]
        assert syncs.holders("bob", "pump") == [("bobdev", "")]
        # At most sync_locks_per_device (3 here) holdings and waits per device.
        await first.lock_sync("valve")
        with pytest.raises(ServerCallError, match=exact("at most 3 sync locks per device")):
            await first.lock_sync("fan")
        for bad, message in [
            ({"slots": 0}, "slots must be a whole number from 1 to 1024"),
            ({"timeout": -1}, "timeout must be a number of seconds >= 0"),
            ({"lock": ["x"]}, "lock must be a string of 1-256 characters"),
        ]:
            with pytest.raises(ServerCallError, match=exact(message)):
                await second.lock_sync("fan", **{k: v for k, v in bad.items()})  # type: ignore[arg-type]


async def test_a_disconnect_releases_locks_and_ends_waits(server: TestServer) -> None:
    first = sdk_device("alice", "caller", "caller-pw")
    second = sdk_device("alice", "helper", "helper-pw")
    syncs = server.server.device_calls.syncs
    async with running(second, server.tcp_port):
        await online(server, second)
        async with running(first, server.tcp_port):
            await online(server, first)
            await first.lock_sync("door")
            await first.lock_sync("gate")
            waiting = asyncio.ensure_future(second.lock_sync("door", timeout=10))
            await asyncio.sleep(0.1)
            assert not waiting.done()
        started = time.monotonic()
        await asyncio.wait_for(waiting, WAIT)  # granted once the holder went offline
        assert time.monotonic() - started < 2.0
        assert syncs.holders("alice", "door") == [("helper", "")]
        assert syncs.holders("alice", "gate") == []
        # The waiter's own disconnect ends its wait.
        async with running(first, server.tcp_port):
            await online(server, first)
            pending = asyncio.ensure_future(first.lock_sync("door", timeout=10))
            async with asyncio.timeout(WAIT):
                while syncs.waiting("alice", "door") == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(pending, WAIT)
        assert syncs.waiting("alice", "door") == 0
        assert syncs.holders("alice", "door") == [("helper", "")]


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_lock_and_unlock_raw_bytes(server: TestServer, layout: str) -> None:
    peer = await RawPeer.open(server.tcp_port)
    try:
        await peer.login("alice", "caller", "caller-pw")
        door = "84 646f6f72"  # "door"
        lock_a = "c1 84 6c6f636b 81 61"  # {"lock": "a"}
        await peer.send_hex(raw_run(layout, 0x31, "06", door, lock_a))
        assert (await peer.reply_to(0x31)).type == MessageType.OK
        assert peer.raw.hex().endswith(frame_hex(MessageType.OK, sid(0x31)))
        await peer.send_hex(raw_run(layout, 0x33, "06", door, "c1 87 74696d656f7574 00"))
        refused = await peer.reply_to(0x33)  # {"timeout": 0} while "a" holds it
        assert refused.type == MessageType.ERROR
        assert refused.payload == {"error": "sync 'door' is locked"}
        await peer.send_hex(raw_run(layout, 0x35, "07", door, lock_a))
        assert (await peer.reply_to(0x35)).type == MessageType.OK
        assert peer.raw.hex().endswith(frame_hex(MessageType.OK, sid(0x35)))
        await peer.send_hex(raw_run(layout, 0x37, "07", door, lock_a))
        again = await peer.reply_to(0x37)
        assert again.payload == {"error": "sync 'door': lock 'a' is not held by this device"}
        # Without STREAM_ID: done, and never answered.
        await peer.send_hex(raw_run(layout, None, "06", door, None))
        async with asyncio.timeout(WAIT):
            while not server.server.device_calls.syncs.holders("alice", "door"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await peer.send_hex(raw_run(layout, 0x3B, "07", door, None))
        assert (await peer.reply_to(0x3B)).type == MessageType.OK
    finally:
        await peer.close()
