"""Replay issue 10's attack classes against the server and print the figures.

    python benchmarks/hostile.py --minutes 3

Not part of the test run. Starts ``python -m iotmp server`` subprocesses (the
harness of ``tests/hostile``) and, in rounds until ``--minutes`` are used up
(at least ``--rounds``), runs every attack class while a bystander (another
client of the same server) measures its REST latency and stream gaps. A
baseline round without attack is measured in the same run; the report gives
medians over the rounds and the ratio to the baseline. Then:

* brute force: 20 parallel connections send wrong passwords to
  ``/oauth/token`` for ``--brute-seconds`` under the default throttle
  (0.5 s doubling to 8 s); the time 1,000 checked tries take is extrapolated
  from the checked rate, and the right password from another address is timed;
* 1,100 idle HTTP sockets against a server under ``ulimit -n 1024``;
* ``--restarts`` server restarts 2 s apart: how long after REST answers a
  client's stream delivers again (p100).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from iotmp.device import Device
from iotmp.protocol.codec import encode_message
from iotmp.protocol.message import Message, MessageType
from tests.hostile.harness import (
    PASSWORD,
    USER,
    Bystander,
    ServerProcess,
    credential,
    run_bystander,
    start_server,
    stop_server,
    tracebacks,
)
from tests.hostile.raw import RawDevice
from tests.hostile.test_attacks import _big_connect
from tests.hostile.test_client_recovery import restart_cycles

Attack = Callable[[ServerProcess, aiohttp.ClientSession], Awaitable[None]]


async def no_attack(server: ServerProcess, http: aiohttp.ClientSession) -> None:
    await asyncio.sleep(2.0)


async def regex_filters(server: ServerProcess, http: aiohttp.ClientSession) -> None:
    url = server.ws_url(f"/v2/users/{USER}/events")
    sockets = [await http.ws_connect(url, headers=server.headers) for _ in range(5)]
    try:
        for ws in sockets:
            for pattern in ("((.|.)*)*z", "(a|aa)*b" * 4, "(.*)*" * 20 + "!"):
                await ws.send_json(
                    {"event": "device_state_change", "filters": {"ts": pattern, "device": pattern}}
                )
                await ws.receive_json(timeout=5)
        for _ in range(10):
            churn = await RawDevice.open(server.tcp_port)
            await churn.login(USER, "churn", credential("churn"))
            await churn.close()
            await asyncio.sleep(0.1)
    finally:
        for ws in sockets:
            await ws.close()


async def big_connects(server: ServerProcess, http: aiohttp.ClientSession) -> None:
    data = _big_connect()

    async def one() -> None:
        peer = await RawDevice.open(server.tcp_port)
        with contextlib.suppress(ConnectionError):
            await peer.write(data)
        await peer.closed_by_server(3.0)
        await peer.close()

    await asyncio.gather(*(one() for _ in range(50)))


async def keep_alive_flood(server: ServerProcess, http: aiohttp.ClientSession) -> None:
    flooder = await RawDevice.open(server.tcp_port)
    await flooder.login(USER, "flooder", credential("flooder"))
    with contextlib.suppress(ConnectionError):
        await flooder.write(encode_message(Message(MessageType.KEEP_ALIVE)) * 150_000)
    await flooder.closed_by_server(10.0)
    await flooder.close()


async def subscriptions(server: ServerProcess, http: aiohttp.ClientSession) -> None:
    victim = Device(USER, "victim", credential("victim"), reconnect_delay=0.2)
    victim.output_resource("level", lambda: 1)
    task = asyncio.create_task(victim.run("127.0.0.1", server.tcp_port))
    try:
        await victim.wait_connected(10)
        url = server.ws_url(f"/v3/users/{USER}/devices/victim/resources")
        async with http.ws_connect(url, headers=server.headers) as ws:
            for i in range(10_000):
                await ws.send_str(json.dumps({"resource": f"r{i}", "interval": 1}))
                if i % 100 == 0:
                    await asyncio.sleep(0)  # fair to the other tasks of this loop
            refused = 0
            async with asyncio.timeout(60):
                while refused < 10_000 - 256:
                    frame = await ws.receive_json()
                    refused += "at most" in frame.get("error", {}).get("message", "")
    finally:
        await victim.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def bad_inputs(server: ServerProcess, http: aiohttp.ClientSession) -> None:
    tokens = f"{server.http_url}/v1/users/{USER}/tokens"
    json_headers = {**server.headers, "Content-Type": "application/json"}
    for body in (b'{"expires_in": 0}', b'{"expires_in": NaN}', b'{"expires_in": 1e400}'):
        async with http.post(tokens, data=body, headers=json_headers) as resp:
            assert resp.status < 500, resp.status
    async with http.post(
        server.http_url + "/oauth/token",
        data=b"grant_type=password&username=\xff",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as resp:
        assert resp.status < 500
    for _ in range(100):
        peer = await RawDevice.open(server.tcp_port)
        await peer.write(b"\xff" * 32)
        await peer.closed_by_server(3.0)
        await peer.close()


ATTACKS: dict[str, Attack] = {
    "baseline (no attack)": no_attack,
    "regex filters + device churn": regex_filters,
    "50 unauthenticated 256 KiB CONNECTs": big_connects,
    "300 kB KEEP_ALIVE flood": keep_alive_flood,
    "10,000 subscriptions on one socket": subscriptions,
    "bad inputs + 100 garbage devices": bad_inputs,
}


async def run_attack(
    by: Bystander, attack: Attack, http: aiohttp.ClientSession
) -> dict[str, float]:
    by.reset()
    started = time.monotonic()
    await attack(by.server, http)
    await asyncio.sleep(1.0)
    return {
        "p99_ms": by.rest_p99 * 1000,
        "max_ms": max(by.rest_latencies, default=0) * 1000,
        "gap_ms": by.max_gap * 1000,
        "seconds": time.monotonic() - started,
    }


async def attack_rounds(folder: Path, deadline: float, min_rounds: int) -> None:
    server = start_server(folder)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ATTACKS}
    before = 0
    try:
        async with run_bystander(server) as by, aiohttp.ClientSession() as http:
            rounds = 0
            while rounds < min_rounds or time.monotonic() < deadline:
                for name, attack in ATTACKS.items():
                    results[name].append(await run_attack(by, attack, http))
                rounds += 1
                print(f"  round {rounds} done", flush=True)
    finally:
        stop_server(server)
    lines = server.log_lines()[before:]
    base = statistics.median(r["p99_ms"] for r in results["baseline (no attack)"])
    print(f"\nbystander during each attack (median over {rounds} rounds; ratio = p99 / baseline)")
    print(f"{'attack':40} {'REST p99':>9} {'max':>7} {'x base':>7} {'max gap':>8}")
    for name, runs in results.items():
        p99 = statistics.median(r["p99_ms"] for r in runs)
        worst = max(r["max_ms"] for r in runs)
        gap = max(r["gap_ms"] for r in runs)
        print(f"{name:40} {p99:7.0f}ms {worst:5.0f}ms {p99 / base:7.2f} {gap:6.0f}ms")
    print(f"server log: {len(lines)} lines, {len(tracebacks(lines))} ERROR/traceback lines")


async def _grant(http: aiohttp.ClientSession, url: str, password: str) -> tuple[int, float]:
    started = time.monotonic()
    form = {"grant_type": "password", "username": USER, "password": password}
    async with http.post(url + "/oauth/token", data=form) as resp:
        await resp.read()
        retry = float(resp.headers.get("Retry-After", "0") or 0)
        if resp.status == 429:
            await asyncio.sleep(max(retry, 1.0))
        return resp.status, time.monotonic() - started


async def brute_force(folder: Path, seconds: float) -> None:
    # the default throttle (0.5 s doubling to 8 s), not the suite's fast one
    server = start_server(folder, settings={"login_delay": 0.5, "login_delay_max": 8.0})
    checked = refused = 0
    try:
        async with (
            aiohttp.ClientSession() as attacker,
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            ) as owner,
        ):
            started = time.monotonic()

            async def worker(n: int) -> None:
                nonlocal checked, refused
                i = 0
                while time.monotonic() - started < seconds:
                    status, _ = await _grant(attacker, server.http_url, f"guess-{n}-{i}")
                    i += 1
                    if status == 401:
                        checked += 1
                    else:
                        refused += 1

            workers = [asyncio.create_task(worker(n)) for n in range(20)]
            await asyncio.sleep(seconds / 2)
            status, owner_time = await _grant(owner, server.http_url, PASSWORD)
            await asyncio.gather(*workers)
            elapsed = time.monotonic() - started
    finally:
        stop_server(server)
    rate = checked / elapsed
    print(
        f"\nbrute force, 20 parallel connections for {elapsed:.0f} s: {checked} passwords "
        f"checked ({rate:.2f}/s), {refused} answered 429 unchecked; 1,000 checked tries "
        f"would take about {1000 / rate:.0f} s. Right password from 127.0.0.2 during it: "
        f"HTTP {status} in {owner_time * 1000:.0f} ms"
    )


async def idle_sockets(folder: Path) -> None:
    server = start_server(folder, file_limit=1024)
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    before = len(server.log_lines())
    writers = []
    try:
        for _ in range(1100):
            with contextlib.suppress(OSError):
                writers.append((await asyncio.open_connection(host, int(port)))[1])
        async with aiohttp.ClientSession() as http:
            times = []
            for _ in range(10):
                started = time.monotonic()
                async with http.get(server.http_url + "/v1/server/version") as resp:
                    await resp.read()
                times.append((time.monotonic() - started) * 1000)
    finally:
        for writer in writers:
            writer.close()
        stop_server(server)
    lines = server.log_lines()[before:]
    print(
        f"\n1,100 idle HTTP sockets under ulimit -n 1024: REST answered 10/10, "
        f"max {max(times):.0f} ms; log grew {len(lines)} lines"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="time for the attack rounds")
    parser.add_argument("--rounds", type=int, default=3, help="at least this many rounds")
    parser.add_argument("--brute-seconds", type=float, default=60.0)
    parser.add_argument("--restarts", type=int, default=20)
    args = parser.parse_args()
    deadline = time.monotonic() + args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("attacks", "brute", "idle"):
            (root / name).mkdir()
        print("attack rounds ...", flush=True)
        await attack_rounds(root / "attacks", deadline, args.rounds)
        await brute_force(root / "brute", args.brute_seconds)
        await idle_sockets(root / "idle")
    recoveries = await restart_cycles(args.restarts)
    print(
        f"\n{args.restarts} server restarts 2 s apart: stream back after REST answered in "
        f"median {statistics.median(recoveries):.2f} s, max (p100) {max(recoveries):.2f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
