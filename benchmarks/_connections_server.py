"""Launcher of the server under test in ``benchmarks/connections.py`` (not a product script).

    python benchmarks/_connections_server.py --path CHECKOUT --config server.json

Runs ``iotmp server --config ...`` from ``CHECKOUT`` (so one run can compare two
checkouts) with two benchmark-only changes:

* the scrypt cost of the credential hashes made when the configured devices are
  seeded into the database is lowered (10,000 hashes at the real cost take minutes
  of CPU at every start). Logins are not affected: a configured device is checked
  against its configured credential with ``hmac.compare_digest``, never the hash;
* on request (environment variables) the process profiles itself, so what is
  measured is the real server process:

  ``IOTMP_BENCH_PROFILE=FILE``: cProfile between SIGUSR1 and SIGUSR2 (written to FILE);
  ``IOTMP_BENCH_GC_THRESHOLD=A,B,C``: :func:`gc.set_threshold` (to try other settings);
  ``IOTMP_BENCH_GC=FILE``: CPU seconds spent in garbage collection between the two;
  ``IOTMP_BENCH_TRACEMALLOC=FILE``: tracemalloc from SIGUSR1; at SIGUSR2 the top
  allocations by line and by file, and task counts, are written to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import gc
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from types import FrameType

_PROFILER: cProfile.Profile | None = None
_GC_TIMES: list[float] = []  # [started, total seconds, collections, gen-2 seconds, gen-2 count]
_BASE_SNAPSHOT: tracemalloc.Snapshot | None = None


def _task_summary() -> list[str]:
    tasks = [obj for obj in gc.get_objects() if isinstance(obj, asyncio.Task)]
    names: collections.Counter[str] = collections.Counter()
    for task in tasks:
        if task.done():
            continue
        coro = task.get_coro()
        names[getattr(coro, "__qualname__", type(coro).__name__)] += 1
    return [f"{count:8d}  {name}" for name, count in names.most_common(20)]


def _gc_timer(phase: str, _info: dict[str, int]) -> None:
    if phase == "start":
        _GC_TIMES[0] = time.process_time()
    else:
        spent = time.process_time() - _GC_TIMES[0]
        _GC_TIMES[1] += spent
        _GC_TIMES[2] += 1
        if _info["generation"] == 2:
            _GC_TIMES[3] += spent
            _GC_TIMES[4] += 1


def _start(_signum: int, _frame: FrameType | None) -> None:
    global _PROFILER, _BASE_SNAPSHOT  # noqa: PLW0603 - process-wide switches
    if os.environ.get("IOTMP_BENCH_GC"):
        _GC_TIMES[:] = [0.0, 0.0, 0, 0.0, 0, len(gc.get_objects()), gc.get_freeze_count()]
        gc.callbacks.append(_gc_timer)
    if os.environ.get("IOTMP_BENCH_PROFILE"):
        _PROFILER = cProfile.Profile()
        _PROFILER.enable()
    if os.environ.get("IOTMP_BENCH_TRACEMALLOC"):
        tracemalloc.start(int(os.environ.get("IOTMP_BENCH_TRACE_DEPTH", "1")))
        _BASE_SNAPSHOT = tracemalloc.take_snapshot()


def _stop(_signum: int, _frame: FrameType | None) -> None:
    global _PROFILER  # noqa: PLW0603
    profile_file = os.environ.get("IOTMP_BENCH_PROFILE")
    if _PROFILER is not None and profile_file:
        _PROFILER.disable()
        _PROFILER.dump_stats(profile_file)
        _PROFILER = None
    gc_file = os.environ.get("IOTMP_BENCH_GC")
    if gc_file and _gc_timer in gc.callbacks:
        gc.callbacks.remove(_gc_timer)
        alive = collections.Counter(type(obj).__qualname__ for obj in gc.get_objects())
        Path(gc_file + ".types").write_text(
            "".join(f"{count:8d}  {name}\n" for name, count in alive.most_common(60)),
            encoding="utf-8",
        )
        del alive
        packages = collections.Counter(name.split(".")[0] for name in sys.modules)
        Path(gc_file + ".modules").write_text(
            f"{len(sys.modules)} modules\n"
            + "".join(f"{count:8d}  {name}\n" for name, count in packages.most_common()),
            encoding="utf-8",
        )
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the full collection finds: cyclic garbage
        started = time.perf_counter()
        gc.collect()
        _GC_TIMES.append(time.perf_counter() - started)
        gc.set_debug(0)
        garbage = collections.Counter(type(obj).__qualname__ for obj in gc.garbage)
        gc.garbage.clear()
        Path(gc_file + ".garbage").write_text(
            "".join(f"{count:8d}  {name}\n" for name, count in garbage.most_common(30)),
            encoding="utf-8",
        )
        times = _GC_TIMES
        Path(gc_file).write_text(
            f"seconds {times[1]:.6f} collections {times[2]:.0f} of which generation 2: "
            f"seconds {times[3]:.6f} collections {times[4]:.0f}; tracked objects before "
            f"{times[5]:.0f} (frozen {times[6]:.0f}), after {len(gc.get_objects())}; "
            f"a full collection then took {times[7]:.4f} s\n",
            encoding="utf-8",
        )
    trace_file = os.environ.get("IOTMP_BENCH_TRACEMALLOC")
    if trace_file and tracemalloc.is_tracing() and _BASE_SNAPSHOT is not None:
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        lines = ["# tasks alive (by coroutine)", *_task_summary()]
        for group in ("lineno", "filename"):
            lines.append(f"# allocated since SIGUSR1, by {group}")
            for stat in snapshot.compare_to(_BASE_SNAPSHOT, group)[:40]:
                lines.append(
                    f"{stat.size_diff:12,d} B {stat.count_diff:9,d} blocks  {stat.traceback}"
                )
        if tracemalloc.get_traceback_limit() > 1:
            lines.append("# allocated since SIGUSR1, by traceback")
            for stat in snapshot.compare_to(_BASE_SNAPSHOT, "traceback")[:25]:
                lines.append(f"{stat.size_diff:12,d} B {stat.count_diff:9,d} blocks")
                lines.extend(f"      {frame}" for frame in stat.traceback.format())
        Path(trace_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", required=True, help="checkout whose iotmp package runs")
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.path).resolve()))

    from iotmp.server.storage import hashing  # noqa: PLC0415 - from the checkout chosen

    hashing._LOG2_N = 1  # type: ignore[misc] # seeding only, see the module docstring

    from iotmp.cli import main as iotmp_main  # noqa: PLC0415

    thresholds = os.environ.get("IOTMP_BENCH_GC_THRESHOLD")  # e.g. "700,10,1000": what if
    if thresholds:
        gc.set_threshold(*(int(part) for part in thresholds.split(",")))
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    return int(iotmp_main(["server", "--config", args.config]) or 0)


if __name__ == "__main__":
    sys.exit(main())
