"""Messages through the server to WebSocket subscribers, against mosquitto and a relay.

N devices each stream the sensor sample (plus ``ts``, the send time) at an aggregate
rate R; one subscriber per device receives its stream. Systems, same clients shape,
same payload bytes, same fan-out, each server in its own child process:

* ``iotmp``: this checkout's server (raw IOTMP TCP devices -> app WebSockets);
* ``before``: the same from ``--server-path DIR`` (e.g. today's code in /work/main);
* ``mosquitto``: /usr/sbin/mosquitto, one topic per device, one subscriber each;
* ``relay``: a plain asyncio relay forwarding each frame's bytes (no parsing).

Every system starts once (with its clients) and stays up; then per round and rate,
the systems in an order rotated each round: offer R msg/s for
warm-up + window seconds, measure in the window the server's CPU (utime+stime of its
process, /proc/<pid>/stat), deliveries and latency (p50/p99, receive time minus
``ts``); rate 0 (``--saturation``) offers as fast as the sockets take it. Printed:
per system and rate, min / median over rounds of delivered msg/s, CPU µs per
message, its ratio to mosquitto's and to the relay's (taken within one round),
p50/p99, and with ``--gc`` the server's GC share of its CPU and longest pause.

    python benchmarks/throughput.py                       # N=100, 5k and 10k msg/s, 3 rounds
    python benchmarks/throughput.py --server-path /work/main --gc --saturation
    python benchmarks/throughput.py --devices 1000 --rates 1000,5000,10000 --uvloop
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
MOSQUITTO = "/usr/sbin/mosquitto"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Child:
    """A child process spoken to in JSON lines."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child {self.proc.args!r} exited ({self.proc.poll()})")
        return dict(json.loads(line))

    def ask(self, obj: dict[str, Any] | str) -> dict[str, Any]:
        self.send(obj)
        return self.read()

    def send(self, obj: dict[str, Any] | str) -> None:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait()


def _env(path: Path, args: argparse.Namespace, gc: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(path))
    env["IOTMP_BENCH_UVLOOP"] = "1" if args.uvloop else "0"
    env["IOTMP_BENCH_GC"] = "1" if gc else "0"
    return env


@dataclass
class Server:
    """A running server under test, with what the clients need to reach it."""

    pid: int
    port: int
    url: str = ""
    token: str = ""
    child: Child | None = None
    proc: subprocess.Popen[bytes] | None = None
    scratch: tempfile.TemporaryDirectory[str] | None = None

    def gc_stats(self) -> dict[str, Any]:
        return self.child.ask("gc") if self.child is not None else {}

    def stop(self) -> None:
        if self.child is not None:
            self.child.send("quit")
            self.child.stop()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        if self.scratch is not None:
            self.scratch.cleanup()


def start_server(system: str, args: argparse.Namespace) -> Server:
    py = sys.executable
    if system in ("iotmp", "before"):
        path = CHECKOUT if system == "iotmp" else Path(args.server_path)
        child = Child(
            [py, str(HERE / "_throughput_server.py"), "--devices", str(args.devices)],
            env=_env(path, args, args.gc),
        )
        info = child.read()
        return Server(child.pid, int(info["tcp_port"]), info["http_url"], info["token"], child)
    if system == "relay":
        child = Child([py, str(HERE / "_throughput_relay.py")], env=_env(CHECKOUT, args, False))
        return Server(child.pid, int(child.read()["port"]), child=None, proc=child.proc)
    scratch = tempfile.TemporaryDirectory(prefix="bench-mosq-")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    conf = Path(scratch.name) / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
        "persistence false\nlog_dest none\n"
    )
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    return Server(proc.pid, port, proc=proc, scratch=scratch)


@dataclass
class Sample:
    """One system, one rate, one round."""

    delivered: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    gc_share: float | None = None
    gc_max_ms: float | None = None
    gc_max_cpu_ms: float | None = None
    gc_collections: list[int] | None = None
    server_cores: float = 0.0


@dataclass
class Results:
    """Samples by (system, rate), in round order."""

    samples: dict[tuple[str, int], list[Sample]] = field(default_factory=dict)

    def add(self, system: str, rate: int, sample: Sample) -> None:
        self.samples.setdefault((system, rate), []).append(sample)


class Bench:
    """One system with its publishers and subscribers, kept up across rounds."""

    def __init__(self, system: str, args: argparse.Namespace) -> None:
        self.system = system
        self.args = args
        self.server = start_server(system, args)
        wire = {"iotmp": "iotmp", "before": "iotmp", "mosquitto": "mqtt"}.get(system, "relay")
        common = ["--system", wire, "--devices", str(args.devices), "--port", str(self.server.port)]
        common += ["--url", self.server.url, "--token", self.server.token]
        env = _env(CHECKOUT, args, False)
        client = [sys.executable, str(HERE / "_throughput_clients.py")]
        self.pub: Child | None = None
        self.sub: Child | None = None
        try:
            self.pub = Child([*client, "--role", "pub", *common], env=env)
            self.pub.read()
            self.sub = Child([*client, "--role", "sub", *common], env=env)
            self.sub.read()
            self.pub.ask({"cmd": "wait_streams"})
        except BaseException:
            self.stop()
            raise
        time.sleep(0.3)

    def measure(self, rate: int) -> Sample:
        """Offer ``rate`` msg/s (0 = as fast as possible); measure one window."""
        args, server = self.args, self.server
        pub, sub = self.pub, self.sub
        assert pub is not None and sub is not None
        probe = args.gc and server.child is not None
        pub.send({"cmd": "stream", "rate": rate, "seconds": args.warmup + args.window + 0.2})
        time.sleep(args.warmup)
        if probe:
            server.gc_stats()
        sub.ask({"cmd": "mark"})
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(args.window)
        cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
        report = sub.ask({"cmd": "report"})
        gc = server.gc_stats() if probe else {}
        pub.read(timeout=args.warmup + args.window + 30)
        count = max(1, int(report["count"]))
        cpu = cpu1 - cpu0
        sample = Sample(count / (t1 - t0), cpu / count * 1e6, report["p50_ms"], report["p99_ms"])
        sample.server_cores = cpu / (t1 - t0)
        if gc:
            sample.gc_share = gc["gc_s"] / cpu if cpu else 0.0
            sample.gc_max_ms = gc["gc_max_pause_s"] * 1000
            sample.gc_max_cpu_ms = gc.get("gc_max_pause_cpu_s", math.nan) * 1000
            sample.gc_collections = gc["collections"]
        _drain(sub, 1.0 if rate else 5.0)
        return sample

    def stop(self) -> None:
        for child in (self.pub, self.sub):
            if child is not None:
                child.stop()
        self.server.stop()


