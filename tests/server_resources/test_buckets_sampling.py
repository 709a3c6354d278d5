"""Device-resource buckets: the server samples a resource while the device is online."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from server_helpers import make_lamp, running_device

from iotmp.server.buckets import Buckets
from iotmp.server.testing import TestDevice, run_test_server

CONFIG = {
    "source": "device",
    "device": "lamp",
    "resource": "counter",
    "update": "interval",
    "interval": 0.1,
}


async def _grows(
    buckets: Buckets, bucket: str, beyond: int, limit: float = 5.0
) -> list[dict[str, Any]]:
    async with asyncio.timeout(limit):
        while len(rows := await buckets.read("alice", bucket)) <= beyond:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return rows


async def test_samples_across_reconnect_and_restart() -> None:
    async with run_test_server(devices=[TestDevice("lamp", credential="lamp-pw")]) as server:
        buckets = server.server.buckets
        headers = {"Authorization": f"Bearer {server.token}"}
        body = {"bucket": "counts", "name": "Counts", "enabled": True, "config": CONFIG}
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.http_url}/v1/users/alice/buckets", json=body, headers=headers
            ) as resp,
        ):
            assert resp.status == 200
        assert await buckets.read("alice", "counts") == []  # offline: nothing sampled
        device, state = make_lamp("alice", "lamp", "lamp-pw")
        async with running_device(device, server.tcp_port):
            rows = await _grows(buckets, "counts", 2)
            # counter's output is a number: stored under the resource's name
            assert all(set(r["val"]) == {"counter"} for r in rows)
            assert [r["val"]["counter"] for r in rows] == sorted(r["val"]["counter"] for r in rows)
        await asyncio.sleep(0.3)
        offline = len(await buckets.read("alice", "counts"))
        await asyncio.sleep(0.3)
        assert len(await buckets.read("alice", "counts")) == offline  # no sampling while offline
        # it re-arms when the device reconnects
        async with running_device(device, server.tcp_port):
            await _grows(buckets, "counts", offline + 1)
        # and after a server restart (the sampler is rebuilt from the stored bucket)
        await server.stop()
        await server.start()
        restarted = len(await buckets.read("alice", "counts"))
        async with running_device(device, server.tcp_port):
            await _grows(buckets, "counts", restarted + 1)
        # disabling the bucket stops the sampling
        async with aiohttp.ClientSession() as http:
            url = f"{server.http_url}/v1/users/alice/buckets/counts"
            async with http.put(url, json={"enabled": False}, headers=headers) as resp:
                assert resp.status == 200
        async with running_device(device, server.tcp_port):
            await asyncio.sleep(0.2)
            disabled = len(await buckets.read("alice", "counts"))
            await asyncio.sleep(0.4)
            assert len(await buckets.read("alice", "counts")) == disabled
        assert state.counter > 0
