"""One INFO line per failed device handshake, rate-limited per client address.

A device that cannot get in (TLS to a plain port, a TLS error, a WebSocket
without the ``iotmp`` upgrade, a bad or refused CONNECT) usually retries every
few seconds forever. The first failure of an address is logged at INFO with
what went wrong; further failures of that address within ``interval`` seconds
are counted and summarised in the next line instead of flooding the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

_LOGGER = logging.getLogger("iotmp.server.handshake")

DEFAULT_INTERVAL: Final = 60.0
MAX_ADDRESSES: Final = 4096  # bounded memory whatever the number of scanners


class HandshakeLog:
    """Rate-limited log of failed device handshakes (see the module docstring)."""

    def __init__(
        self, interval: float = DEFAULT_INTERVAL, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def failed(self, address: str, what: str, detail: object = "") -> bool:
        """Record a failure of ``address``; returns whether a line was logged."""
        now = self._clock()
        last = self._last.get(address)
        if last is not None and now - last < self.interval:
            self._suppressed[address] = self._suppressed.get(address, 0) + 1
            return False
        if len(self._last) >= MAX_ADDRESSES and address not in self._last:
            self._forget_old(now)
        self._last[address] = now
        suppressed = self._suppressed.pop(address, 0)
        more = f" ({suppressed} more from this address in the last {self.interval:g} s)"
        _LOGGER.info(
            "device handshake failed from %s: %s%s%s",
            address,
            what,
            f": {detail}" if detail != "" else "",
            more if suppressed else "",
            extra={"client": address, "handshake": what},
        )
        return True

    def _forget_old(self, now: float) -> None:
        for address, last in list(self._last.items()):
            if now - last >= self.interval:
                del self._last[address]
                self._suppressed.pop(address, None)
        if len(self._last) >= MAX_ADDRESSES:  # all recent: drop the oldest half
            for address in sorted(self._last, key=self._last.__getitem__)[: MAX_ADDRESSES // 2]:
                del self._last[address]
                self._suppressed.pop(address, None)
