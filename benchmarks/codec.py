"""PSON / IOTMP codec benchmark against stdlib json, measured in the same run.

Run: ``python benchmarks/codec.py [--repeat N] [--markdown] [--clock cpu|wall]``
or, for machine-independent figures, ``python benchmarks/codec.py --instructions``
(needs valgrind; counts CPU instructions per operation with callgrind).

For each payload it times PSON encode/decode and ``json.dumps(v).encode()`` /
``json.loads(b)`` (bytes in and out on both sides, so the comparison is fair)
and prints the median ns per operation and the ratio PSON / json (below 1.0
means PSON is faster). Legacy PSON is timed too (no target). It also times the
IOTMP message codec for a STREAM_DATA carrying the sensor sample (no baseline).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import timeit
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The protocol library never imports Home Assistant, but its parent package
# (the integration) does. Register the parents as bare packages so importing
# the library does not load Home Assistant (1-2 s, and minutes under valgrind).
for _name, _path in (
    ("custom_components", ROOT / "custom_components"),
    ("custom_components.iotmp", ROOT / "custom_components" / "iotmp"),
):
    if _name not in sys.modules:
        _pkg = types.ModuleType(_name)
        _pkg.__path__ = [str(_path)]
        sys.modules[_name] = _pkg

from iotmp.protocol import (  # noqa: E402 (after the package stubs)
    Message,
    MessageDecoder,
    MessageType,
    decode_message,
    encode_message,
    pson,
    pson_legacy,
)

SENSOR = {"temperature": 23.5, "humidity": 60, "pressure": 1013, "label": "outdoor"}
DESCRIBE = {f"resource_{i:02d}": {"fn": (i % 4) + 1} for i in range(20)}


def _kib_map() -> dict[str, Any]:
    """A ~1 KiB mixed map: floats, ints, non-ASCII strings, bools, a list of floats."""
    value: dict[str, Any] = {}
    for i in range(24):
        value[f"sensor_{i:02d}"] = {
            "value": 20.5 + i / 4 if i % 3 else 1000 + i,
            "unit": "°C" if i % 2 else "hPa",
            "ok": i % 5 != 0,
        }
    value["history"] = [round(21.25 + i * 0.5, 2) for i in range(16)]
    value["device"] = "living-room-multisensor"
    return value


KIB = _kib_map()
PAYLOADS: list[tuple[str, Any]] = [
    ("sensor sample (4 keys)", SENSOR),
    ("DESCRIBE, 20 resources", DESCRIBE),
    ("~1 KiB map", KIB),
]
IMPLS = ("pson", "json", "legacy")
MESSAGE_OPS = (
    "encode_message(STREAM_DATA sensor)",
    "decode_message(STREAM_DATA sensor)",
    "MessageDecoder.feed(1 message)",
)


def payload_op(index: int, impl: str, op: str) -> Callable[[], Any]:
    """The callable for one payload / implementation / operation (enc or dec)."""
    value = PAYLOADS[index][1]
    dumps, loads = json.dumps, json.loads
    if impl == "json":
        data = dumps(value).encode()
        return (lambda: dumps(value).encode()) if op == "enc" else (lambda: loads(data))
    codec: Any = pson if impl == "pson" else pson_legacy
    encoded = codec.encode(value)
    enc, dec = codec.encode, codec.decode
    return (lambda: enc(value)) if op == "enc" else (lambda: dec(encoded))


def message_op(index: int) -> Callable[[], Any]:
    """The callable for one IOTMP message operation (see MESSAGE_OPS)."""
    msg = Message.build(MessageType.STREAM_DATA, stream_id=161, payload=SENSOR)
    frame = encode_message(msg)
    decoder = MessageDecoder()
    return [
        lambda: encode_message(msg),
        lambda: decode_message(frame),
        lambda: decoder.feed(frame),
    ][index]


def op_by_key(key: str) -> Callable[[], Any]:
    """``p:<payload>:<impl>:<enc|dec>`` or ``m:<message op>``."""
    parts = key.split(":")
    if parts[0] == "m":
        return message_op(int(parts[1]))
    return payload_op(int(parts[1]), parts[2], parts[3])


# ---------------------------------------------------------------- wall/cpu time

TIMERS = {"cpu": time.thread_time, "wall": time.perf_counter}


def median_ns(fn: Callable[[], Any], repeat: int, clock: str, target_s: float = 0.2) -> float:
    """Median time per call in ns (calls per sample auto-sized to ~target_s)."""
    timer = timeit.Timer(fn, timer=TIMERS[clock])
    number, _ = timer.autorange()
    number = max(1, int(number * target_s / 0.2))
    samples = timer.repeat(repeat=repeat, number=number)
    return statistics.median(samples) / number * 1e9


# ------------------------------------------------------ instructions (callgrind)


def _callgrind_ir(key: str, loops: int) -> int:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--run",
        key,
        "--loops",
        str(loops),
    ]
    # fixed hash seed; no .pyc writing, so every run compiles exactly the same code
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    match = re.search(r"Collected : (\d+)", proc.stderr)
    if not match:
        raise RuntimeError(f"no callgrind total in: {proc.stderr[-500:]}")
    return int(match.group(1))


def instructions_per_op(key: str, loops: int) -> float:
    """CPU instructions per call: Ir(loops) - Ir(0), divided by loops."""
    return (_callgrind_ir(key, loops) - _callgrind_ir(key, 0)) / loops


def run_loops(key: str, loops: int) -> None:
    """Warm up, then call the operation ``loops`` times (the callgrind child)."""
    fn = op_by_key(key)
    for _ in range(50):
        fn()
    gc.disable()  # keep collections out of the per-call count
    for _ in range(loops):
        fn()


# ------------------------------------------------------------------------ main


def _measure(args: argparse.Namespace) -> tuple[dict[tuple[int, str, str], float], list[float]]:
    if args.instructions:

        def measure(key: str) -> float:
            return instructions_per_op(key, args.loops)
    else:

        def measure(key: str) -> float:
            return median_ns(op_by_key(key), args.repeat, args.clock)

    results = {}
    for i in range(len(PAYLOADS)):
        for impl in IMPLS:
            for op in ("enc", "dec"):
                results[(i, impl, op)] = measure(f"p:{i}:{impl}:{op}")
    messages = [measure(f"m:{i}") for i in range(len(MESSAGE_OPS))]
    return results, messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="timing samples (median)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--clock",
        choices=sorted(TIMERS),
        default="cpu",
        help="cpu = thread CPU time (robust on a shared machine, default), wall = perf_counter",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per operation with valgrind/callgrind instead of timing",
    )
    parser.add_argument("--loops", type=int, default=300, help="calls per callgrind run")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_loops(args.run, args.loops)
        return
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind")

    results, messages = _measure(args)
    unit = "instructions" if args.instructions else "ns"
    how = (
        f"callgrind, {args.loops} calls, Ir per call"
        if args.instructions
        else f"median of {args.repeat}, clock={args.clock}"
    )
    py = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"# {py} on {platform.machine()}; {how}")

    if args.markdown:
        print(
            f"\n| payload | bytes PSON / legacy / JSON | encode PSON / json ({unit}) | ratio "
            f"| decode PSON / json ({unit}) | ratio | legacy encode / decode ({unit}) |"
        )
        print("|---|---|---|---|---|---|---|")
    else:
        print(
            f"{'payload':24} {'bytes P/L/J':>13} {'enc PSON':>9} {'enc json':>9} {'ratio':>5} "
            f"{'dec PSON':>9} {'dec json':>9} {'ratio':>5} {'enc leg':>9} {'dec leg':>9}"
        )
    for i, (name, value) in enumerate(PAYLOADS):
        sizes = (
            len(pson.encode(value)),
            len(pson_legacy.encode(value)),
            len(json.dumps(value).encode()),
        )
        ep, ej, el = (results[(i, impl, "enc")] for impl in IMPLS)
        dp, dj, dl = (results[(i, impl, "dec")] for impl in IMPLS)
        if args.markdown:
            print(
                f"| {name} | {sizes[0]} / {sizes[1]} / {sizes[2]} | {ep:,.0f} / {ej:,.0f} "
                f"| **{ep / ej:.2f}** | {dp:,.0f} / {dj:,.0f} | **{dp / dj:.2f}** "
                f"| {el:,.0f} / {dl:,.0f} |"
            )
        else:
            size_text = "/".join(str(s) for s in sizes)
            print(
                f"{name:24} {size_text:>13} {ep:9.0f} {ej:9.0f} {ep / ej:5.2f} "
                f"{dp:9.0f} {dj:9.0f} {dp / dj:5.2f} {el:9.0f} {dl:9.0f}"
            )
    frame_len = len(
        encode_message(Message.build(MessageType.STREAM_DATA, stream_id=161, payload=SENSOR))
    )
    if args.markdown:
        print(f"\n| IOTMP message operation ({frame_len}-byte frame) | {unit} |")
        print("|---|---|")
        for name, cost in zip(MESSAGE_OPS, messages, strict=True):
            print(f"| {name} | {cost:,.0f} |")
    else:
        print()
        for name, cost in zip(MESSAGE_OPS, messages, strict=True):
            print(f"{name:40} {cost:10.0f} {unit} ({frame_len}-byte frame)")


if __name__ == "__main__":
    main()
