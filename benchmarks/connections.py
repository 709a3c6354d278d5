"""Idle device connections: server memory per device and CPU per accepted device.

    python benchmarks/connections.py                      # 2,000 devices, 3 rounds
    python benchmarks/connections.py --devices 10000      # the issue 14 target
    python benchmarks/connections.py --server-path /work/main   # before/after, same run

Not part of the test run. Every round starts, one after the other (order rotated
each round), fresh server processes:

* ``ours``: ``iotmp server`` from this checkout (via ``_connections_server.py``)
  with N configured devices (plain credentials in the configuration: a login is a
  ``hmac.compare_digest``, no scrypt, see the launcher);
* ``before`` (with ``--server-path DIR``): the same from another checkout;
* ``bare``: a plain asyncio accept loop (``asyncio.start_server``, one handler
  task per connection) that reads CONNECT, answers OK, sends DESCRIBE, reads the
  answer and holds the socket, echoing KEEP_ALIVEs.

The same client processes (``--clients``, asyncio, raw IOTMP frames built with
``iotmp.protocol``) open N TCP connections, CONNECT, answer DESCRIBE with a
5-resource description, then stay idle (a KEEP_ALIVE every 30 s). Measured on
the server process: RSS (``VmRSS``) before the clients start and once all N are
connected and the server's CPU has settled, per device = delta / N; CPU
(utime + stime from ``/proc/<pid>/stat``) spent in that connect phase, per
accepted device. Ratios to ``bare`` are taken within a round; the report gives
min and median over rounds. ``--profile FILE`` / ``--tracemalloc FILE`` profile
``ours`` in the last round (cProfile of the connect phase / allocations alive
with N connected).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iotmp.protocol.codec import MessageDecoder, encode_message  # noqa: E402
from iotmp.protocol.message import Message, MessageType  # noqa: E402

USER = "bench"
DESCRIPTION: dict[str, Any] = {
    "temperature": {"fn": 2},
    "humidity": {"fn": 2},
    "led": {"fn": 1},
    "reboot": {"fn": 4},
    "location": {"fn": 2},
}
"""What every client answers to DESCRIBE (a small sensor node)."""
KEEP_ALIVE_PERIOD = 30.0
_READY = re.compile(r"iotmp server: http \S+, https \S+, device tcp (\d+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (every process holds N sockets)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def device_id(index: int) -> str:
    return f"d{index:05d}"


def credential(index: int) -> str:
    return f"pw-{index:05d}"


# ---------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def settle(pid: int, *, quiet: float = 0.3, timeout: float = 60.0) -> float:
    """Wait until ``pid`` spends (almost) no CPU for ``quiet`` s; return its CPU seconds."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now - last <= 1.5 / _CLK_TCK:
            return now
        last = now
    return last


# ---------------------------------------------------------------------------- clients


