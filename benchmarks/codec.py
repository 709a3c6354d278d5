"""PSON / IOTMP codec benchmark against stdlib json, measured in the same run.

Run: ``python benchmarks/codec.py [--rounds N] [--markdown] [--clock cpu|wall]``
or, for machine-independent figures, ``python benchmarks/codec.py --instructions``
(needs valgrind; counts CPU instructions per operation with callgrind).

For each payload it times PSON encode/decode, with the pure-Python codec and
the compiled one (``python hatch_build.py --inplace`` builds it for the running
interpreter), and ``json.dumps(v).encode()`` / ``json.loads(b)`` (bytes in and
out on both sides, so the comparison is fair). Every operation is timed once
per round, rounds interleave all of them, and it prints the median ns and the
ratio PSON / json (min and median over rounds, each ratio within one round;
below 1.0 means PSON is faster). Legacy PSON is timed too (no target), and the
IOTMP message codec for a STREAM_DATA carrying the sensor sample.
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
    MessageType,
    pson,
)
from iotmp.protocol.speedups import compiled_impl, python_impl  # noqa: E402

IMPL_OF = {"python": python_impl(), "compiled": compiled_impl()}

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
# pson / legacy: pure Python; pson_c / legacy_c: the compiled codec (if built)
IMPLS = ("pson", "pson_c", "json", "legacy", "legacy_c")
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
    which = IMPL_OF["compiled" if impl.endswith("_c") else "python"]
    if which is None:
        raise SystemExit("the compiled codec is not built: python hatch_build.py --inplace")
    codec: Any = which.pson if impl.startswith("pson") else which.pson_legacy
    encoded = codec.encode(value)
    enc, dec = codec.encode, codec.decode
    return (lambda: enc(value)) if op == "enc" else (lambda: dec(encoded))


def message_op(index: int, impl: str = "python") -> Callable[[], Any]:
    """The callable for one IOTMP message operation (see MESSAGE_OPS)."""
    which = IMPL_OF[impl]
    if which is None:
        raise SystemExit("the compiled codec is not built: python hatch_build.py --inplace")
    codec = which.codec
    encode_message, decode_message = codec.encode_message, codec.decode_message
    msg = Message.build(MessageType.STREAM_DATA, stream_id=161, payload=SENSOR)
    frame = encode_message(msg)
    decoder = codec.MessageDecoder()
    return [
        lambda: encode_message(msg),
        lambda: decode_message(frame),
        lambda: decoder.feed(frame),
    ][index]


def op_by_key(key: str) -> Callable[[], Any]:
    """``p:<payload>:<impl>:<enc|dec>`` or ``m:<message op>[:<python|compiled>]``."""
    parts = key.split(":")
    if parts[0] == "m":
        return message_op(int(parts[1]), parts[2] if len(parts) > 2 else "python")
    return payload_op(int(parts[1]), parts[2], parts[3])


# ---------------------------------------------------------------- wall/cpu time

TIMERS = {"cpu": time.thread_time, "wall": time.perf_counter}


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


Samples = dict[str, list[float]]


def _keys() -> list[str]:
    keys = [
        f"p:{i}:{impl}:{op}"
        for i in range(len(PAYLOADS))
        for impl in IMPLS
        for op in ("enc", "dec")
        if IMPL_OF["compiled"] is not None or not impl.endswith("_c")
    ]
    impls = [n for n, v in IMPL_OF.items() if v is not None]
    return keys + [f"m:{i}:{impl}" for i in range(len(MESSAGE_OPS)) for impl in impls]


def _measure(args: argparse.Namespace) -> Samples:
    """Per key, one figure per round; rounds interleave every operation (and json)."""
    keys = _keys()
    if args.instructions:
        return {key: [instructions_per_op(key, args.loops)] for key in keys}
    timers = {}
    for key in keys:
        timer = timeit.Timer(op_by_key(key), timer=TIMERS[args.clock])
        number, _ = timer.autorange()
        timers[key] = (timer, max(1, number // 4))
    samples: Samples = {key: [] for key in keys}
    for r in range(args.rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]  # rotate the start
        for key in order:
            timer, number = timers[key]
            samples[key].append(min(timer.repeat(repeat=3, number=number)) / number * 1e9)
    return samples


def _ratio(samples: Samples, key: str, base: str) -> tuple[float, float]:
    """(min, median) over rounds of key / base, each ratio within one round."""
    ratios = [a / b for a, b in zip(samples[key], samples[base], strict=True)]
    return min(ratios), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (min, median)")
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
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    samples = _measure(args)
    unit = "instructions" if args.instructions else "ns"
    how = (
        f"callgrind, {args.loops} calls, Ir per call"
        if args.instructions
        else f"{args.rounds} interleaved rounds, clock={args.clock}; ns = median"
    )
    py = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"# {py} on {platform.machine()}; {how}; ratios = codec / json, min / median")
    impls = [("python", "pson", "legacy"), ("compiled", "pson_c", "legacy_c")]
    impls = [row for row in impls if IMPL_OF[row[0]] is not None]
    if args.markdown:
        print(
            f"\n| payload | codec | bytes PSON / JSON | encode PSON / json ({unit}) "
            f"| ratio min / median | decode PSON / json ({unit}) | ratio min / median "
            f"| legacy encode / decode ({unit}) |"
        )
        print("|---|---|---|---|---|---|---|---|")
    for i, (name, value) in enumerate(PAYLOADS):
        sizes = (len(pson.encode(value)), len(json.dumps(value).encode()))
        ej, dj = (statistics.median(samples[f"p:{i}:json:{op}"]) for op in ("enc", "dec"))
        for label, new, legacy in impls:
            ep, dp = (statistics.median(samples[f"p:{i}:{new}:{op}"]) for op in ("enc", "dec"))
            el, dl = (statistics.median(samples[f"p:{i}:{legacy}:{op}"]) for op in ("enc", "dec"))
            er = _ratio(samples, f"p:{i}:{new}:enc", f"p:{i}:json:enc")
            dr = _ratio(samples, f"p:{i}:{new}:dec", f"p:{i}:json:dec")
            if args.markdown:
                print(
                    f"| {name} | {label} | {sizes[0]} / {sizes[1]} | {ep:,.0f} / {ej:,.0f} "
                    f"| **{er[0]:.2f}** / {er[1]:.2f} | {dp:,.0f} / {dj:,.0f} "
                    f"| **{dr[0]:.2f}** / {dr[1]:.2f} | {el:,.0f} / {dl:,.0f} |"
                )
            else:
                print(
                    f"{name:24} {label:8} enc {ep:8.0f} / {ej:8.0f} ratio {er[0]:4.2f} / "
                    f"{er[1]:4.2f}   dec {dp:8.0f} / {dj:8.0f} ratio {dr[0]:4.2f} / {dr[1]:4.2f}"
                    f"   legacy {el:8.0f} / {dl:8.0f}"
                )
    frame_len = len(
        python_impl().codec.encode_message(
            Message.build(MessageType.STREAM_DATA, stream_id=161, payload=SENSOR)
        )
    )
    labels = [label for label, _, _ in impls]
    if args.markdown:
        print(
            f"\n| IOTMP message operation ({frame_len}-byte frame) | "
            + " | ".join(f"{label} ({unit})" for label in labels)
            + " |"
        )
        print("|---|" + "---|" * len(labels))
    else:
        print()
    for m, name in enumerate(MESSAGE_OPS):
        costs = [statistics.median(samples[f"m:{m}:{label}"]) for label in labels]
        if args.markdown:
            print(f"| {name} | " + " | ".join(f"{c:,.0f}" for c in costs) + " |")
        else:
            print(
                f"{name:40} "
                + "  ".join(f"{label} {c:8.0f}" for label, c in zip(labels, costs, strict=True))
            )


if __name__ == "__main__":
    main()
