"""Stream hub rules with a fake device link, and the command line (``--demo``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from iotmp import cli
from iotmp.cli.server import run
from iotmp.server.streams import StreamHub, Subscription


class FakeLink:
    """Records START/STOP_STREAM; ``emit`` plays device samples."""

    def __init__(self) -> None:
        self.closed = False
        self.log: list[tuple[str, str, Any]] = []
        self.callbacks: dict[int, Callable[[Any], None]] = {}
        self._next = 0

    async def start_stream(
        self, resource: str, interval_ms: int, on_data: Callable[[Any], None]
    ) -> object:
        self._next += 1
        handle = self._next
        self.log.append(("start", resource, interval_ms))
        self.callbacks[handle] = on_data
        on_data("echo")  # arrives before start_stream returns
        return handle

    async def stop_stream(self, handle: object) -> None:
        assert isinstance(handle, int)
        self.log.append(("stop", "", None))
        self.callbacks.pop(handle)

    def emit(self, value: Any) -> None:
        for callback in list(self.callbacks.values()):
            callback(value)


def _last(link: FakeLink) -> tuple[str, str, Any]:
    return link.log[-1]


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_hub_gcd_rates_and_lifecycle() -> None:
    link: FakeLink | None = FakeLink()
    clock = [0.0]
    hub = StreamHub(lambda device_id: link, clock=lambda: clock[0])
    got: dict[str, list[Any]] = {"a": [], "b": [], "z": []}

    def sink(name: str) -> Callable[[str, Any], None]:
        return lambda resource, value: got[name].append(value)

    a = Subscription("d", "r", 2, sink("a"))
    b = Subscription("d", "r", 3, sink("b"))
    z = Subscription("d", "r", 0, sink("z"))
    hub.subscribe(a)
    hub.subscribe(b)
    await _settle()
    assert link is not None
    # coalesced: one START with gcd(2000, 3000) = 1000 ms
    assert link.log == [("start", "r", 1000)]
    assert got["a"] == ["echo"] and got["b"] == ["echo"]
    hub.subscribe(z)
    await _settle()
    assert link.log[-2:] == [("stop", "", None), ("start", "r", 1000)]
    assert got["z"] == ["echo"]

    # rates: a every 2nd sample, b every 3rd, z every sample (fake clock: 1 s per sample)
    for sub in (a, b, z):
        sub.last_delivery = 0.0
    stream = hub.stream("d", "r")
    assert stream is not None
    for second in range(1, 7):
        clock[0] = float(second)
        link.emit(second)
    assert got["a"][1:] == [2, 4, 6]
    assert got["b"][1:] == [3, 6]
    assert got["z"][1:] == [1, 2, 3, 4, 5, 6]

    # a forced push (write echo) reaches everyone
    hub.push("d", "r", "pushed")
    assert all(values[-1] == "pushed" for values in got.values())

    # device goes away: subscriptions stay, nothing is stopped on the dead link
    dead = link
    link = None
    hub.device_disconnected("d")
    link = FakeLink()
    hub.device_connected("d")
    await _settle()
    assert link.log == [("start", "r", 1000)]
    assert dead.log[-1][0] == "start"

    hub.unsubscribe(b)
    hub.unsubscribe(z)
    await _settle()
    assert _last(link) == ("start", "r", 2000)
    hub.unsubscribe(a)
    await _settle()
    assert _last(link)[0] == "stop"
    assert hub.stream("d", "r") is None
    await hub.close()


async def test_lone_subscriber_gets_one_value_per_interval() -> None:
    """One subscriber at 30 s: pushes inside the interval are not passed on (issue 9)."""
    link = FakeLink()
    clock = [0.0]
    hub = StreamHub(lambda device_id: link, clock=lambda: clock[0])
    got: list[Any] = []
    hub.subscribe(Subscription("d", "count", 30, lambda resource, value: got.append(value)))
    await _settle()
    assert link.log == [("start", "count", 30000)]
    for second in (1, 2, 3):  # pushes a second apart, well inside the 30 s interval
        clock[0] = float(second)
        link.emit(second)
    assert got == ["echo"]
    clock[0] = 30.0
    link.emit(30)  # the interval is over: the next value goes out
    clock[0] = 31.0
    link.emit(31)
    assert got == ["echo", 30]
    await hub.close()


async def test_hub_waits_for_device() -> None:
    link: FakeLink | None = None
    hub = StreamHub(lambda device_id: link)
    got: list[Any] = []
    hub.subscribe(Subscription("d", "r", 0, lambda r, v: got.append(v)))
    await _settle()
    assert got == []
    link = FakeLink()
    hub.device_connected("d")
    await _settle()
    assert link.log == [("start", "r", 0)]
    assert got == ["echo"]
    await hub.close()


# ------------------------------------------------------------------------- CLI


async def _wait_file(path: Path, task: asyncio.Task[int]) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            if task.done():
                raise AssertionError(f"server exited with {task.result()}")
            if path.exists():  # noqa: ASYNC240
                try:
                    data: dict[str, Any] = json.loads(path.read_text())  # noqa: ASYNC240
                    return data
                except ValueError:
                    pass
            await asyncio.sleep(0.02)


def _server_args(argv: list[str]) -> Any:
    """Parsed ``iotmp server ARGV``."""
    return cli.build_parser().parse_args(["server", *argv])


def _demo_args(demo_file: Path) -> Any:
    return _server_args(
        ["--demo", "--demo-file", str(demo_file), "--http-port", "0", "--tcp-port", "0",
         "--no-tls"]
    )  # fmt: skip


async def test_cli_demo(tmp_path: Path, socket_enabled: None) -> None:
    demo_file = tmp_path / "demo" / "demo.json"
    stop = asyncio.Event()
    task = asyncio.create_task(run(_demo_args(demo_file), stop))
    try:
        demo = await _wait_file(demo_file, task)
        assert demo["user"] == "demo"
        assert [d["id"] for d in demo["devices"]] == [
            "env-sensor", "smart-plug", "rgb-lamp", "rgb-strip", "gpio-board", "counter",
            "controller",
        ]  # fmt: skip
        assert all(d["credential"] and d["profile"] for d in demo["devices"])
        assert isinstance(demo["tcp_port"], int) and demo["tcp_port"] > 0
        assert demo["config"]["users"][0]["name"] == "demo"
        headers = {"Authorization": f"Bearer {demo['token']}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(demo["http_url"] + "/v1/users/demo/devices", headers=headers) as resp,
        ):
            assert resp.status == 200
            assert len(await resp.json()) == 7
    finally:
        stop.set()
        assert await task == 0

    # a restart reuses the secrets: the old token stays valid
    demo_file.write_text(json.dumps({**demo, "stale": True}))
    stop = asyncio.Event()
    task = asyncio.create_task(run(_demo_args(demo_file), stop))
    try:
        async with asyncio.timeout(20):
            while True:
                demo2 = await _wait_file(demo_file, task)
                if "stale" not in demo2:
                    break
                await asyncio.sleep(0.02)
        assert demo2["password"] == demo["password"]
        assert [d["credential"] for d in demo2["devices"]] == [
            d["credential"] for d in demo["devices"]
        ]
        headers = {"Authorization": f"Bearer {demo['token']}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(demo2["http_url"] + "/v1/users/demo/devices", headers=headers) as resp,
        ):
            assert resp.status == 200
    finally:
        stop.set()
        assert await task == 0


async def test_cli_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("bogus: 1\n")
    assert await run(_server_args(["--config", str(bad)])) == 2
    assert "unknown configuration keys" in capsys.readouterr().err
    assert await run(_server_args(["--config", str(tmp_path / "none.json")])) == 2
