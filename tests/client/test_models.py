"""Pure parsing rules: resource flattening, device records, URL helpers."""

from __future__ import annotations

from typing import Any

import pytest

from iotmp.client import (
    ABSENT,
    DeviceRecord,
    IotmpApiError,
    ResourceInfo,
    TokenSet,
    flatten_resources,
    normalize_base_url,
    quote_resource,
)


def test_flatten_v3_drops_dollar_names() -> None:
    description = {
        "led": {"fn": 2},
        "temperature": {"fn": 3},
        "reboot": {"fn": 1},
        "$ota/options": {"fn": 3},
        "$cmd": {"fn": 4},
        "config/$secret": {"fn": 3},
    }
    assert flatten_resources(description) == {
        "led": {"fn": 2},
        "temperature": {"fn": 3},
        "reboot": {"fn": 1},
    }


def test_flatten_legacy_nesting() -> None:
    # Legacy (protoson) devices nest children under "/" with "al":0 (thinger-api.md 3.2).
    description = {
        "x": {"al": 0, "fn": 0, "/": {"y": {"al": 0, "fn": 3}, "$z": {"al": 0, "fn": 3}}},
        "$ota": {"/": {"options": {"al": 0, "fn": 3}}},
        "both": {"al": 0, "fn": 4, "/": {"child": {"al": 0, "fn": 2, "/": {"deep": {"fn": 1}}}}},
        "plain": {"al": 0, "fn": 2},
    }
    assert flatten_resources(description) == {
        "x/y": {"al": 0, "fn": 3},
        "both": {"al": 0, "fn": 4},
        "both/child": {"al": 0, "fn": 2},
        "both/child/deep": {"fn": 1},
        "plain": {"al": 0, "fn": 2},
    }


def test_flatten_skips_garbage_entries() -> None:
    description: dict[str, Any] = {
        "": {"fn": 2},
        "/": {"fn": 2},
        "container": {"fn": 0},
        "nofn": {"st": True},
        "boolfn": {"fn": True},
        "strfn": {"fn": "2"},
        "notdict": 5,
        "ok": {"fn": 3, "st": False, "pr": True, "id": 7},
        "weird children": {"fn": 0, "/": [1, 2]},
    }
    assert flatten_resources(description) == {"ok": {"fn": 3, "st": False, "pr": True, "id": 7}}


def test_flatten_depth_limit() -> None:
    node: dict[str, Any] = {"leaf": {"fn": 3}}
    for _ in range(100):
        node = {"n": {"fn": 0, "/": node}}
    assert flatten_resources(node) == {}


@pytest.mark.parametrize("description", [None, [], "x", 5])
def test_flatten_rejects_non_objects(description: Any) -> None:
    with pytest.raises(IotmpApiError, match="unexpected resource description"):
        flatten_resources(description)


def test_device_record_full() -> None:
    raw = {
        "device": "generic0",
        "name": "Generic0",
        "description": "desc",
        "type": "Generic",
        "enabled": False,
        "user": "thinger",
        "connection": {"active": True, "ts": 1700748637189, "security": "TLSv1.3"},
    }
    record = DeviceRecord.from_json(raw)
    assert record == DeviceRecord(
        device_id="generic0",
        name="Generic0",
        description="desc",
        type="Generic",
        enabled=False,
        connected=True,
        connection_ts=1700748637189,
        raw=raw,
    )
    assert record.raw is raw


def test_device_record_minimal() -> None:
    record = DeviceRecord.from_json({"device": "d", "name": "", "connection": {"ts": 1.5e12}})
    assert record.name == "d"
    assert record.description == ""
    assert record.type == ""
    assert record.enabled is True
    assert record.connected is False
    assert record.connection_ts == 1_500_000_000_000
    odd = DeviceRecord.from_json(
        {"device": "d", "enabled": "yes", "connection": {"active": 1, "ts": True}}
    )
    assert odd.enabled is True
    assert odd.connected is False
    assert odd.connection_ts is None
    assert DeviceRecord.from_json({"device": "d", "connection": None}).connection_ts is None


@pytest.mark.parametrize("raw", [None, [], "d", {"name": "x"}, {"device": ""}, {"device": 3}])
def test_device_record_rejects(raw: Any) -> None:
    with pytest.raises(IotmpApiError, match="device record"):
        DeviceRecord.from_json(raw)


def test_resource_info_defaults_and_token_repr() -> None:
    info = ResourceInfo(name="a", fn=1)
    assert info.sample_in is ABSENT
    assert info.sample_out is ABSENT
    assert info.raw == {}
    tokens = TokenSet(access_token="secret-a", refresh_token="secret-r", expires_at=None)
    assert "secret" not in repr(tokens)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.thinger.io", "https://api.thinger.io"),
        ("https://api.thinger.io/", "https://api.thinger.io"),
        ("  http://127.0.0.1:8080//  ", "http://127.0.0.1:8080"),
        ("https://example.org/thinger/", "https://example.org/thinger"),
        ("https://example.org/a/b///", "https://example.org/a/b"),
        ("HTTPS://Example.org", "https://example.org"),
    ],
)
def test_normalize_base_url(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "",
        "api.thinger.io",
        "ftp://x.org",
        "https://",
        "http://h/?q=1",
        "http://h/#f",
        5,
        "http://[::1",
        "https://u:p@host",
    ],
)
def test_normalize_base_url_rejects(given: Any) -> None:
    with pytest.raises(ValueError):
        normalize_base_url(given)


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("temp", "temp"),
        ("a/b", "a/b"),
        ("$ota/options", "%24ota/options"),
        ("living room", "living%20room"),
        ("température", "temp%C3%A9rature"),
        ("q?x=1#f", "q%3Fx%3D1%23f"),
        ("50%", "50%25"),
        ("a+b&c", "a%2Bb%26c"),
    ],
)
def test_quote_resource(resource: str, expected: str) -> None:
    assert quote_resource(resource) == expected
