"""LEB128 varints (spec 2.1): examples, limits, incremental decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotmp.protocol.errors import ProtocolError
from iotmp.protocol.speedups import CodecImpl

SPEC_EXAMPLES = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (300, "ac02"),
    (5000, "8827"),
    (65535, "ffff03"),
    (2**32, "8080808010"),
    (2**64 - 1, "ffffffffffffffffff01"),
]


@pytest.mark.parametrize(("value", "hexstr"), SPEC_EXAMPLES)
def test_spec_examples(impl: CodecImpl, value: int, hexstr: str) -> None:
    data = bytes.fromhex(hexstr)
    assert impl.varint.encode_varint(value) == data
    assert impl.varint.varint_size(value) == len(data)
    assert impl.varint.decode_varint64(data, 0, len(data)) == (value, len(data))
    if value < 2**32:
        assert impl.varint.decode_varint32(data, 0, len(data)) == (value, len(data))


def test_encode_rejects_out_of_range(impl: CodecImpl) -> None:
    with pytest.raises(ValueError, match="negative"):
        impl.varint.encode_varint(-1)
    with pytest.raises(ValueError, match="64 bits"):
        impl.varint.encode_varint(2**64)


def test_varint32_limits(impl: CodecImpl) -> None:
    # 2**32 needs 5 bytes but does not fit in 32 bits
    data = bytes.fromhex("8080808010")
    with pytest.raises(ProtocolError, match="32 bits"):
        impl.varint.decode_varint32(data, 0, len(data))
    # 2**32 - 1 is the largest accepted value
    data = bytes.fromhex("ffffffff0f")
    assert impl.varint.decode_varint32(data, 0, 5) == (2**32 - 1, 5)
    # six bytes are never accepted, even with a small value
    data = bytes.fromhex("808080808000")
    with pytest.raises(ProtocolError, match="longer than 5"):
        impl.varint.decode_varint32(data, 0, len(data))
    # the error is raised as soon as the 5th byte says "more follows"
    with pytest.raises(ProtocolError, match="longer than 5"):
        impl.varint.try_decode_varint32(bytes.fromhex("8080808080"), 0, 5)


def test_varint32_truncated_and_incomplete(impl: CodecImpl) -> None:
    data = bytes.fromhex("8080")
    with pytest.raises(ProtocolError, match="truncated"):
        impl.varint.decode_varint32(data, 0, 2)
    assert impl.varint.try_decode_varint32(data, 0, 2) is None
    assert impl.varint.try_decode_varint32(b"", 0, 0) is None
    # respects ``end`` even when the buffer has more bytes
    assert impl.varint.try_decode_varint32(bytes.fromhex("8001"), 0, 1) is None


def test_varint64_limits(impl: CodecImpl) -> None:
    with pytest.raises(ProtocolError, match="longer than 10"):
        impl.varint.decode_varint64(bytes.fromhex("80" * 10 + "01"), 0, 11)
    with pytest.raises(ProtocolError, match="64 bits"):
        impl.varint.decode_varint64(bytes.fromhex("ff" * 9 + "02"), 0, 10)
    with pytest.raises(ProtocolError, match="truncated"):
        impl.varint.decode_varint64(bytes.fromhex("ff" * 3), 0, 3)
    with pytest.raises(ProtocolError, match="truncated"):
        impl.varint.decode_varint64(b"", 0, 0)


def test_non_minimal_forms_are_accepted(impl: CodecImpl) -> None:
    # the references accept them; so do we (within the byte limit)
    assert impl.varint.decode_varint32(bytes.fromhex("8000"), 0, 2) == (0, 2)
    assert impl.varint.decode_varint64(bytes.fromhex("8180808000"), 0, 5) == (1, 5)


def test_decode_at_offset(impl: CodecImpl) -> None:
    data = bytes.fromhex("ffac02ff")
    assert impl.varint.decode_varint32(data, 1, 3) == (300, 3)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_roundtrip64(impl: CodecImpl, value: int) -> None:
    data = impl.varint.encode_varint(value)
    assert len(data) == impl.varint.varint_size(value)
    assert impl.varint.decode_varint64(data, 0, len(data)) == (value, len(data))


@given(st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=4))
def test_roundtrip32_with_trailing(impl: CodecImpl, value: int, tail: bytes) -> None:
    data = impl.varint.encode_varint(value) + tail
    n = impl.varint.varint_size(value)
    assert impl.varint.decode_varint32(data, 0, len(data)) == (value, n)
    for cut in range(n):
        assert impl.varint.try_decode_varint32(data, 0, cut) is None
