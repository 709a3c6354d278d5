"""The compiled codec and the pure-Python reference agree on every input.

Same bytes for the same value, same value for the same bytes, and for bad input
the same exception type with the same message. Plus the float32 rule of both:
a float32 decodes as the shortest decimal that reads back as that float32.
"""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategies import examples, messages, values
from vector_util import load, same, shortest_f32

from iotmp.protocol import Limits, speedups
from iotmp.protocol.speedups import CodecImpl, compiled_impl, python_impl

FRAMES = [bytes.fromhex(f["hex"]) for f in load("frames.json")]
PSON = [bytes.fromhex(v["hex"]) for v in load("pson.json")]
DIFF = settings(
    max_examples=examples(300),
    deadline=timedelta(milliseconds=2000),
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def both() -> tuple[CodecImpl, CodecImpl]:
    compiled = compiled_impl()
    if compiled is None:
        if os.environ.get("IOTMP_REQUIRE_EXTENSIONS", "") not in ("", "0"):
            pytest.fail("the compiled codec is not installed (IOTMP_REQUIRE_EXTENSIONS=1)")
        pytest.skip("the compiled codec is not installed")
    return python_impl(), compiled


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as exc:  # compared by type and message
        return type(exc).__name__, str(exc)


def _agree(a: tuple[str, Any], b: tuple[str, Any]) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] == "ok" and isinstance(a[1], tuple):  # decode_at: (value, position)
        a, b = ("ok", list(a[1])), ("ok", list(b[1]))
    assert same(a[1], b[1]) if a[0] == "ok" else a[1] == b[1], (a, b)


def _mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 3))):
            pos = draw(st.integers(0, len(data)))
            if draw(st.booleans()) and pos < len(data):
                data[pos] = draw(st.integers(0, 255))
            else:
                data[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        return bytes(data)

    return st.one_of(st.binary(max_size=120), mutate())


@given(_mutated(PSON), st.integers(0, 40))
@DIFF
def test_pson_decode_agrees(both: tuple[CodecImpl, CodecImpl], data: bytes, depth: int) -> None:
    py, c = both
    for name in ("pson", "pson_legacy"):
        a, b = getattr(py, name), getattr(c, name)
        _agree(_outcome(partial(a.decode, data)), _outcome(partial(b.decode, data)))
        _agree(
            _outcome(partial(a.decode, data, max_depth=depth)),
            _outcome(partial(b.decode, data, max_depth=depth)),
        )
        _agree(
            _outcome(partial(a.decode_at, data, 0, len(data))),
            _outcome(partial(b.decode_at, data, 0, len(data))),
        )


@given(_mutated(FRAMES), st.integers(1, 7))
@DIFF
def test_message_decode_agrees(both: tuple[CodecImpl, CodecImpl], data: bytes, step: int) -> None:
    py, c = both
    limits = Limits(max_message_size=60, max_depth=3)
    _agree(
        _outcome(lambda: py.codec.decode_message(data, limits)),
        _outcome(lambda: c.codec.decode_message(data, limits)),
    )

    def feed(impl: CodecImpl) -> list[Any]:
        decoder = impl.codec.MessageDecoder(limits)
        out = []
        for i in range(0, len(data), step):
            out.append(_outcome(lambda i=i: decoder.feed(data[i : i + step])))
        return out

    for a, b in zip(feed(py), feed(c), strict=True):
        _agree(a, b)


@given(st.one_of(values, st.sets(st.integers()), st.integers(), st.floats()))
@DIFF
def test_encode_agrees(both: tuple[CodecImpl, CodecImpl], value: Any) -> None:
    py, c = both
    for name in ("pson", "pson_legacy"):
        a, b = getattr(py, name), getattr(c, name)
        _agree(_outcome(partial(a.encode, value)), _outcome(partial(b.encode, value)))


@given(messages(), st.booleans())
@DIFF
def test_message_encode_agrees(both: tuple[CodecImpl, CodecImpl], msg: Any, legacy: bool) -> None:
    py, c = both
    _agree(
        _outcome(lambda: py.codec.encode_message(msg, legacy=legacy)),
        _outcome(lambda: c.codec.encode_message(msg, legacy=legacy)),
    )


def test_encode_errors_agree(both: tuple[CodecImpl, CodecImpl]) -> None:
    loop: list[Any] = []
    loop.append(loop)
    for bad in (loop, {1: "x"}, object(), 2**64, -(2**63) - 1, {"a": {2, 3}}):
        for name in ("pson", "pson_legacy"):
            a, b = getattr(both[0], name), getattr(both[1], name)
            outcome = _outcome(lambda bad=bad, a=a: a.encode(bad))
            assert outcome[0] in ("TypeError", "ValueError")
            _agree(outcome, _outcome(lambda bad=bad, b=b: b.encode(bad)))


# ------------------------------------------------------------------ float32


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=examples(2000))
@example(0x41ACCCCD)  # 21.6f
@example(0x00000001)  # smallest subnormal
@example(0x7F7FFFFF)  # largest float32
@example(0xFF7FFFFF)
@example(0x80000000)  # -0.0
@example(0x7F800000)  # inf
@example(0x7FC00000)  # NaN
@example(0x5F000000)  # 2**63
def test_float32_decodes_as_shortest_decimal(impl: CodecImpl, bits: int) -> None:
    raw = bits.to_bytes(4, "little")
    x = struct.unpack("<f", raw)[0]
    expected = shortest_f32(x)
    for value in (
        impl.pson.decode(b"\x40" + raw),
        impl.pson_legacy.decode(b"\x1d" + raw),
        impl.pson.decode(b"\xc1\x81v\x40" + raw)["v"],  # inside a map
        impl.pson.decode(b"\xe1\x40" + raw)[0],  # inside an array
    ):
        assert same(value, expected), (value, expected)
        if not math.isnan(value):  # reads back as the same float32 (NaN payloads aside)
            assert struct.pack("<f", value) == raw


def test_reference_device_float(impl: CodecImpl) -> None:
    """The reference device's 21.6f reads as 21.6, and 21.6 goes back out as a double."""
    assert impl.pson.decode(bytes.fromhex("40cdccac41")) == 21.6
    assert impl.pson.encode(21.6) == b"\x41" + struct.pack("<d", 21.6)
    # a float32-exact value (23.5) is its own shortest decimal: same bytes again
    sample = b"\xc1\x81t\x40" + struct.pack("<f", 23.5)
    assert impl.pson.decode(sample) == {"t": 23.5}
    assert impl.pson.encode(impl.pson.decode(sample)) == sample


# ------------------------------------------------------------------ selection


def test_selection_follows_the_environment() -> None:
    """IOTMP_NO_EXTENSIONS=1 gives the pure codec; otherwise the compiled one if installed."""
    code = (
        "from iotmp.protocol import speedups, pson, encode_message;"
        "print(speedups.active(), type(pson.decode).__name__, type(encode_message).__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != speedups.ENV_NO_EXTENSIONS}
    off = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, speedups.ENV_NO_EXTENSIONS: "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert off == ["python", "function", "function"]
    on = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    if compiled_impl() is None:
        assert on == off
    else:
        assert on == ["compiled", "builtin_function_or_method", "builtin_function_or_method"]
