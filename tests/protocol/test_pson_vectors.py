"""Every vector of tests/data/vectors/pson.json, decoded and re-encoded byte for byte."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from vector_util import from_json, load, same

from iotmp.protocol.errors import ProtocolError
from iotmp.protocol.speedups import CodecImpl

VECTORS = load("pson.json")

# Vectors whose ``value`` cannot be encoded back to ``hex``: none. (Every vector's
# value maps to exactly its bytes under the spec 5.2 / 6.2 rules, including NaN,
# +-inf, -0.0, 2**63 as a double and the lossy legacy float32 demotions.)
ENCODE_EXCEPTIONS: dict[str, str] = {}


def _codec(impl: CodecImpl, vector: dict[str, Any]) -> Any:
    return impl.pson if vector["pson_version"] == "new" else impl.pson_legacy


def _ids(vector: dict[str, Any]) -> str:
    return str(vector["name"])


def test_vector_file_shape() -> None:
    assert len(VECTORS) == 140
    assert sum(v["pson_version"] == "new" for v in VECTORS) == 70
    assert {v["iotmp_field_wire_type"] for v in VECTORS if v["pson_version"] == "new"} == {2}
    assert {v["iotmp_field_wire_type"] for v in VECTORS if v["pson_version"] == "legacy"} == {1}


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
def test_decode(impl: CodecImpl, vector: dict[str, Any]) -> None:
    expected = from_json(vector.get("decoded", vector["value"]))
    data = bytes.fromhex(vector["hex"])
    decoded = _codec(impl, vector).decode(data)
    assert same(decoded, expected), (decoded, expected)


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
def test_encode(impl: CodecImpl, vector: dict[str, Any]) -> None:
    if vector["name"] in ENCODE_EXCEPTIONS:
        pytest.skip(ENCODE_EXCEPTIONS[vector["name"]])
    value = from_json(vector["value"])
    assert _codec(impl, vector).encode(value).hex() == vector["hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
def test_decode_at_inside_larger_buffer(impl: CodecImpl, vector: dict[str, Any]) -> None:
    """decode_at() stops at the value's end, from any offset, with bytes after it."""
    data = bytes.fromhex(vector["hex"])
    buf = b"\xee\xee" + data + b"\x99\x99\x99"
    codec = _codec(impl, vector)
    value, pos = codec.decode_at(buf, 2, len(buf))
    assert pos == 2 + len(data)
    expected = from_json(vector.get("decoded", vector["value"]))
    assert same(value, expected)
    # a bytearray / memoryview and an ``end`` right after the value work too
    value2, pos2 = codec.decode_at(bytearray(buf), 2, 2 + len(data))
    assert pos2 == pos
    assert same(value2, expected)
    value3, _ = codec.decode_at(memoryview(buf), 2, 2 + len(data))
    assert same(value3, expected)


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
def test_decode_rejects_trailing_and_truncated(impl: CodecImpl, vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    codec = _codec(impl, vector)
    with pytest.raises(ProtocolError, match="trailing"):
        codec.decode(data + b"\x00")
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            codec.decode(data[:cut])


def test_spec_worked_example_55_bytes(impl: CodecImpl) -> None:
    """Spec 5.4: the [Bench] README payload is 55 bytes in insertion order (57 legacy)."""
    sample = {"temperature": 23.5, "humidity": 60, "pressure": 1013, "label": "outdoor"}
    data = impl.pson.encode(sample)
    assert len(data) == 55
    assert data.hex() == (
        "c48b74656d7065726174757265400000bc418868756d69646974791f3c88"
        "7072657373757265" + "1ff507856c6162656c876f7574646f6f72"
    )
    assert len(impl.pson_legacy.encode(sample)) == 57


@pytest.mark.parametrize(
    ("value", "hexstr"),
    [
        (-(2**40), "3f808080808020"),
        (31, "1f1f"),
        (22.0, "16"),
        (-0.0, "00"),
        (0.1, "419a9999999999b93f"),
        (2.0**63, "400000005f"),
        (-(2.0**63), "3f80808080808080808001"),  # whole and within int64 -> integer
        (1e20, "41408cb5781daf1544"),
        (float(2**64), "400000805f"),  # integral, outside int64, float32-exact
        (1.401298464324817e-45, "4001000000"),  # smallest float32 subnormal is exact
        (3.4028234663852886e38, "40ffff7f7f"),  # FLT_MAX is exact
        (3.4028235677973366e38, "41" + struct.pack("<d", 3.4028235677973366e38).hex()),
        (3.5e38, "41" + struct.pack("<d", 3.5e38).hex()),  # beyond FLT_MAX: float64
        (
            float.fromhex("0x1.fffffefp127"),
            "41" + struct.pack("<d", float.fromhex("0x1.fffffefp127")).hex(),
        ),
        (True, "61"),
        (False, "60"),
        (None, "62"),
        ((1, 2), "e20102"),
        (bytearray(b"\x01"), "a101"),
        ("x" * 31, "9f1f" + "78" * 31),
    ],
)
def test_extra_new_encodings(impl: CodecImpl, value: Any, hexstr: str) -> None:
    assert impl.pson.encode(value).hex() == hexstr


@pytest.mark.parametrize(
    ("value", "hexstr"),
    [
        (0.1, "1dcdcccc3d"),
        (-1e-300, "1d00000080"),
        (2.0, "0802"),
        (-0.0, "38"),
        (True, "28"),
        ("", "50"),
        (b"", "60"),
        ([], "7200"),
        ({}, "6a00"),
        (["user", "device", "pass"], "72144a04757365724a066465766963654a0470617373"),
        (300, "08ac02"),
        (-1, "1001"),
    ],
)
def test_extra_legacy_encodings(impl: CodecImpl, value: Any, hexstr: str) -> None:
    """Examples from spec 6.1 / 6.2."""
    assert impl.pson_legacy.encode(value).hex() == hexstr


def test_legacy_empty_tag_and_null_decode_as_none(impl: CodecImpl) -> None:
    assert impl.pson_legacy.decode(b"\x78") is None
    assert impl.pson_legacy.decode(b"\x00") is None
