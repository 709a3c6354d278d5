"""PSON / IOTMP codec benchmark against stdlib json, measured in the same run.

Run: ``python benchmarks/codec.py [--repeat N] [--markdown]``

For each payload it times PSON encode/decode and ``json.dumps(v).encode()`` /
``json.loads(b)`` (bytes in and out on both sides, so the comparison is fair)
and prints the median ns per operation and the ratio PSON / json (below 1.0
means PSON is faster). It also times the IOTMP message codec for a
STREAM_DATA carrying the sensor sample (no baseline).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from custom_components.iotmp.protocol import (  # noqa: E402
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
    """A ~1 KiB mixed map: numbers, strings, a nested map and a list."""
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


def median_ns(fn: Callable[[], Any], repeat: int, target_s: float = 0.2) -> float:
    """Median time per call in ns (number of calls per sample auto-sized to ~target_s)."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * target_s / 0.2))
    samples = timer.repeat(repeat=repeat, number=number)
    return statistics.median(samples) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args()
    r = args.repeat

    dumps, loads = json.dumps, json.loads
    rows = []
    for name, value in PAYLOADS:
        pbytes = pson.encode(value)
        jbytes = dumps(value).encode()
        lbytes = pson_legacy.encode(value)
        assert pson.decode(pbytes) == loads(jbytes)  # same content (no whole floats here)
        enc_p = median_ns(lambda v=value: pson.encode(v), r)
        enc_j = median_ns(lambda v=value: dumps(v).encode(), r)
        dec_p = median_ns(lambda b=pbytes: pson.decode(b), r)
        dec_j = median_ns(lambda b=jbytes: loads(b), r)
        enc_l = median_ns(lambda v=value: pson_legacy.encode(v), r)
        dec_l = median_ns(lambda b=lbytes: pson_legacy.decode(b), r)
        rows.append(
            (name, len(pbytes), len(lbytes), len(jbytes), enc_p, enc_j, dec_p, dec_j, enc_l, dec_l)
        )

    msg = Message.build(MessageType.STREAM_DATA, stream_id=161, payload=SENSOR)
    frame = encode_message(msg)
    decoder = MessageDecoder()
    stream10 = frame * 10
    msg_rows = [
        ("encode_message(STREAM_DATA sensor)", median_ns(lambda: encode_message(msg), r)),
        ("decode_message(STREAM_DATA sensor)", median_ns(lambda: decode_message(frame), r)),
        ("MessageDecoder.feed(1 message)", median_ns(lambda: decoder.feed(frame), r)),
        ("MessageDecoder.feed(10 messages) / 10", median_ns(lambda: decoder.feed(stream10), r) / 10),
    ]

    py = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"# {py} on {platform.machine()} ({platform.processor() or 'cpu n/a'}), repeat={r}")
    print(f"# STREAM_DATA frame: {len(frame)} bytes")
    if args.markdown:
        print(
            "\n| payload | PSON / legacy / JSON bytes | PSON encode ns | json encode ns "
            "| ratio | PSON decode ns | json decode ns | ratio | legacy enc / dec ns |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name, pl, ll, jl, ep, ej, dp, dj, el, dl in rows:
            print(
                f"| {name} | {pl} / {ll} / {jl} | {ep:,.0f} | {ej:,.0f} | {ep / ej:.2f} "
                f"| {dp:,.0f} | {dj:,.0f} | {dp / dj:.2f} | {el:,.0f} / {dl:,.0f} |"
            )
        print("\n| IOTMP message operation | ns |")
        print("|---|---|")
        for name, ns in msg_rows:
            print(f"| {name} | {ns:,.0f} |")
        return
    head = (
        f"{'payload':26} {'bytes P/L/J':>14} {'enc P':>8} {'enc J':>8} {'P/J':>5} "
        f"{'dec P':>8} {'dec J':>8} {'P/J':>5} {'enc L':>8} {'dec L':>8}"
    )
    print(head)
    for name, pl, ll, jl, ep, ej, dp, dj, el, dl in rows:
        sizes = f"{pl}/{ll}/{jl}"
        print(
            f"{name:26} {sizes:>14} {ep:8.0f} {ej:8.0f} {ep / ej:5.2f} "
            f"{dp:8.0f} {dj:8.0f} {dp / dj:5.2f} {el:8.0f} {dl:8.0f}"
        )
    print()
    for name, ns in msg_rows:
        print(f"{name:40} {ns:8.0f} ns")


if __name__ == "__main__":
    main()
