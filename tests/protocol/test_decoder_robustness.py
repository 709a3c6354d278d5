"""Hostile input: only ProtocolError, bounded time and memory (no timing assertions)."""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import examples
from vector_util import load

from iotmp.protocol import (
    Limits,
    ProtocolError,
)
from iotmp.protocol.speedups import CodecImpl
from iotmp.protocol.varint import encode_varint

FUZZ = settings(
    max_examples=examples(400),
    deadline=timedelta(milliseconds=2000),
    suppress_health_check=[HealthCheck.too_slow],
)
FRAMES = [bytes.fromhex(f["hex"]) for f in load("frames.json")]
PSON = [bytes.fromhex(v["hex"]) for v in load("pson.json")]
NEW = [bytes.fromhex(v["hex"]) for v in load("pson.json") if v["pson_version"] == "new"]
LEGACY = [bytes.fromhex(v["hex"]) for v in load("pson.json") if v["pson_version"] == "legacy"]


def _only_protocol_error(fn: Callable[[], Any]) -> None:
    with contextlib.suppress(ProtocolError):
        fn()


def _mutations(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Seed vectors with random byte edits, cuts and junk (finds more than pure noise)."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 4))):
            op = draw(st.integers(0, 2))
            pos = draw(st.integers(0, len(data)))
            if op == 0 and pos < len(data):
                data[pos] = draw(st.integers(0, 255))
            elif op == 1:
                data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
            else:
                del data[pos : pos + draw(st.integers(1, 4))]
        return bytes(data)

    return st.one_of(st.binary(max_size=200), mutate())


@given(_mutations(PSON))
@FUZZ
def test_pson_fuzz(impl: CodecImpl, data: bytes) -> None:
    _only_protocol_error(lambda: impl.pson.decode(data))
    _only_protocol_error(lambda: impl.pson_legacy.decode(data))
    _only_protocol_error(lambda: impl.pson.decode_at(data, 0, len(data), 2))
    _only_protocol_error(lambda: impl.pson_legacy.decode_at(data, 0, len(data), 2))


@given(_mutations(FRAMES))
@FUZZ
def test_message_fuzz(impl: CodecImpl, data: bytes) -> None:
    _only_protocol_error(lambda: impl.codec.decode_message(data))
    decoder = impl.codec.MessageDecoder(Limits(max_message_size=100))
    _only_protocol_error(lambda: decoder.feed(data))


@given(st.lists(_mutations(FRAMES), max_size=5), st.integers(1, 9))
@settings(max_examples=examples(150), deadline=timedelta(milliseconds=2000))
def test_stream_fuzz(impl: CodecImpl, chunks: list[bytes], step: int) -> None:
    decoder = impl.codec.MessageDecoder()
    stream = b"".join(chunks)
    try:
        for i in range(0, len(stream), step):
            decoder.feed(stream[i : i + step])
    except ProtocolError:
        # a failed decoder keeps failing
        with pytest.raises(ProtocolError):
            decoder.feed(b"\x05\x00")


@pytest.mark.parametrize("frame", FRAMES, ids=range(len(FRAMES)))
def test_truncated_frames(impl: CodecImpl, frame: bytes) -> None:
    for cut in range(len(frame)):
        with pytest.raises(ProtocolError):
            impl.codec.decode_message(frame[:cut])
        decoder = impl.codec.MessageDecoder()
        assert decoder.feed(frame[:cut]) == []  # incomplete: just waits
        assert decoder.buffered == cut
        assert len(decoder.feed(frame[cut:])) == 1
    with pytest.raises(ProtocolError, match="trailing"):
        impl.codec.decode_message(frame + b"\x00")


def test_oversized_body_rejected_from_header(impl: CodecImpl) -> None:
    limits = Limits(max_message_size=100)
    decoder = impl.codec.MessageDecoder(limits)
    with pytest.raises(ProtocolError, match="exceeds the limit of 100"):
        decoder.feed(b"\x0a\x65")  # 101 body bytes announced, none sent
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.feed(b"")  # stays failed
    assert decoder.buffered == 0
    # exactly at the limit: waits for the body
    decoder = impl.codec.MessageDecoder(limits)
    assert decoder.feed(b"\x0a\x64") == []
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        impl.codec.decode_message(b"\x0a\xff\xff\xff\xff\x0f")
    # default limit is 64 KiB
    with pytest.raises(ProtocolError, match="65537 bytes exceeds the limit of 65536"):
        impl.codec.MessageDecoder().feed(b"\x0a" + encode_varint(65537))


def test_overlong_header_varints(impl: CodecImpl) -> None:
    with pytest.raises(ProtocolError, match="longer than 5"):
        impl.codec.MessageDecoder().feed(b"\x0a\x80\x80\x80\x80\x80")  # fails before any 6th byte
    with pytest.raises(ProtocolError, match="longer than 5"):
        impl.codec.MessageDecoder().feed(b"\x80\x80\x80\x80\x80")
    with pytest.raises(ProtocolError, match="32 bits"):
        impl.codec.decode_message(b"\x0a\x80\x80\x80\x80\x10")
    with pytest.raises(ProtocolError, match="longer than 5"):
        impl.codec.decode_message(b"\x0a\x06" + b"\x88\x80\x80\x80\x80\x00")  # 6-byte key


@pytest.mark.parametrize(
    ("hexstr", "match"),
    [
        ("0a06" + "088080808010", "32 bits"),  # varint field value 2**32
        ("0a02" + "0b00", "wire type 3"),
        ("0a02" + "0f00", "wire type 7"),
        ("0a01" + "1a", "no PSON value"),
        ("0a01" + "19", "truncated"),
        ("0a01" + "08", "truncated varint"),
        ("0a02" + "1a82", "overruns"),
        ("0a03" + "1a8261", "overruns"),
        ("0a02" + "1a8162", "trailing"),  # decode_message: size says 2, 3 bytes follow
        ("0a02" + "1a42", "float sub-code"),
        ("0a02" + "1a63", "discrete sub-code"),
        ("0a04" + "1a82c328", "UTF-8"),
        ("0a04" + "1ac10101", "expected a string"),
        ("0a03" + "1a0203", "trailing"),
    ],
)
def test_bad_bodies(impl: CodecImpl, hexstr: str, match: str) -> None:
    data = bytes.fromhex(hexstr)
    if match != "trailing":
        with pytest.raises(ProtocolError, match=match):
            impl.codec.decode_message(data)
        with pytest.raises(ProtocolError, match=match):
            impl.codec.MessageDecoder().feed(data)
    else:
        with pytest.raises(ProtocolError):
            impl.codec.decode_message(data)


def test_field_must_end_inside_body(impl: CodecImpl) -> None:
    # body of 2 bytes "1a 82" then "61 62": the string overruns the body even though
    # the stream has the bytes -> error, not a read into the next message
    with pytest.raises(ProtocolError, match="overruns"):
        impl.codec.MessageDecoder().feed(bytes.fromhex("0a021a82" + "6162"))
    with pytest.raises(ProtocolError, match="truncated"):
        impl.codec.MessageDecoder().feed(bytes.fromhex("0a0219" + "6a00"))


@pytest.mark.parametrize(
    ("codec", "hexstr", "match"),
    [
        ("pson", "3f" + encode_varint(2**63 + 1).hex(), "exceeds 2\\*\\*63"),
        ("pson", "1f" + "80" * 10 + "01", "longer than 10"),
        ("pson", "1f" + "ff" * 9 + "02", "64 bits"),
        ("pson", "5f02", "float sub-code"),
        ("pson", "40000000", "truncated"),
        ("pson", "41" + "00" * 7, "truncated"),
        ("pson", "7f03", "discrete"),
        ("pson", "", "truncated"),
        ("pson", "8161ff", "trailing"),
        ("pson", "83ffffff", "UTF-8"),
        ("pson", "82eda080", "UTF-8"),  # surrogate
        ("pson", "c1 9f 01 61 01", None),
        ("pson", "c1 01 01", "expected a string"),
        ("pson", "c1 a1 61 01", "expected a string"),
        ("pson_legacy", "10" + encode_varint(2**63 + 1).hex(), "exceeds 2\\*\\*63"),
        ("pson_legacy", "08" + "80" * 10 + "01", "longer than 10"),
        ("pson_legacy", "0f", "invalid legacy PSON tag"),
        ("pson_legacy", "8801", "invalid legacy PSON tag"),
        ("pson_legacy", "1d000000", "truncated"),
        ("pson_legacy", "2100", "truncated"),
        ("pson_legacy", "4a02ff61", "UTF-8"),
        ("pson_legacy", "6a02" + "0161", "truncated"),  # key without a value
        ("pson_legacy", "6a03" + "016140" + "38", "trailing"),
        ("pson_legacy", "7202" + "0880" + "01", "truncated"),  # element overruns the array
        ("pson_legacy", "6a04" + "05616263" + "40", "claims 5 bytes"),
        ("pson_legacy", "", "truncated"),
    ],
)
def test_bad_pson(impl: CodecImpl, codec: Any, hexstr: str, match: str | None) -> None:
    codec = getattr(impl, codec)
    data = bytes.fromhex(hexstr.replace(" ", ""))
    if match is None:
        assert codec.decode(data) == {"a": 1}  # escaped key length is fine
        return
    with pytest.raises(ProtocolError, match=match):
        codec.decode(data)


def test_largest_negative_magnitude_is_accepted(impl: CodecImpl) -> None:
    assert impl.pson.decode(b"\x3f" + encode_varint(2**63)) == -(2**63)
    assert impl.pson_legacy.decode(b"\x10" + encode_varint(2**63)) == -(2**63)


def _legacy_nested(levels: int) -> bytes:
    data = b"\x00"
    for _ in range(levels):
        data = b"\x72" + encode_varint(len(data)) + data
    return data


@pytest.mark.parametrize(
    ("codec", "data"),
    [
        ("pson", b"\xe1" * 100_000 + b"\x00"),
        ("pson", b"\xc1\x81a" * 50_000 + b"\x00"),
        ("pson", b"\xe1" * 100_000),
        ("pson_legacy", _legacy_nested(2_000)),
    ],
    ids=["arrays", "maps", "arrays-truncated", "legacy-arrays"],
)
def test_deep_nesting(impl: CodecImpl, codec: Any, data: bytes) -> None:
    codec = getattr(impl, codec)
    with pytest.raises(ProtocolError, match="depth"):
        codec.decode(data)
    # even a caller-raised depth limit cannot crash the interpreter
    with pytest.raises(ProtocolError):
        codec.decode(data, max_depth=10**9)
    key = b"\x1a" if codec is impl.pson else b"\x19"
    frame = b"\x0a" + encode_varint(len(data) + 1) + key + data
    with pytest.raises(ProtocolError, match="depth"):
        impl.codec.decode_message(frame, Limits(max_message_size=10**7))


def test_depth_limit_is_exact(impl: CodecImpl) -> None:
    ok = b"\xe1" * 32 + b"\x00"
    assert impl.pson.decode(ok) is not None
    with pytest.raises(ProtocolError, match="depth"):
        impl.pson.decode(b"\xe1" + ok)
    assert impl.pson.decode(b"\xe1\x00", max_depth=1) == [0]
    with pytest.raises(ProtocolError, match="depth"):
        impl.pson.decode(b"\xe0", max_depth=0)
    assert impl.pson.decode(b"\x05", max_depth=0) == 5
    with pytest.raises(ProtocolError, match="depth"):
        impl.codec.decode_message(b"\x0a\x03\x1a\xe1\xe0", Limits(max_depth=1))


GIANT = [
    ("pson", "df" + encode_varint(2**40).hex() + "8161 01"),
    ("pson", "ff" + encode_varint(2**60).hex() + "00"),
    ("pson", "9f" + encode_varint(2**63).hex() + "61"),
    ("pson", "bf" + encode_varint(2**64 - 1).hex() + "61"),
    ("pson", "c1 9f" + encode_varint(2**62).hex() + "61"),
    ("pson_legacy", "4a" + encode_varint(2**40).hex() + "61"),
    ("pson_legacy", "5a" + encode_varint(2**40).hex() + "61"),
    ("pson_legacy", "6a" + encode_varint(2**50).hex() + "0161 40"),
    ("pson_legacy", "72" + encode_varint(2**63).hex() + "40"),
]


@pytest.mark.parametrize(("codec", "hexstr"), GIANT, ids=range(len(GIANT)))
def test_giant_claimed_lengths(impl: CodecImpl, codec: Any, hexstr: str) -> None:
    codec = getattr(impl, codec)
    data = bytes.fromhex(hexstr.replace(" ", ""))
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match=r"remain|overrun"):
            codec.decode(data)
        frame = (
            b"\x0a" + encode_varint(len(data) + 1) + (b"\x1a" if codec is impl.pson else b"\x19")
        )
        with pytest.raises(ProtocolError):
            impl.codec.decode_message(frame + data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_map_count_checked_against_remaining_bytes(impl: CodecImpl) -> None:
    # 3 entries need at least 6 bytes; 5 remain
    with pytest.raises(ProtocolError, match="claims 3 entries"):
        impl.pson.decode(bytes.fromhex("c3" + "8161" + "018162"))
    with pytest.raises(ProtocolError, match="claims 4 elements"):
        impl.pson.decode(bytes.fromhex("e4010203"))


def test_huge_but_allowed_message_streams_without_quadratic_cost(impl: CodecImpl) -> None:
    """A max-size message fed in small chunks decodes once (buffering is linear)."""
    payload = {"blob": b"\x00" * 60_000}
    frame = (
        b"\x0a"
        + encode_varint(len(impl.pson.encode(payload)) + 1)
        + b"\x1a"
        + impl.pson.encode(payload)
    )
    decoder = impl.codec.MessageDecoder()
    out = []
    for i in range(0, len(frame), 100):
        out += decoder.feed(frame[i : i + 100])
    assert len(out) == 1
    assert out[0].payload == payload
