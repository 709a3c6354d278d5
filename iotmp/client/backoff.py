"""Capped exponential backoff with jitter (pure: no clock, no sleeping)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable


class Backoff:
    """Delays for reconnect attempts: ``initial * factor**n`` capped at ``maximum``.

    ``jitter`` is the random share of each delay: 1.0 = "full jitter" (uniform
    in ``(0, ceiling]``), 0.5 = "equal jitter" (uniform in ``(ceiling/2,
    ceiling]``), 0.0 = deterministic. ``rng`` returns floats in ``[0, 1)``
    (``random.random`` by default; inject a fixed function in tests).
    """

    __slots__ = ("_attempts", "_max_exponent", "factor", "initial", "jitter", "maximum", "rng")

    def __init__(
        self,
        initial: float = 1.0,
        factor: float = 2.0,
        maximum: float = 60.0,
        *,
        jitter: float = 1.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("need 0 < initial <= maximum")
        if factor < 1:
            raise ValueError("factor must be >= 1")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self.jitter = jitter
        self.rng = rng
        self._attempts = 0
        # Past this exponent the ceiling is the maximum anyway; clamping keeps
        # factor**n from overflowing after days of retries.
        if factor == 1:
            self._max_exponent = 0
        else:
            self._max_exponent = math.ceil(math.log(maximum / initial, factor)) + 1

    @property
    def attempts(self) -> int:
        """Delays handed out since the last :meth:`reset`."""
        return self._attempts

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay for the ``attempt``-th retry (0-based)."""
        exponent = min(max(attempt, 0), self._max_exponent)
        return float(min(self.maximum, self.initial * self.factor**exponent))

    def next_delay(self) -> float:
        """Return the delay before the next attempt and advance the counter."""
        ceiling = self.ceiling(self._attempts)
        self._attempts += 1
        # rng() is in [0, 1), so the delay is in (ceiling * (1 - jitter), ceiling].
        return ceiling * (1.0 - self.jitter * self.rng())

    def reset(self) -> None:
        """Start again from ``initial`` (after a successful connection)."""
        self._attempts = 0

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial}, factor={self.factor}, maximum={self.maximum}, "
            f"jitter={self.jitter}, attempts={self._attempts})"
        )
