"""Login throttle: failed logins slow down later ones, per address and per user.

Every login attempt (password grant, device CONNECT) first *reserves* a slot
with :meth:`LoginThrottle.reserve` and waits the returned delay before its
password or credential is checked. Slots of one key are handed out one after
the other, spaced by the key's current delay, so parallel connections queue up
behind each other instead of multiplying the rate. Keys:

* the remote **address**: after the n-th failure from an address its attempts
  are spaced ``initial * 2**(n-1)`` seconds apart (at most ``maximum``);
* the **user** (or device): only when its failures come from
  ``distributed_addresses`` or more addresses (a distributed guess); addresses
  that logged in to that user successfully are not slowed down by it.

A success forgets only the failures of that (user, address) pair: it does not
lift the address's or the user's delay for anyone else. Failures are forgotten
``forget_after`` seconds after the last one. An attempt whose slot would be
more than ``max_wait`` seconds away is refused at once (:class:`TooManyAttempts`)
without checking anything, so waiting attempts cannot pile up.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


class TooManyAttempts(Exception):
    """The attempt was refused without being checked; retry after ``retry_after`` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(slots=True)
class _Key:
    failures: int = 0
    last_failure: float = 0.0
    next_slot: float = 0.0
    addresses: set[str] = field(default_factory=set)  # user keys: failing addresses
    trusted: set[str] = field(default_factory=set)  # user keys: addresses that succeeded


class LoginThrottle:
    """See the module docstring. All methods are synchronous and never block."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 8.0,
        *,
        distributed_addresses: int = 3,
        max_wait: float | None = None,
        forget_after: float = 600.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.distributed_addresses = distributed_addresses
        self.max_wait = 4 * maximum if max_wait is None else max_wait
        self.forget_after = forget_after
        self.max_entries = max_entries
        self._clock = clock
        self._keys: OrderedDict[str, _Key] = OrderedDict()
        self._pairs: dict[tuple[str, str], int] = {}

    # -- arithmetic -------------------------------------------------------------

    def delay_after(self, failures: int) -> float:
        """Spacing of attempts after ``failures`` consecutive failures."""
        if failures <= 0 or self.initial <= 0:
            return 0.0
        return float(min(self.maximum, self.initial * 2 ** min(failures - 1, 30)))

    def _key(self, name: str, now: float, *, create: bool) -> _Key | None:
        key = self._keys.get(name)
        if key is not None and key.failures and now - key.last_failure >= self.forget_after:
            key.failures = 0
            key.addresses.clear()
        if key is None and create:
            key = self._keys[name] = _Key()
            while len(self._keys) > self.max_entries:
                self._keys.popitem(last=False)
        return key

    def _keys_for(self, user: str, address: str, now: float) -> list[_Key]:
        keys: list[_Key] = []
        by_address = self._key("a:" + address, now, create=False)
        if by_address is not None and by_address.failures:
            keys.append(by_address)
        by_user = self._key("u:" + user, now, create=False)
        if (
            by_user is not None
            and len(by_user.addresses) >= self.distributed_addresses
            and address not in by_user.trusted
        ):
            keys.append(by_user)
        return keys

    # -- the three calls of a login ---------------------------------------------

    def reserve(self, user: str, address: str) -> float:
        """Reserve the next slot for an attempt; returns the seconds to wait first.

        Raises :class:`TooManyAttempts` when that slot is more than ``max_wait`` away.
        """
        now = self._clock()
        keys = self._keys_for(user, address, now)
        slot = max([now, *(k.next_slot for k in keys)])
        if slot - now > self.max_wait:
            raise TooManyAttempts(slot - now)
        for key in keys:
            key.next_slot = slot + self.delay_after(key.failures)
        return slot - now

    def failure(self, user: str, address: str) -> None:
        """Record a failed attempt (after it was checked)."""
        now = self._clock()
        pair = (user, address)
        self._pairs[pair] = self._pairs.get(pair, 0) + 1
        if len(self._pairs) > self.max_entries:
            self._pairs.clear()
        for name in ("a:" + address, "u:" + user):
            key = self._key(name, now, create=True)
            assert key is not None
            key.failures += 1
            key.last_failure = now
            if name[0] == "u":
                key.addresses.add(address)
                key.trusted.discard(address)
            key.next_slot = max(key.next_slot, now + self.delay_after(key.failures))
            self._keys.move_to_end(name)

    def success(self, user: str, address: str) -> None:
        """Record a successful attempt: only this (user, address) pair's failures go."""
        now = self._clock()
        count = self._pairs.pop((user, address), 0)
        by_address = self._key("a:" + address, now, create=False)
        if by_address is not None and count:
            by_address.failures = max(0, by_address.failures - count)
        by_user = self._key("u:" + user, now, create=True)
        assert by_user is not None
        by_user.addresses.discard(address)
        by_user.trusted.add(address)
        if len(by_user.trusted) > 64:
            by_user.trusted.pop()

    def failures(self, address: str) -> int:
        """Failures recorded for ``address`` (not yet forgotten)."""
        key = self._key("a:" + address, self._clock(), create=False)
        return 0 if key is None else key.failures


__all__ = ["LoginThrottle", "TooManyAttempts"]
