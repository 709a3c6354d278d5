"""The stream frames' JSON decoder gives what ``json.loads`` gives, with or without orjson."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from iotmp.client import _json

FRAMES = [
    '{"resource":"bench","payload":123456}',
    '{"resource":"t","out":{"temperature":21.5,"humidity":40}}',
    '{"resource":"x","in":[1,2.5,"é",true,null]}',
    '{"a":1,"a":2}',
    '{"big":123456789012345678901234567890}',
    '{"neg":-18446744073709551617}',
    "-9223372036854775809",
    "18446744073709551616",
    "[9223372036854775807,-9223372036854775808,18446744073709551615]",
    '{"id":"device-12345678901234567890","v":1}',
    '{"s":"\\ud800"}',
    '{"f":1e400}',
    "[NaN, Infinity, -Infinity]",
    '"just a string"',
]
BAD = ["", "{", "{'a': 1}", '{"a":1,}', "[1 2]", "nul"]


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (json.loads accepts NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "stdlib"])
@pytest.mark.parametrize("text", FRAMES)
def test_same_values_as_json(text: str, fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fast:
        monkeypatch.setattr(_json, "_fast_loads", None)
    assert same(_json.loads(text), json.loads(text))


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "stdlib"])
@pytest.mark.parametrize("text", BAD)
def test_same_errors_as_json(text: str, fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fast:
        monkeypatch.setattr(_json, "_fast_loads", None)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(ValueError):
        _json.loads(text)


def test_orjson_is_used_when_installed() -> None:
    orjson = pytest.importorskip("orjson")
    assert _json._fast_loads is orjson.loads
