"""Idle ``iotmp server``: RSS and loaded modules at the first start and at a restart.

    python benchmarks/idle_server.py [--rounds 3] [--server-path OTHER_CHECKOUT]

Not part of the test run. Each round (order rotated) starts, one after the other:
``ours`` (this checkout) and ``before`` (``--server-path``) twice on one fresh data
folder -- the first start creates and migrates the database, the restart finds it at
the newest revision (what a server does every day) -- and ``bare`` (an asyncio accept
loop, benchmarks/connections.py) once. The servers run through
benchmarks/_connections_server.py with no devices configured. Measured once each
process is listening and its CPU has settled: ``VmRSS``, then ``len(sys.modules)`` and
the modules of alembic, mako, pygments, cryptography and jwt (written by the launcher
on SIGUSR1 + SIGUSR2). Min / median over rounds.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from pathlib import Path

from connections import ROOT, System, rss_kib, settle, start_server, stop

WATCHED = ("sqlalchemy", "alembic", "mako", "pygments", "cryptography", "jwt")


def _modules(gc_file: Path, timeout: float = 30) -> dict[str, int]:
    """Module counts the launcher wrote (``total`` and the :data:`WATCHED` packages)."""
    path = Path(f"{gc_file}.modules")
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no module list in {path}")
        time.sleep(0.1)
    time.sleep(0.2)
    lines = path.read_text().splitlines()
    counts = {"total": int(lines[0].split()[0])}
    for line in lines[1:]:
        count, name = line.split()
        counts[name] = int(count)
    return counts


def measure_start(system: System, folder: Path) -> tuple[int, dict[str, int]]:
    gc_file = folder / f"{system.name}-gc.txt"
    Path(f"{gc_file}.modules").unlink(missing_ok=True)
    env = {"IOTMP_BENCH_GC": str(gc_file)} if system.path is not None else {}
    server, _port, _log = start_server(system, folder, 0, env)
    try:
        settle(server.pid)
        rss = rss_kib(server.pid)
        modules: dict[str, int] = {}
        if system.path is not None:
            server.send_signal(signal.SIGUSR1)
            time.sleep(0.3)
            server.send_signal(signal.SIGUSR2)
            modules = _modules(gc_file)
    finally:
        stop(server)
    return rss, modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-path", type=Path, help="another checkout measured as 'before'")
    args = parser.parse_args()
    systems = [System("ours", ROOT), System("bare", None)]
    if args.server_path:
        systems.insert(1, System("before", args.server_path.resolve()))
    rows: dict[str, list[tuple[int, dict[str, int]]]] = {}
    for index in range(args.rounds):
        order = systems[index % len(systems) :] + systems[: index % len(systems)]
        for system in order:
            with tempfile.TemporaryDirectory(prefix="iotmp-idle-") as scratch:
                folder = Path(scratch)
                starts = ["first start", "restart"] if system.path is not None else ["idle"]
                for start in starts:
                    rss, modules = measure_start(system, folder)
                    rows.setdefault(f"{system.name}, {start}", []).append((rss, modules))
                    counts = " ".join(f"{k} {v}" for k, v in modules.items() if k in WATCHED)
                    print(
                        f"round {index + 1} {system.name:6} {start:11} RSS {rss / 1024:6.1f} MiB"
                        f"  modules {modules.get('total', '-')}  {counts}",
                        flush=True,
                    )
    print("\n| server | idle RSS min / median (MiB) | modules | " + " | ".join(WATCHED) + " |")
    print("|---|---|---|" + "---|" * len(WATCHED))
    for name, results in rows.items():
        mib = [r / 1024 for r, _ in results]
        last = results[-1][1]
        cells = " | ".join(str(last.get(p, 0)) if last else "-" for p in WATCHED)
        print(
            f"| {name} | {min(mib):.1f} / {statistics.median(mib):.1f} | "
            f"{last.get('total', '-')} | {cells} |"
        )


if __name__ == "__main__":
    main()
