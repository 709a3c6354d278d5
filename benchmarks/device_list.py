"""Device list benchmark: ``GET /v1/users/{u}/devices`` with 10,000 devices (issue 14).

Run: ``python benchmarks/device_list.py [--rounds N] [--devices N] [--connected N]
[--server-path DIR ...] [--uvloop] [--markdown]``.

Each system is a server in a child process (``PYTHONPATH`` = this checkout, or a
``--server-path`` checkout such as ``/work/main`` for the code before issue 14),
started by :func:`iotmp.server.testing.run_test_server` on loopback. Its devices
are put straight into the registry (creating them through REST costs a scrypt
hash each); ``--connected`` of them log in over TCP from this process.
``--uvloop`` adds this checkout again on uvloop's event loop (the code before
issue 14 cannot serve HTTP on uvloop: its connection guard asserted asyncio's
transport class).

Per round, systems and queries interleaved, each query is sent ``--repeat``
times in a row (a tenth of that for the full list) and we take:

* server CPU per request: the child's CPU time (``/proc/<pid>/task/*/schedstat``,
  nanoseconds, every thread) over the batch, divided by the requests;
* client wall per request: the median request time seen here;
* baseline: ``json.dumps`` of the same records (parsed from the answer, so
  built beforehand), CPU time in this process, in the same round.

Printed: min and median over the rounds, and the ratios to the first system
and to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iotmp.device import Device  # noqa: E402
from iotmp.protocol.session import Session  # noqa: E402

USER = "bench"
ROOMS = ("kitchen", "hall", "attic", "garage", "bath", "office", "porch", "cellar", "lab", "shed")
QUERIES: dict[str, str] = {
    "full list": "",
    "count=50": "count=50",
    "count=50&index=5000": "count=50&index=5000",
    "name=kitchen (1/10)": "name=kitchen",
    "sort=name&order=desc&count=50": "sort=name&order=desc&count=50",
}
FULL_LIST_SHARE = 10  # the full list is sent --repeat / 10 times

# The child: a test server with the devices (a JSON line on stdin) in its registry;
# prints its addresses, serves until its stdin closes.
CHILD = r"""
import asyncio, json, sys
from iotmp.server.config import DeviceConfig
from iotmp.server.testing import run_test_server

loop, user = sys.argv[1], sys.argv[2]
devices = json.loads(sys.stdin.readline())

