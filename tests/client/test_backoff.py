"""Backoff: capped exponential delays with jitter (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from iotmp.client import Backoff
from iotmp.client.streams import default_backoff


def test_deterministic_sequence_caps_at_maximum() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, maximum=60.0, jitter=0.0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert backoff.attempts == 10


def test_reset_starts_again() -> None:
    backoff = Backoff(initial=0.5, maximum=4, jitter=0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 0.5


def test_full_jitter_bounds() -> None:
    values = iter([0.0, 0.999999, 0.5])
    backoff = Backoff(initial=1.0, factor=2.0, maximum=60.0, jitter=1.0, rng=lambda: next(values))
    assert backoff.next_delay() == 1.0  # rng 0 -> the ceiling
    assert 0 < backoff.next_delay() < 0.001  # rng ~1 -> almost nothing, never 0
    assert backoff.next_delay() == 2.0  # half of ceiling 4


def test_equal_jitter_keeps_half() -> None:
    backoff = Backoff(initial=10, maximum=10, jitter=0.5, rng=lambda: 0.999)
    assert backoff.next_delay() == pytest.approx(5.005)


def test_random_delays_stay_in_range() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, maximum=60.0)
    for attempt in range(200):
        delay = backoff.next_delay()
        assert 0 < delay <= backoff.ceiling(attempt) <= 60


def test_no_overflow_after_many_attempts() -> None:
    backoff = Backoff(initial=0.001, factor=10.0, maximum=60.0, jitter=0)
    for _ in range(10_000):
        delay = backoff.next_delay()
    assert delay == 60.0
    assert backoff.ceiling(10**9) == 60.0
    assert backoff.ceiling(-5) == 0.001


def test_factor_one_is_constant() -> None:
    backoff = Backoff(initial=2.0, factor=1.0, maximum=5.0, jitter=0)
    assert [backoff.next_delay() for _ in range(3)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": 5, "maximum": 1},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"jitter": -0.1},
    ],
)
def test_invalid_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_default_backoff_and_repr() -> None:
    backoff = default_backoff()
    assert (backoff.initial, backoff.factor, backoff.maximum, backoff.jitter) == (
        0.5,
        2.0,
        30.0,
        0.5,
    )
    assert "initial=0.5" in repr(backoff)
    # the first retry after a drop comes in under a second, and never instantly
    assert all(0.25 <= default_backoff().next_delay() <= 0.5 for _ in range(100))
