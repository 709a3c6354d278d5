"""One rule's condition over time: held for its duration -> raise; no longer met -> clear.

A :class:`RuleWatch` sees every new value of its source. While the condition
holds, a timer runs for the rest of the duration, so a value that stays (a
property nobody changes) still raises when the time is up. Once raised, it
does not raise again until the condition has stopped holding in between.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from iotmp.protocol.message import ABSENT

from .rules import holds


class RuleWatch:
    """The hold timer of one rule (see the module docstring)."""

    def __init__(
        self,
        condition: Mapping[str, Any],
        on_raise: Callable[[Any], None],
        on_clear: Callable[[Any], None],
    ) -> None:
        self.condition = condition
        self.on_raise = on_raise
        self.on_clear = on_clear
        self.since: float | None = None
        self.fired = False
        self.value: Any = ABSENT
        self._timer: asyncio.TimerHandle | None = None

    def observe(self, value: Any) -> None:
        """Take a new value of the source (``ABSENT``: the field is missing, ignored)."""
        if value is ABSENT:
            return
        if not holds(self.condition, value):
            self._reset()
            self.on_clear(value)
            return
        self.value = value
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.fired = False
        if self.fired or self._timer is not None:
            return
        remaining = float(self.condition["duration"]) - (now - self.since)
        if remaining <= 0:
            self._fire()
        else:
            self._timer = asyncio.get_running_loop().call_later(remaining, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.fired = True
        self.on_raise(self.value)

    def _reset(self) -> None:
        self.since = None
        self.fired = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Stop the timer (the rule changed, was deleted or the server stops)."""
        self._reset()


__all__ = ["RuleWatch"]