class FrameReader:
    """Messages from a stream, one at a time (a read may carry several)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.decoder = MessageDecoder()
        self.ready: list[Message] = []

    async def next(self) -> Message:
        while not self.ready:
            data = await self.reader.read(4096)
            if not data:
                raise ConnectionError("connection closed")
            self.ready.extend(self.decoder.feed(data))
        return self.ready.pop(0)


async def one_device(
    port: int, index: int, writers: list[asyncio.StreamWriter], readers: list[Any]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = FrameReader(reader)
    writer.write(
        encode_message(
            Message.build(
                MessageType.CONNECT,
                stream_id=1,
                payload=[USER, device_id(index), credential(index)],
            )
        )
    )
    reply = await frames.next()
    if reply.type != MessageType.OK:
        raise ConnectionError(f"CONNECT refused: {reply}")
    describe = await frames.next()
    if describe.type != MessageType.DESCRIBE:
        raise ConnectionError(f"expected DESCRIBE, got {describe}")
    writer.write(
        encode_message(
            Message.build(MessageType.OK, stream_id=describe.stream_id, payload=DESCRIPTION)
        )
    )
    writers.append(writer)
    readers.append(reader)


async def run_clients(port: int, first: int, count: int, concurrency: int) -> None:
    raise_file_limit()
    writers: list[asyncio.StreamWriter] = []
    readers: list[Any] = []
    gate = asyncio.Semaphore(concurrency)
    failures = 0

    async def guarded(index: int) -> None:
        nonlocal failures
        async with gate:
            try:
                await one_device(port, index, writers, readers)
            except (OSError, ConnectionError):
                failures += 1

    await asyncio.gather(*(guarded(i) for i in range(first, first + count)))
    print(f"connected {len(writers)} failed {failures}", flush=True)
    keep_alive = encode_message(Message(MessageType.KEEP_ALIVE))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KEEP_ALIVE_PERIOD):
                await stop.wait()
        if not stop.is_set():
            for writer in writers:
                if not writer.is_closing():
                    writer.write(keep_alive)  # echoes pile up in the reader buffers: tiny
    for writer in writers:
        writer.transport.abort()


# ---------------------------------------------------------------------------- bare server


async def bare_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    frames = FrameReader(reader)
    try:
        connect = await frames.next()
        if connect.type != MessageType.CONNECT:
            return
        writer.write(encode_message(Message.build(MessageType.OK, stream_id=connect.stream_id)))
        writer.write(encode_message(Message.build(MessageType.DESCRIBE, stream_id=2)))
        await frames.next()
        frames.ready.clear()
        keep_alive = encode_message(Message(MessageType.KEEP_ALIVE))
        while data := await reader.read(4096):
            for message in frames.decoder.feed(data):
                if message.type == MessageType.KEEP_ALIVE:
                    writer.write(keep_alive)
    except ConnectionError:
        pass
    finally:
        writer.transport.abort()


async def run_bare_server() -> None:
    raise_file_limit()
    server = await asyncio.start_server(bare_connection, "127.0.0.1", 0, backlog=1024)
    print(f"iotmp server: http -, https -, device tcp {server.sockets[0].getsockname()[1]}")
    sys.stdout.flush()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


# ---------------------------------------------------------------------------- parent


@dataclass
class Measurement:
    system: str
    devices: int
    idle_rss_kib: int
    rss_per_device: float  # bytes
    cpu_per_device: float  # seconds
    failures: int


@dataclass
class System:
    name: str
    path: Path | None  # None: the bare server
    results: list[Measurement] = field(default_factory=list)


def server_config(folder: Path, devices: int) -> Path:
    config = {
        "host": "127.0.0.1",
        "http_port": 0,
        "tcp_port": 0,
        "tls_port": None,
        "https_port": None,
        "secret": "connections-benchmark-secret-0123456789",
        "data_dir": str(folder / "data"),
        "users": [{"name": USER, "password": "bench-password"}],
        "devices": [
            {"id": device_id(i), "user": USER, "credential": credential(i)} for i in range(devices)
        ],
        # All clients share 127.0.0.1: allow their handshakes in flight.
        "limits": {"unauthenticated_per_address": 4096, "unauthenticated_total": 4096},
    }
    path = folder / "server.json"
    path.write_text(json.dumps(config))
    return path


def start_server(
    system: System, folder: Path, devices: int, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int, Path]:
    log_path = folder / f"{system.name}.log"
    if system.path is None:
        command = [sys.executable, str(Path(__file__).resolve()), "--bare-server"]
    else:
        command = [
            sys.executable,
            str(Path(__file__).resolve().parent / "_connections_server.py"),
            "--path",
            str(system.path),
            "--config",
            str(server_config(folder, devices)),
        ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            preexec_fn=raise_file_limit,  # noqa: PLW1509 - setrlimit only
        )
    deadline = time.monotonic() + 600
    while True:
        match = _READY.search(log_path.read_text(errors="replace"))
        if match:
            return proc, int(match.group(1)), log_path
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{system.name} did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(
    system: System,
    devices: int,
    clients: int,
    concurrency: int,
    *,
    profile: Path | None = None,
    trace: Path | None = None,
    gc_file: Path | None = None,
) -> Measurement:
    env: dict[str, str] = {}
    if gc_file is not None:
        env["IOTMP_BENCH_GC"] = str(gc_file)
    if profile is not None:
        env["IOTMP_BENCH_PROFILE"] = str(profile)
    if trace is not None:
        env["IOTMP_BENCH_TRACEMALLOC"] = str(trace)
    with tempfile.TemporaryDirectory(prefix="iotmp-conns-") as scratch:
        folder = Path(scratch)
        server, port, log_path = start_server(system, folder, devices, env)
        client_procs: list[subprocess.Popen[str]] = []
        try:
            cpu_before = settle(server.pid)
            rss_before = rss_kib(server.pid)
            if env:
                server.send_signal(signal.SIGUSR1)
                time.sleep(0.5)
                cpu_before = settle(server.pid)
            share = -(-devices // clients)
            for k in range(clients):
                first, count = k * share, min(share, devices - k * share)
                client_procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(Path(__file__).resolve()),
                            "--client",
                            str(port),
                            str(first),
                            str(count),
                            str(concurrency),
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                        preexec_fn=raise_file_limit,  # noqa: PLW1509 - setrlimit only
                    )
                )
            failures = 0
            for proc in client_procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                match = re.match(r"connected (\d+) failed (\d+)", line)
                if not match:
                    raise RuntimeError(f"client failed: {line!r}")
                failures += int(match.group(2))
            cpu_after = settle(server.pid)
            rss_after = rss_kib(server.pid)
            if env:
                server.send_signal(signal.SIGUSR2)
                time.sleep(2.0 if trace is None else 20.0)
        finally:
            for proc in client_procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in client_procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            stop(server)
        errors = [
            line
            for line in log_path.read_text(errors="replace").splitlines()
            if " ERROR " in line or line.startswith("Traceback")
        ]
        if errors:
            print(f"  {system.name}: {len(errors)} error lines, first: {errors[0]}")
        accepted = devices - failures
        return Measurement(
            system.name,
            accepted,
            rss_before,
            (rss_after - rss_before) * 1024 / max(1, accepted),
            (cpu_after - cpu_before) / max(1, accepted),
            failures,
        )


def summary(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes in flight each")
    parser.add_argument("--server-path", type=Path, help="another checkout measured as 'before'")
    parser.add_argument("--only", choices=("ours", "before", "bare"), action="append")
    parser.add_argument("--profile", type=Path, help="cProfile of ours' connect phase (last round)")
    parser.add_argument("--tracemalloc", type=Path, help="allocations of ours (last round)")
    parser.add_argument("--gc", type=Path, help="GC CPU seconds, ours (last round)")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--client", nargs=4, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(run_clients(*args.client))
        return
    if args.bare_server:
        asyncio.run(run_bare_server())
        return

    raise_file_limit()
    systems = [System("bare", None), System("ours", ROOT)]
    if args.server_path is not None:
        systems.append(System("before", args.server_path.resolve()))
    if args.only:
        systems = [s for s in systems if s.name in args.only or s.name == "bare"]
    print(
        f"# {args.devices} devices, {args.clients} client processes, {args.rounds} rounds, "
        f"load average {Path('/proc/loadavg').read_text().split()[:3]}"
    )
    for round_ in range(args.rounds):
        shift = round_ % len(systems)
        last = round_ == args.rounds - 1
        for system in systems[shift:] + systems[:shift]:
            ours = system.name == "ours"
            result = measure(
                system,
                args.devices,
                args.clients,
                args.concurrency,
                profile=args.profile if ours and last else None,
                trace=args.tracemalloc if ours and last else None,
                gc_file=args.gc if ours and last else None,
            )
            system.results.append(result)
            print(
                f"round {round_ + 1} {system.name:6s}: "
                f"idle RSS {result.idle_rss_kib / 1024:6.1f} MiB, "
                f"{result.rss_per_device / 1024:6.2f} KiB/device, "
                f"{result.cpu_per_device * 1000:6.3f} ms CPU/device, {result.failures} failed",
                flush=True,
            )
    bare = systems[0].results
    print(
        "\n| system | idle RSS (MiB) | KiB per device min / median "
        "| ms CPU per accept min / median | RSS ratio to bare min / median "
        "| CPU ratio to bare min / median |"
    )
    print("|---|---|---|---|---|---|")
    for system in systems:
        rows = system.results
        rss = [r.rss_per_device / 1024 for r in rows]
        cpu = [r.cpu_per_device * 1000 for r in rows]
        pairs = list(zip(rows, bare, strict=True))
        rss_ratio = [r.rss_per_device / max(1.0, b.rss_per_device) for r, b in pairs]
        cpu_ratio = [r.cpu_per_device / max(1e-9, b.cpu_per_device) for r, b in pairs]
        idle = statistics.median(r.idle_rss_kib / 1024 for r in rows)
        print(
            f"| {system.name} | {idle:.1f} | {summary(rss)} | {summary(cpu)} | "
            f"{summary(rss_ratio)} | {summary(cpu_ratio)} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps({s.name: [r.__dict__ for r in s.results] for s in systems}, indent=1)
        )


if __name__ == "__main__":
    main()
