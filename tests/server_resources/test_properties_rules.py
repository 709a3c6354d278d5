"""The pure parts of properties: RFC 7386 merge patch, ids, sizes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from iotmp.server.properties.rules import PropertyError, check_id, json_size, merge_patch

# RFC 7386, Appendix A: (target, patch, result)
RFC_7386_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7386_EXAMPLES)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    before = copy.deepcopy((target, patch))
    assert merge_patch(target, patch) == result
    assert (target, patch) == before  # neither argument is modified


@pytest.mark.parametrize("prop", ["a", "A-b_c.d", "x" * 64, "0"])
def test_good_ids(prop: str) -> None:
    assert check_id(prop) == prop


@pytest.mark.parametrize("prop", ["", "x" * 65, "a b", "a/b", "é", 5, None, ["a"]])
def test_bad_ids(prop: Any) -> None:
    with pytest.raises(PropertyError) as info:
        check_id(prop)
    assert info.value.status == 400


def test_size_is_the_compact_utf8_json() -> None:
    assert json_size({"a": [1, 2]}) == len(b'{"a":[1,2]}')
    assert json_size("é") == 4  # two quotes and two UTF-8 bytes
