"""The server's event bus: one ``publish`` for every server event, many listeners.

Events are Thinger-shaped dicts: ``{"event": name, "user": owner, "ts": ms,
...fields}``. They go to the owner's event WebSockets (``/v1|v2/users/{u}/events``)
and to in-process listeners: devices subscribed with SUBSCRIBE_EVENT, alarm
rules, the MQTT bridge. An event never crosses users: listeners are kept per
user. A listener that raises is logged (rate-limited) and kept; publishing
never waits for a listener.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from iotmp.protocol.ratelimit import LogLimiter

_LOGGER = logging.getLogger(__name__)
_LOG_LIMITER = LogLimiter()

Event = dict[str, Any]
EventListener = Callable[[Event], None]


def now_ms() -> int:
    """Milliseconds since the epoch (event ``ts``)."""
    return int(time.time() * 1000)


def make_event(name: str, user: str, **fields: Any) -> Event:
    """Build an event: ``{"event": name, "user": user, "ts": now, **fields}``."""
    event: Event = {"event": name, "user": user, "ts": now_ms()}
    event.update(fields)
    return event


class EventBus:
    """Fans events out to per-user listeners (see the module docstring)."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[EventListener]] = {}

    def subscribe(self, user: str, listener: EventListener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event of ``user``; returns the unsubscriber."""
        self._listeners.setdefault(user, []).append(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(user)
            if listeners and listener in listeners:
                listeners.remove(listener)
                if not listeners:
                    del self._listeners[user]

        return unsubscribe

    def listener_count(self, user: str) -> int:
        """Return how many listeners ``user`` has (for tests and stats)."""
        return len(self._listeners.get(user, ()))

    def publish(self, event: Event) -> None:
        """Deliver ``event`` (it must name its ``event`` and ``user``) to its user's listeners."""
        user = event.get("user")
        if not isinstance(user, str) or not isinstance(event.get("event"), str):
            raise ValueError("an event needs string 'event' and 'user' fields")
        for listener in list(self._listeners.get(user, ())):
            try:
                listener(event)
            except Exception:
                if _LOG_LIMITER.allow(f"listener {event['event']}")[0]:
                    _LOGGER.exception("event listener for %s failed", event["event"])


__all__ = ["Event", "EventBus", "EventListener", "make_event", "now_ms"]