def _drain(sub: Child, limit: float) -> None:
    """Wait until the subscribers stop receiving (queues emptied) or ``limit`` s."""
    deadline = time.monotonic() + limit
    last = -1
    while time.monotonic() < deadline:
        total = int(sub.ask({"cmd": "total"})["total"])
        if total == last:
            return
        last = total
        time.sleep(0.2)


def _fmt(values: list[float], spec: str = ",.0f") -> str:
    if not values or any(math.isnan(v) for v in values):
        return "-"
    return f"{format(min(values), spec)} / {format(statistics.median(values), spec)}"


def report(results: Results, systems: list[str], rates: list[int], markdown: bool) -> None:
    head = [
        "system",
        "rate",
        "delivered msg/s",
        "CPU µs/msg",
        "/ mosquitto",
        "/ relay",
        "p50 ms",
        "p99 ms",
        "server cores",
        "GC % CPU",
        "GC max pause ms (wall / CPU)",
    ]
    rows = []
    for rate in rates:
        for system in systems:
            samples = results.samples.get((system, rate), [])
            if not samples:
                continue
            ratios: dict[str, list[float]] = {}
            for base in ("mosquitto", "relay"):
                others = results.samples.get((base, rate), [])
                ratios[base] = [
                    s.cpu_us / b.cpu_us for s, b in zip(samples, others, strict=False) if b.cpu_us
                ]
            gc_share = [100 * s.gc_share for s in samples if s.gc_share is not None]
            gc_max = [s.gc_max_ms for s in samples if s.gc_max_ms is not None]
            gc_max_cpu = [s.gc_max_cpu_ms for s in samples if s.gc_max_cpu_ms is not None]
            rows.append(
                [
                    system,
                    "max" if rate == 0 else f"{rate:,}",
                    _fmt([s.delivered for s in samples]),
                    _fmt([s.cpu_us for s in samples], ".1f"),
                    _fmt(ratios["mosquitto"], ".2f"),
                    _fmt(ratios["relay"], ".2f"),
                    _fmt([s.p50_ms for s in samples], ".1f"),
                    _fmt([s.p99_ms for s in samples], ".1f"),
                    _fmt([s.server_cores for s in samples], ".2f"),
                    _fmt(gc_share, ".1f") if gc_share else "-",
                    f"{max(gc_max):.1f} / {max(gc_max_cpu):.1f}" if gc_max else "-",
                ]
            )
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100, help="N devices (and subscribers)")
    parser.add_argument("--rates", default="5000,10000", help="aggregate msg/s, comma-separated")
    parser.add_argument("--saturation", action="store_true", help="also offer as fast as possible")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=2.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--systems", default="iotmp,mosquitto,relay")
    parser.add_argument("--server-path", help="also run the server from this checkout ('before')")
    parser.add_argument("--gc", action="store_true", help="GC time and pauses in the server")
    parser.add_argument("--uvloop", action="store_true", help="servers (ours, relay) on uvloop")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", help="write every sample to this file")
    args = parser.parse_args()
    systems = list(dict.fromkeys(s for s in args.systems.split(",") if s))  # each once
    if "before" in systems and not args.server_path:
        parser.error("system 'before' needs --server-path")
    if args.server_path and "before" not in systems:
        systems.insert(0, "before")
    if "mosquitto" in systems and not shutil.which(MOSQUITTO):
        systems.remove("mosquitto")
    rates = [int(r) for r in args.rates.split(",") if r]
    if args.saturation:
        rates.append(0)
    results = Results()
    print(
        f"# N={args.devices} rates={rates} rounds={args.rounds} uvloop={args.uvloop} "
        f"loadavg {Path('/proc/loadavg').read_text().split()[:3]}",
        flush=True,
    )
    benches: dict[str, Bench] = {}
    try:
        for system in systems:  # all up at once: rounds interleave without restarts
            benches[system] = Bench(system, args)
            print(f"# {system} up", file=sys.stderr, flush=True)
        for round_no in range(args.rounds):
            shift = round_no % len(systems)
            order = systems[shift:] + systems[:shift]
            for rate in rates:
                for system in order:
                    results.add(system, rate, benches[system].measure(rate))
            print(f"# round {round_no + 1} done", file=sys.stderr, flush=True)
    finally:
        for bench in benches.values():
            bench.stop()
    print(f"# loadavg after {Path('/proc/loadavg').read_text().split()[:3]}")
    report(results, systems, rates, args.markdown)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {f"{s}@{r}": [vars(x) for x in v] for (s, r), v in results.samples.items()},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
