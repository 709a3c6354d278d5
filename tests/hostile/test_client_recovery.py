"""Issue 10 item 11: a client's stream comes back quickly after server restarts.

The server restarts every 2 s; in every cycle the client's stream (default
backoff) must deliver data again within 3 s of the server answering REST.
The fuzz script (``benchmarks/hostile.py``) runs 20 cycles.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from iotmp.client import IotmpApiClient
from iotmp.device import Device
from iotmp.server.testing import TestDevice, run_test_server

pytestmark = pytest.mark.timeout(120)
CYCLES = 8
RECOVERY_LIMIT = 3.0


async def _rest_up(http: aiohttp.ClientSession, url: str) -> float:
    while True:
        try:
            async with http.get(url + "/v1/server/version") as resp:
                if resp.status == 200:
                    return time.monotonic()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)


async def restart_cycles(cycles: int, period: float = 2.0) -> list[float]:
    """Restart a server ``cycles`` times; return per cycle: REST answering -> data again."""
    async with run_test_server([TestDevice("lamp", credential="pw")]) as server:
        counter = iter(range(10**9))
        device = Device(server.user, "lamp", "pw", reconnect_delay=0.2, jitter=0)
        device.output_resource("count", lambda: next(counter))
        device_task = asyncio.create_task(device.run("127.0.0.1", server.tcp_port))
        frames: list[float] = []

        def on_data(_resource: str, _value: Any) -> None:
            frames.append(time.monotonic())

        async def push() -> None:
            while True:
                await asyncio.sleep(0.05)
                await device.stream("count")

        pusher = asyncio.create_task(push())
        recoveries: list[float] = []
        async with aiohttp.ClientSession() as http:
            client = IotmpApiClient(http, server.http_url, server.issue_token())
            stream = client.resource_stream("lamp", on_data, lambda _up: None)
            stream.subscribe("count")
            stream_task = asyncio.create_task(stream.run())
            try:
                await server.wait_device_connected("lamp")
                async with asyncio.timeout(10):
                    while not frames:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                for _ in range(cycles):
                    started = time.monotonic()
                    await server.stop()
                    await server.start()
                    rest_at = await _rest_up(http, server.http_url)
                    seen = len(frames)
                    async with asyncio.timeout(15):
                        while not [t for t in frames[seen:] if t > rest_at]:  # noqa: ASYNC110
                            await asyncio.sleep(0.01)
                    recoveries.append(frames[-1] - rest_at)
                    await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))
            finally:
                await stream.close()
                await asyncio.gather(stream_task, return_exceptions=True)
                pusher.cancel()
                await device.stop()
                device_task.cancel()
                await asyncio.gather(pusher, device_task, return_exceptions=True)
    return recoveries


async def test_stream_is_back_within_3_s_of_rest_after_each_restart() -> None:
    recoveries = await restart_cycles(CYCLES)
    print(f"recovery after restart: max {max(recoveries):.2f} s, all {recoveries}")
    assert len(recoveries) == CYCLES
    assert max(recoveries) < RECOVERY_LIMIT, recoveries
