"""The token bucket, pure and compiled (``_ratelimit_c``), on an injected clock.

The compiled copy is built from ratelimit.py itself (hatch_build.py); both must spend,
refuse and refill alike, since the session takes its receive budget from whichever is
installed and the compiled sample path takes it in C.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotmp.protocol import speedups
from iotmp.protocol.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _classes() -> dict[str, Any]:
    pure, compiled = speedups.twins("ratelimit")
    classes: dict[str, Any] = {"python": pure.TokenBucket}
    if compiled is not None:
        classes["compiled"] = compiled.TokenBucket
    elif os.environ.get("IOTMP_REQUIRE_EXTENSIONS", "") not in ("", "0"):
        pytest.fail("the compiled rate limiter is not built (IOTMP_REQUIRE_EXTENSIONS=1)")
    return classes


CLASSES = _classes()


@pytest.fixture(params=["python", "compiled"])
def bucket_class(request: pytest.FixtureRequest) -> Any:
    if request.param not in CLASSES:
        pytest.skip("the compiled rate limiter is not built")
    return CLASSES[request.param]


def test_installed_is_the_compiled_one_when_built() -> None:
    expected = "compiled" if "compiled" in CLASSES and not speedups._DISABLED else "python"
    assert TokenBucket is CLASSES[expected]


def test_burst_then_refusal_then_refill(bucket_class: Any) -> None:
    clock = Clock()
    bucket = bucket_class(2.0, 3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back
    assert bucket.take() is True
    assert bucket.take() is False
    clock.now += 100  # refills to the burst, not beyond
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert (bucket.rate, bucket.burst) == (2.0, 3.0)


def test_a_refused_take_spends_nothing(bucket_class: Any) -> None:
    clock = Clock()
    bucket = bucket_class(1.0, 5, clock=clock)
    assert bucket.take(4) is True
    assert bucket.take(2) is False  # 1 left: nothing spent
    assert bucket.take(1) is True
    assert bucket.take(1) is False


@pytest.mark.parametrize(("rate", "burst"), [(0, 5), (-1, 5), (1, 0.5)])
def test_bad_arguments_are_refused(bucket_class: Any, rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="need rate > 0 and burst >= 1"):
        bucket_class(rate, burst)


@given(
    rate=st.floats(0.01, 1e6),
    burst=st.integers(1, 1000),
    steps=st.lists(st.tuples(st.floats(0, 10), st.integers(0, 50)), max_size=40),
)
def test_both_copies_agree(rate: float, burst: int, steps: list[tuple[float, int]]) -> None:
    if "compiled" not in CLASSES:
        pytest.skip("the compiled rate limiter is not built")
    clocks = {name: Clock() for name in CLASSES}
    buckets = {name: cls(rate, burst, clock=clocks[name]) for name, cls in CLASSES.items()}
    for advance, count in steps:
        answers = set()
        for name, bucket in buckets.items():
            clocks[name].now += advance
            answers.add(bucket.take(count))
        assert len(answers) == 1
