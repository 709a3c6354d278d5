"""Rate limits: a token bucket (messages, logins) and a per-cause log limiter.

Both take an injectable clock so that their arithmetic is testable without
sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from . import speedups


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``take()`` spends one."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self, count: int = 1) -> bool:
        """Spend ``count`` tokens; False (nothing spent) when there are not enough."""
        now = self._clock()
        tokens = self._tokens + (now - self._stamp) * self.rate
        if tokens > self.burst:  # noqa: PLR1730 -- not min(): this runs for every received chunk
            tokens = self.burst
        self._stamp = now
        if tokens < count:
            self._tokens = tokens
            return False
        self._tokens = tokens - count
        return True


class LogLimiter:
    """At most ``per_interval`` log lines per cause every ``interval`` seconds.

    Suppressed lines are counted and the count is reported with the next line
    of the same cause that gets through, so nothing is silently lost.
    """

    def __init__(
        self,
        interval: float = 60.0,
        per_interval: int = 5,
        *,
        max_causes: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.per_interval = per_interval
        self.max_causes = max_causes
        self._clock = clock
        # cause -> [window start, lines in window, suppressed since last line]
        self._causes: dict[str, list[float]] = {}

    def allow(self, cause: str) -> tuple[bool, int]:
        """Whether a line of ``cause`` may be logged now, and how many were suppressed."""
        now = self._clock()
        entry = self._causes.get(cause)
        if entry is None:
            if len(self._causes) >= self.max_causes:
                self._causes.clear()
            entry = self._causes[cause] = [now, 0.0, 0.0]
        if now - entry[0] >= self.interval:
            entry[0], entry[1] = now, 0.0
        if entry[1] >= self.per_interval:
            entry[2] += 1
            return False, 0
        entry[1] += 1
        suppressed, entry[2] = int(entry[2]), 0.0
        return True, suppressed

    def log(self, logger: logging.Logger, level: int, cause: str, msg: str, *args: Any) -> bool:
        """Log ``msg % args`` unless ``cause`` is over its budget; True when logged."""
        if not logger.isEnabledFor(level):
            return False
        allowed, suppressed = self.allow(cause)
        if not allowed:
            return False
        if suppressed:
            msg += " (%d similar lines suppressed)"
            args = (*args, suppressed)
        logger.log(level, msg, *args)
        return True


__all__ = ["LogLimiter", "TokenBucket"]

# The compiled copy of this module, when installed and not disabled (see speedups).
speedups.install("ratelimit", globals(), ("TokenBucket",))