async def main() -> None:
    async with run_test_server(user=user, keep_alive=600) as server:
        registry = server.server.registry
        for device_id, name, kind in devices:
            registry.add(DeviceConfig(device_id, user, "pw-" + device_id, name=name,
                                      description="benchmark device", type=kind))
        print(json.dumps({"http_url": server.http_url, "tcp_port": server.tcp_port,
                          "token": server.token}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

if loop == "uvloop":
    import uvloop
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
else:
    asyncio.run(main())
"""


def fleet(count: int) -> list[tuple[str, str, str]]:
    """(id, name, type) of ``count`` devices, names in an order unlike the ids'."""
    numbers = list(range(count))
    random.Random(14).shuffle(numbers)
    kinds = ("Generic", "MQTT", "HTTP")
    return [
        (f"dev{i:05d}", f"{ROOMS[i % len(ROOMS)]} sensor {numbers[i]:05d}", kinds[i % 3])
        for i in range(count)
    ]


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in nanoseconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


@dataclass
class System:
    """One server under test."""

    name: str
    path: Path
    loop: str
    process: subprocess.Popen[str] | None = None
    http_url: str = ""
    tcp_port: int = 0
    token: str = ""
    sessions: list[Session] = field(default_factory=list)

    def start(self, devices: list[tuple[str, str, str]]) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.path), "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, self.loop, USER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            cwd="/",
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(devices) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the server did not start")
        info = json.loads(line)
        self.http_url, self.tcp_port, self.token = info["http_url"], info["tcp_port"], info["token"]

    async def connect(self, device_ids: list[str]) -> None:
        for device_id in device_ids:
            device = Device(USER, device_id, "pw-" + device_id)
            self.sessions.append(await device.connect("127.0.0.1", self.tcp_port))

    async def stop(self) -> None:
        for session in self.sessions:
            await session.close("benchmark done")
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Sample:
    """One query on one system in one round, per request."""

    server_ms: float
    wall_ms: float
    json_ms: float
    body_bytes: int
    records: int


async def measure(http: aiohttp.ClientSession, system: System, query: str, repeat: int) -> Sample:
    """Send ``query`` ``repeat`` times; server CPU, client wall and the json.dumps baseline."""
    assert system.process is not None
    url = f"{system.http_url}/v1/users/{USER}/devices?{query}"
    headers = {"Authorization": f"Bearer {system.token}"}
    walls: list[float] = []
    body = b""
    before = cpu_ns(system.process.pid)
    for _ in range(repeat):
        start = time.perf_counter()
        async with http.get(url, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{system.name} {query}: HTTP {resp.status}")
        walls.append(time.perf_counter() - start)
    server_ns = cpu_ns(system.process.pid) - before
    records = json.loads(body)
    cpu_start = time.process_time()
    for _ in range(repeat):
        json.dumps(records, separators=(",", ":"), ensure_ascii=False)
    json_s = time.process_time() - cpu_start
    return Sample(
        server_ms=server_ns / repeat / 1e6,
        wall_ms=statistics.median(walls) * 1000,
        json_ms=json_s / repeat * 1000,
        body_bytes=len(body),
        records=len(records),
    )


@contextlib.asynccontextmanager
async def running(systems: list[System], args: argparse.Namespace) -> AsyncIterator[None]:
    devices = fleet(args.devices)
    try:
        for system in systems:  # blocks this loop: no devices connected yet
            system.start(devices)
        for system in systems:
            await system.connect([d[0] for d in devices[: args.connected]])
        yield
    finally:
        for system in systems:
            await system.stop()


async def run(args: argparse.Namespace) -> dict[tuple[str, str], list[Sample]]:
    systems = [System("this (asyncio)", ROOT, "asyncio")]
    systems += [System(f"{p} (asyncio)", p, "asyncio") for p in args.server_path]
    if args.uvloop:  # this checkout only: before issue 14 the HTTP listener refused uvloop
        systems.append(System("this (uvloop)", ROOT, "uvloop"))
    results: dict[tuple[str, str], list[Sample]] = {}
    async with running(systems, args), aiohttp.ClientSession() as http:
        for system in systems:  # warm up: imports, first record caches
            for query in QUERIES.values():
                await measure(http, system, query, 1)
        for round_no in range(args.rounds):
            order = systems if round_no % 2 == 0 else systems[::-1]
            for label, query in QUERIES.items():
                repeat = args.repeat // FULL_LIST_SHARE if query == "" else args.repeat
                for system in order:
                    sample = await measure(http, system, query, max(repeat, 1))
                    results.setdefault((system.name, label), []).append(sample)
    return results


def report(results: dict[tuple[str, str], list[Sample]], markdown: bool) -> None:
    systems = list(dict.fromkeys(name for name, _ in results))
    first = systems[0]
    print(f"load average: {Path('/proc/loadavg').read_text().strip()}")
    header = (
        "query",
        "system",
        "server CPU ms min / median",
        "wall ms median",
        f"CPU vs {first}",
        "CPU vs json.dumps",
        "records, bytes",
    )
    rows: list[tuple[str, ...]] = []
    for label in QUERIES:
        base = results[(first, label)]
        for name in systems:
            samples = results[(name, label)]
            cpu = [s.server_ms for s in samples]
            ratio_first = [s.server_ms / b.server_ms for s, b in zip(samples, base, strict=True)]
            ratio_json = [s.server_ms / max(s.json_ms, 1e-6) for s in samples]
            rows.append(
                (
                    label,
                    name,
                    f"{min(cpu):.2f} / {statistics.median(cpu):.2f}",
                    f"{statistics.median(s.wall_ms for s in samples):.2f}",
                    f"{min(ratio_first):.2f}-{statistics.median(ratio_first):.2f}",
                    f"{min(ratio_json):.2f}-{statistics.median(ratio_json):.2f}",
                    f"{samples[0].records}, {samples[0].body_bytes}",
                )
            )
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print("ratios: min-median over the rounds; json.dumps: the same records, in this process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--connected", type=int, default=5, help="devices logged in over TCP")
    parser.add_argument(
        "--repeat", type=int, default=20, help="requests per query and round (full list: 1/10)"
    )
    parser.add_argument(
        "--server-path",
        action="append",
        default=[],
        help="another checkout to compare with (e.g. /work/main); repeatable",
    )
    parser.add_argument("--uvloop", action="store_true", help="this checkout on uvloop as well")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    args.server_path = [Path(p).resolve() for p in args.server_path]
    report(asyncio.run(run(args)), args.markdown)


if __name__ == "__main__":
    main()
