"""The compiled PSON -> JSON transcoder and PSON comparer agree with the Python path.

``transcode(b)`` is ``dumps_bytes(pson.decode(b))`` byte for byte, or None (then the
Python path does it, and raises what it raises). ``same(a, b)`` is the stream hub's
``_same(decode(a), decode(b))``, or -1 (cannot tell). Both must also take the common
sensor payloads (else the fast path would never run).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategies import examples, values

from iotmp.protocol import ProtocolError, pson
from iotmp.server.http_api import dumps_bytes
from iotmp.server.streams import _same

try:
    from iotmp.protocol import _pson_json_c as pj  # type: ignore[attr-defined]
except ImportError:
    if os.environ.get("IOTMP_REQUIRE_EXTENSIONS") == "1":
        raise  # a wheel built with the compiler must carry it
    pytest.skip("the compiled modules are not built", allow_module_level=True)

PARITY = settings(
    max_examples=examples(600),
    deadline=timedelta(milliseconds=2000),
    suppress_health_check=[HealthCheck.too_slow],
)
SAMPLE = {"temperature": 23.5, "humidity": 60, "pressure": 1013, "label": "outdoor"}

# What devices send: plain keys, ints, float32 and float64 values, short labels.
sensor_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
sensor_leaves = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.booleans(),
    st.none(),
    st.text(alphabet="abcdefghij XYZ-_.:0123456789", max_size=20),
)
sensor_values = st.recursive(
    sensor_leaves,
    lambda c: st.one_of(st.lists(c, max_size=6), st.dictionaries(sensor_keys, c, max_size=6)),
    max_leaves=16,
)


def _python(payload: bytes) -> bytes | ProtocolError:
    try:
        return dumps_bytes(pson.decode(payload))
    except ProtocolError as exc:
        return exc


def _check(payload: bytes) -> bytes | None:
    got = pj.transcode(payload)
    if got is not None:
        assert got == _python(payload)
    return got


@PARITY
@given(values)
@example(SAMPLE)
@example({"a": [1, 2.5, True, None, False], "b": {"c": -5, "d": ""}, "e": []})
@example(1e16)
@example(1e-5)
@example(0.0001)
@example(-0.0)
@example(2**63)
@example(-(2**63))
def test_transcode_equals_the_python_path_or_declines(value: Any) -> None:
    try:
        payload = pson.encode(value)
    except ValueError:
        return  # not encodable (e.g. too deep)
    _check(payload)


@PARITY
@given(sensor_values)
def test_sensor_payloads_are_transcoded(value: Any) -> None:
    payload = pson.encode(value)
    got = _check(payload)
    text = repr(value)
    if "e" not in text.replace("None", "").replace("True", "").replace("False", ""):
        assert got is not None, value  # no exponent anywhere: the fast path takes it


@PARITY
@given(st.binary(max_size=64))
@example(b"\xc1\x81a")  # map, key, no value
@example(b"\xc2\x81a\x01\x81a\x02")  # duplicate key
@example(b"\x1f\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f")  # varint over 64 bits
@example(b"\x42\x00\x00\x00\x00")  # float sub-code 2
@example(b"\x63")  # discrete sub-code 3
@example(b"\x82\xc3\xa9")  # non-ASCII string
def test_arbitrary_bytes_transcode_or_decline(data: bytes) -> None:
    got = pj.transcode(data)
    if got is not None:
        assert got == _python(data)  # never JSON for bytes the decoder rejects


def test_depth_limit_is_the_decoders() -> None:
    nested: Any = 1
    for _ in range(5):
        nested = [nested]
    payload = pson.encode(nested)
    assert pj.transcode(payload, 5) == b"[[[[[1]]]]]"
    assert pj.transcode(payload, 4) is None  # the decoder raises at this limit
    with pytest.raises(ProtocolError):
        pson.decode(payload, max_depth=4)


def _same_python(a: bytes, b: bytes) -> bool:
    return _same(pson.decode(a), pson.decode(b))


@PARITY
@given(sensor_values, sensor_values)
def test_same_agrees_with_the_hub(a: Any, b: Any) -> None:
    ea, eb = pson.encode(a), pson.encode(b)
    for x, y in ((ea, eb), (ea, ea), (eb, eb)):
        got = pj.same(x, y)
        if got != -1:
            assert bool(got) == _same_python(x, y)


@PARITY
@given(values, values)
def test_same_agrees_or_declines_on_any_values(a: Any, b: Any) -> None:
    try:
        ea, eb = pson.encode(a), pson.encode(b)
    except ValueError:
        return
    for x, y in ((ea, eb), (ea, ea)):
        got = pj.same(x, y)
        if got != -1:
            assert bool(got) == _same_python(x, y)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (SAMPLE, SAMPLE, 1),
        (SAMPLE, {**SAMPLE, "humidity": 61}, 0),
        ({"a": 1}, {"a": 1.5}, 0),
        ({"a": 1}, {"a": True}, 1),  # True == 1 inside a container
        ({"a": 0}, {"a": False}, 1),
        ({"a": 2}, {"a": 2.0}, 1),  # (2.0 is sent as an integer: same bytes)
        ({"a": 0.5}, {"a": 0.5}, 1),
        (1, True, 0),  # the top-level types differ
        (0, None, 0),
        ("x", ["x"], 0),
        ([1, 2], [1, 2, 3], 0),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, -1),  # another key order: left to Python
        ({"a": 1}, {"b": 1}, -1),
    ],
)
def test_same_cases(a: Any, b: Any, expected: int) -> None:
    ea, eb = pson.encode(a), pson.encode(b)
    assert pj.same(ea, eb) == expected
    if expected != -1:
        assert bool(expected) == _same_python(ea, eb)


def test_float32_and_float64_of_one_value_are_the_same() -> None:
    f32 = b"\xc1\x81a\x40\x00\x00\x00\x3f"  # 0.5 as float32
    f64 = b"\xc1\x81a\x41" + b"\x00\x00\x00\x00\x00\x00\xe0\x3f"  # 0.5 as float64
    assert pson.decode(f32) == pson.decode(f64) == {"a": 0.5}
    assert pj.same(f32, f64) == 1
    assert pj.transcode(f32) == pj.transcode(f64) == b'{"a":0.5}'


# Floats with few decimals (what sensors send) take a shortcut past the general
# double-to-string: it must write what the Python path writes, down to the last digit.
few_decimals = st.builds(
    lambda m, k, sign: sign * m / 10**k,
    st.integers(0, 10**13),
    st.integers(0, 6),
    st.sampled_from([1, -1]),
)


@PARITY
@given(st.one_of(few_decimals, st.floats(allow_nan=False, allow_infinity=False)))
@example(0.1 + 0.2)
@example(1e-3)
@example(0.000999)
@example(999999999.9999)
@example(1e9)
@example(123456789.5)
@example(-21.6)
@example(0.05)
@example(5e-324)
def test_floats_are_written_as_the_python_path_writes_them(x: float) -> None:
    for payload in (pson.encode(x), pson.encode({"v": x}), pson.encode([x, -x])):
        got = _check(payload)
        if "e" not in repr(x):
            assert got is not None, x


@PARITY
@given(st.floats(-1e6, 1e6, allow_nan=False, width=32))
def test_float32_values_are_written_as_the_python_path_writes_them(x: float) -> None:
    assert _check(pson.encode({"v": x})) is not None or "e" in repr(pson.decode(pson.encode(x)))


@PARITY
@given(sensor_values, sensor_values)
def test_same_on_transcoded_payloads_agrees_with_the_hub(a: Any, b: Any) -> None:
    ea, eb = pson.encode(a), pson.encode(b)
    if pj.transcode(ea) is None or pj.transcode(eb) is None:
        return
    for x, y in ((ea, eb), (ea, ea), (eb, ea)):
        got = pj.same_transcoded(x, y)
        if got != -1:
            assert bool(got) == _same_python(x, y)
        if pj.same(x, y) != -1:
            assert got == pj.same(x, y)  # where the full comparison can tell, so can this


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (SAMPLE, SAMPLE, 1),
        ({**SAMPLE, "ts": 1}, {**SAMPLE, "ts": 2}, 0),
        ({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2.0]}, 1),
        ({"a": 1}, {"a": True}, 1),
        (1, True, 0),
        ({"a": 5, "b": 1, "c": 2}, {"a": 6, "c": 2, "b": 1}, 0),  # a differs: enough
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, -1),
    ],
)
def test_same_on_transcoded_payloads_cases(a: Any, b: Any, expected: int) -> None:
    ea, eb = pson.encode(a), pson.encode(b)
    assert pj.same_transcoded(ea, eb) == expected
    if expected != -1:
        assert bool(expected) == _same_python(ea, eb)


def test_same_on_transcoded_payloads_needs_them_transcoded() -> None:
    with pytest.raises(ValueError, match="must transcode"):
        pj.same_transcoded(pson.encode(1e300), pson.encode(1))
