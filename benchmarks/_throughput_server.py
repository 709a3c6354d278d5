"""Child process of benchmarks/throughput.py: the IOTMP server under test, alone.

Runs :func:`iotmp.server.testing.run_test_server` with devices ``d0..d{N-1}`` (user
``bench``, credential ``pw``) and prints one JSON line (ports, token). The ``iotmp``
package comes from ``PYTHONPATH`` (``--server-path`` of the benchmark), so today's
checkout and this one can be measured in one run. Commands on stdin, one a line:
``gc`` prints the garbage-collector time and longest pause since the last ``gc``
(only with ``IOTMP_BENCH_GC=1``), ``quit`` stops. ``IOTMP_BENCH_UVLOOP=1`` runs
the server on uvloop.

The GC probe lives here, not in the product: it costs a callback per collection.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import time
from typing import Any


class GcProbe:
    """Time spent in collections, per window, via ``gc.callbacks``.

    Each pause is taken twice: in wall-clock time (what a client waits) and in the
    thread's CPU time (the collector's own work). On a loaded machine the process can
    be preempted inside a collection, and only the wall-clock figure grows then.
    """

    def __init__(self) -> None:
        self._started = 0.0
        self._started_cpu = 0.0
        self.total = 0.0
        self.longest = 0.0
        self.longest_cpu = 0.0
        self.collections = [0, 0, 0]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        pause = time.perf_counter() - self._started
        self.total += pause
        self.longest = max(self.longest, pause)
        self.longest_cpu = max(self.longest_cpu, time.thread_time() - self._started_cpu)
        self.collections[int(info.get("generation", 0))] += 1

    def take(self) -> dict[str, Any]:
        """The figures since the previous call (then reset)."""
        out = {
            "gc_s": self.total,
            "gc_max_pause_s": self.longest,
            "gc_max_pause_cpu_s": self.longest_cpu,
            "collections": self.collections,
        }
        self.total, self.longest, self.longest_cpu = 0.0, 0.0, 0.0
        self.collections = [0, 0, 0]
        return out


async def serve(devices: int, probe: GcProbe | None) -> None:
    # From PYTHONPATH: this checkout or --server-path's.
    from iotmp.server.limits import ServerLimits  # noqa: PLC0415
    from iotmp.server.testing import TestDevice, run_test_server  # noqa: PLC0415

    limits = ServerLimits(
        min_stream_interval=0.01,
        http_max_connections=4 * devices + 64,
        unauthenticated_per_address=4 * devices + 64,
        unauthenticated_total=4 * devices + 64,
    )
    fleet = [TestDevice(f"d{i}", credential="pw") for i in range(devices)]
    async with run_test_server(fleet, user="bench", limits=limits, keep_alive=600) as server:
        print(
            json.dumps(
                {"tcp_port": server.tcp_port, "http_url": server.http_url, "token": server.token}
            ),
            flush=True,
        )
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            if line == "gc":
                print(json.dumps(probe.take() if probe else {}), flush=True)
            elif line == "quit":
                break


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, required=True)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    probe = GcProbe() if os.environ.get("IOTMP_BENCH_GC") == "1" else None
    if probe is not None:
        gc.callbacks.append(probe)
    profile_to = os.environ.get("IOTMP_BENCH_PROFILE")  # diagnostic: cProfile into this file
    profiler = None
    if profile_to:
        import cProfile  # noqa: PLC0415

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        if os.environ.get("IOTMP_BENCH_UVLOOP") == "1":
            import uvloop  # noqa: PLC0415

            uvloop.run(serve(args.devices, probe))
        else:
            asyncio.run(serve(args.devices, probe))
    finally:
        if profiler is not None and profile_to:
            profiler.disable()
            profiler.dump_stats(profile_to)


if __name__ == "__main__":
    main()
