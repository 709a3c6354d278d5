"""Event filters (globs, linear matching) and the device value check, as pure functions."""

from __future__ import annotations

import time

import pytest

from iotmp.protocol.limits import Limits, value_problem
from iotmp.server.event_filters import FilterError, compile_filter, matches


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("esp.*", "esp32", True),
        ("esp.*", "my-esp32", False),
        (".*", "", True),
        ("device_.*", "device_state_change", True),
        ("device_state_change", "device_state_change", True),
        ("device_state_change", "device_state_changes", False),
        ("lamp*", "lamp-2", True),
        ("l?mp", "lamp", True),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "axxbyy", False),
        ("a\\.b", "a.b", True),
        ("a\\.b", "axb", False),
        ("lamp|plug", "lamp", False),  # no alternation: matched literally
        ("lamp|plug", "lamp|plug", True),
    ],
)
def test_glob_semantics(pattern: str, text: str, expected: bool) -> None:
    assert matches(compile_filter(pattern), text) is expected


def test_backtracking_patterns_match_in_linear_time() -> None:
    started = time.perf_counter()
    for pattern in ("((.|.)*)*z", "(a|aa)*b" * 4, "*a" * 120 + "b"):
        assert not matches(compile_filter(pattern), "a" * 5_000)
    assert time.perf_counter() - started < 2.0  # a backtracking regex: hours


def test_filter_length_is_capped() -> None:
    compile_filter("x" * 256)
    with pytest.raises(FilterError):
        compile_filter("x" * 257)


def test_value_problem_mirrors_the_device_decoder() -> None:
    nested = 0
    for _ in range(32):
        nested = [nested]
    assert value_problem(nested) is None
    assert value_problem([nested]) is not None
    assert value_problem({"a": [nested]}) is not None
    assert value_problem(2**64 - 1) is None
    assert value_problem(2**64) is not None
    assert value_problem(-(2**63)) is None
    assert value_problem(-(2**63) - 1) is not None
    assert value_problem({1: 2}) is not None
    assert value_problem({1, 2}) is not None
    assert value_problem(nested, Limits(max_depth=31)) is not None
    deep: object = 0
    for _ in range(100_000):  # no recursion: any depth can be checked
        deep = [deep]
    assert value_problem(deep) is not None
