"""Harness of the hostile-client suite (and of ``benchmarks/hostile.py``).

The server runs as ``python -m iotmp server`` with its log in a file, so an
attack that blocks the server's event loop shows up in what a *bystander*
measures (REST latency, stream gaps) and every log line the attack causes can
be counted. The bystander lives in the test process: a device that pushes a
sample every 0.1 s, a WebSocket client subscribed to it and a REST client
reading it in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import resource
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from iotmp.device import Device
from iotmp.server.auth import TokenAuthority

USER = "alice"
PASSWORD = "pw-alice-0123"
DEVICES = ("bystander", "victim", "flooder", "burst", "churn", "spray")
PUSH_PERIOD = 0.1
REST_P99_LIMIT = 0.250
STREAM_GAP_LIMIT = 1.0
_READY = re.compile(r"iotmp server: http (\S+), https \S+, device tcp (\d+)")


def credential(device_id: str) -> str:
    return f"pw-{device_id}"


@dataclass
class ServerProcess:
    """A server subprocess: its URLs, a token and its log."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    http_url: str
    tcp_port: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def log_lines(self) -> list[str]:
        """The server's log without the access log (one line per request by design:
        the bystander's own requests are not lines an attack made the server write)."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [line for line in text.splitlines() if " iotmp.server.access: " not in line]

    def device_url(self, device_id: str, tail: str = "") -> str:
        return f"{self.http_url}/v3/users/{USER}/devices/{device_id}{tail}"

    def ws_url(self, path: str) -> str:
        return self.http_url.replace("http://", "ws://", 1) + path


def server_config(secret: str, **limits: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "http_port": 0,
        "tcp_port": 0,
        "tls_port": None,
        "secret": secret,
        "request_timeout": 5,
        "login_delay": 0.05,
        "login_delay_max": 0.4,
        "users": [{"name": USER, "password": PASSWORD}],
        "devices": [{"id": d, "user": USER, "credential": credential(d)} for d in DEVICES],
        "limits": {"handshake_timeout": 2, "http_header_timeout": 1, "http_idle_timeout": 3}
        | limits,
    }


def start_server(
    folder: Path,
    *,
    file_limit: int | None = None,
    settings: dict[str, Any] | None = None,
    **limits: Any,
) -> ServerProcess:
    """Start ``python -m iotmp server`` (optionally under ``ulimit -n file_limit``).

    ``settings`` replace top-level configuration keys, ``limits`` entries of ``limits``.
    """
    secret = secrets.token_urlsafe(32)
    config = folder / "server.json"
    settings = {"data_dir": str(folder / "data"), **(settings or {})}
    config.write_text(json.dumps(server_config(secret, **limits) | settings))
    log_path = folder / "server.log"

    def limit_files() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmp", "server", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_files,  # noqa: PLW1509 - only setrlimit, no locks taken
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + 30
    while True:
        match = _READY.search(log_path.read_text(errors="replace"))
        if match:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
        time.sleep(0.05)

    async def check_password(user: str, password: str) -> bool:
        return (user, password) == (USER, PASSWORD)

    authority = TokenAuthority(
        secret,
        server_name="hostile",
        known_user=lambda user: user == USER,
        check_password=check_password,
    )
    return ServerProcess(
        proc, log_path, match.group(1), int(match.group(2)), authority.issue_access_token(USER)
    )


def stop_server(server: ServerProcess) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def tracebacks(lines: list[str]) -> list[str]:
    """Log lines that show an ERROR or a traceback."""
    return [
        line
        for line in lines
        if " ERROR " in line or line.startswith("Traceback") or "exception was never" in line
    ]


# ----------------------------------------------------------------------------- bystander


@dataclass
class Bystander:
    """Measures what another user sees while an attack runs."""

    server: ServerProcess
    http: aiohttp.ClientSession
    rest_latencies: list[float] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)
    rest_errors: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.rest_latencies.clear()
        self.frame_times.clear()
        self.rest_errors.clear()

    @property
    def rest_p99(self) -> float:
        if len(self.rest_latencies) < 2:
            return float("inf")
        return statistics.quantiles(self.rest_latencies, n=100, method="inclusive")[98]

    @property
    def max_gap(self) -> float:
        times = self.frame_times
        if len(times) < 2:
            return float("inf")
        return max(b - a for a, b in itertools.pairwise(times))

    def report(self) -> str:
        return (
            f"REST p99 {self.rest_p99 * 1000:.0f} ms over {len(self.rest_latencies)} calls "
            f"(max {max(self.rest_latencies, default=0) * 1000:.0f} ms), stream max gap "
            f"{self.max_gap * 1000:.0f} ms over {len(self.frame_times)} frames"
        )

    def assert_unharmed(self) -> None:
        assert not self.rest_errors, self.rest_errors[:5]
        assert self.rest_p99 < REST_P99_LIMIT, self.report()
        assert self.max_gap < STREAM_GAP_LIMIT, self.report()


async def _rest_loop(bystander: Bystander) -> None:
    url = bystander.server.device_url("bystander", "/resources/count")
    while True:
        started = time.monotonic()
        try:
            async with bystander.http.get(url, headers=bystander.server.headers) as resp:
                await resp.read()
                if resp.status != 200:
                    bystander.rest_errors.append(f"HTTP {resp.status}")
        except aiohttp.ClientError as exc:
            bystander.rest_errors.append(repr(exc))
        bystander.rest_latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.05)


async def _stream_loop(bystander: Bystander) -> None:
    server = bystander.server
    url = server.ws_url(f"/v3/users/{USER}/devices/bystander/resources/count")
    async with bystander.http.ws_connect(url, headers=server.headers) as ws:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and '"signal":"data"' in msg.data:
                bystander.frame_times.append(time.monotonic())


async def _push_loop(device: Device) -> None:
    while True:
        await asyncio.sleep(PUSH_PERIOD)
        with contextlib.suppress(Exception):
            await device.stream("count")


@contextlib.asynccontextmanager
async def run_bystander(server: ServerProcess) -> AsyncIterator[Bystander]:
    """A device pushing every 0.1 s, a client streaming it and one reading it over REST."""
    # asyncio debug mode (on under Home Assistant's test plugin) slows the measuring
    # process itself so much that it would measure itself, not the server
    loop = asyncio.get_running_loop()
    debug = loop.get_debug()
    loop.set_debug(False)
    counter = iter(range(10**9))
    device = Device(USER, "bystander", credential("bystander"), reconnect_delay=0.2)
    device.output_resource("count", lambda: next(counter))
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(device.run("127.0.0.1", server.tcp_port))]
    async with aiohttp.ClientSession() as http:
        by = Bystander(server, http)
        await device.wait_connected(10)
        await wait_for(lambda: _online(server, "bystander", http), 10)
        tasks += [
            asyncio.create_task(_push_loop(device)),
            asyncio.create_task(_stream_loop(by)),
            asyncio.create_task(_rest_loop(by)),
        ]
        await wait_for_sync(lambda: len(by.frame_times) >= 3 and len(by.rest_latencies) >= 3, 10)
        by.reset()
        try:
            yield by
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await device.stop()
            loop.set_debug(debug)


async def _online(server: ServerProcess, device_id: str, http: aiohttp.ClientSession) -> bool:
    url = f"{server.http_url}/v1/users/{USER}/devices/{device_id}"
    async with http.get(url, headers=server.headers) as resp:
        body = await resp.json()
    return bool(body.get("connection", {}).get("active"))


async def wait_for(check: Callable[[], Any], timeout: float) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def wait_for_sync(check: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def measure_during(
    bystander: Bystander, attack: Callable[[], Any], *, settle: float = 1.0
) -> Any:
    """Run ``attack`` with the bystander measuring, plus ``settle`` s after it.

    The attack runs in a thread with its own event loop, so that the attacker's
    own work does not delay the bystander's loop: what the bystander sees is the
    server's doing. (Sockets it uses must be opened inside ``attack``.)
    """
    bystander.reset()
    result = await asyncio.to_thread(asyncio.run, attack())
    await asyncio.sleep(settle)
    print(f"bystander during attack: {bystander.report()}")
    return result
