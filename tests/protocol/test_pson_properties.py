"""Round-trip properties of both PSON flavours (hypothesis)."""

from __future__ import annotations

import math
import struct
from typing import Any

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from strategies import depth, examples, values
from vector_util import expect_legacy, expect_new, has_short_f32, same

from iotmp.protocol import pson
from iotmp.protocol.speedups import CodecImpl

MAX_DEPTH = 64


@given(values)
@settings(max_examples=examples(150))
def test_new_roundtrip(impl: CodecImpl, value: Any) -> None:
    """decode(encode(v)) == v, except whole doubles within int64 come back as int."""
    assume(depth(value) <= MAX_DEPTH)
    data = impl.pson.encode(value)
    assert same(impl.pson.decode(data, max_depth=MAX_DEPTH), expect_new(value))
    # re-encoding the decoded value is stable: same bytes, except that a float32
    # decoded as its shortest decimal (21.6) is a double again (float64, same value)
    back = impl.pson.decode(data, max_depth=MAX_DEPTH)
    again = impl.pson.encode(back)
    assert same(impl.pson.decode(again, max_depth=MAX_DEPTH), expect_new(back))
    if not has_short_f32(value):
        assert again == data


@given(values)
@settings(max_examples=examples(150))
def test_legacy_roundtrip(impl: CodecImpl, value: Any) -> None:
    """Legacy: same, plus the lossy float32 demotion of spec 6.2."""
    assume(depth(value) <= MAX_DEPTH)
    data = impl.pson_legacy.encode(value)
    assert same(impl.pson_legacy.decode(data, max_depth=MAX_DEPTH), expect_legacy(value))


@given(st.floats(allow_nan=True, allow_infinity=True))
@example(-0.0)
@example(2.0**63)
@example(-(2.0**63))
@example(2.0**63 - 1024)
@example(5e-324)
@example(1.401298464324817e-45)
def test_new_float_rules(impl: CodecImpl, d: float) -> None:
    """Spec 5.2 rule 3, written out independently of the encoder."""
    data = impl.pson.encode(d)
    if math.isfinite(d) and -(2**63) <= d < 2**63 and d == int(d):
        assert data == impl.pson.encode(int(d))
    elif math.isinf(d):
        assert data == b"\x40" + struct.pack("<f", d)
    elif math.isnan(d):
        assert data == b"\x41" + struct.pack("<d", d)
    else:
        try:
            exact = struct.unpack("<f", struct.pack("<f", d))[0] == d
        except OverflowError:
            exact = False
        if exact:
            assert data == b"\x40" + struct.pack("<f", d)
        else:
            assert data == b"\x41" + struct.pack("<d", d)
    back = impl.pson.decode(data)
    assert same(back, expect_new(d))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_legacy_float_error_bound(impl: CodecImpl, d: float) -> None:
    """Legacy demotion moves a value by at most 1e-5 (plus the float32 read as its
    shortest decimal, within half a float32 step)."""
    back = impl.pson_legacy.decode(impl.pson_legacy.encode(d))
    assert abs(back - d) <= 0.00001 + abs(d) * 2.0**-24


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1))
def test_integer_sizes(impl: CodecImpl, v: int) -> None:
    data = impl.pson.encode(v)
    assert impl.pson.decode(data) == v
    n = abs(v)
    expected = 1 if n < 31 else 1 + max(1, (n.bit_length() + 6) // 7)
    assert len(data) == expected


@given(st.one_of(st.integers(max_value=-(2**63) - 1), st.integers(min_value=2**64)))
def test_out_of_range_integers_refused(impl: CodecImpl, v: int) -> None:
    for codec in (impl.pson, impl.pson_legacy):
        try:
            codec.encode(v)
        except ValueError:
            continue
        raise AssertionError(f"{codec} encoded {v}")


def test_unsupported_types_refused(impl: CodecImpl) -> None:
    for codec in (impl.pson, impl.pson_legacy):
        for bad in ({1, 2}, object(), {1: "int key"}, 1j):
            try:
                codec.encode(bad)
            except TypeError:
                continue
            raise AssertionError(f"{codec} encoded {bad!r}")


def test_cycles_refused(impl: CodecImpl) -> None:
    loop: list[Any] = []
    loop.append(loop)
    for codec in (impl.pson, impl.pson_legacy):
        try:
            codec.encode(loop)
        except ValueError:
            continue
        raise AssertionError("cycle encoded")


def test_subclasses_and_other_containers(impl: CodecImpl) -> None:
    from collections import OrderedDict
    from enum import IntEnum, StrEnum

    class Color(StrEnum):
        RED = "red"

    class Num(IntEnum):
        TWO = 2

    value = OrderedDict([("c", Color.RED), ("n", Num.TWO), ("t", (1, 2)), ("b", bytearray(b"x"))])
    expected = {"c": "red", "n": 2, "t": [1, 2], "b": b"x"}
    for codec in (impl.pson, impl.pson_legacy):
        back = codec.decode(codec.encode(value))
        assert same(back, expected)
        assert type(back["c"]) is str
        assert type(back["n"]) is int


def test_key_cache_is_bounded(impl: CodecImpl) -> None:
    for i in range(10_000):
        impl.pson.encode({f"k{i}": i})
    assert len(pson._key_cache) <= pson._KEY_CACHE_MAX
    # a long key is never cached, but still encodes
    key = "k" * 500
    assert impl.pson.decode(impl.pson.encode({key: 1})) == {key: 1}
    assert key not in pson._key_cache


def test_duplicate_map_keys_last_wins(impl: CodecImpl) -> None:
    # {"a": 1, "b": 2, "a": 3} - last value wins at the first key's position
    data = bytes.fromhex("c3 8161 01 8162 02 8161 03".replace(" ", ""))
    assert same(impl.pson.decode(data), {"a": 3, "b": 2})
    legacy = bytes.fromhex("6a0b 0161 40 0162 0802 0161 0803".replace(" ", ""))
    assert same(impl.pson_legacy.decode(legacy), {"a": 3, "b": 2})
