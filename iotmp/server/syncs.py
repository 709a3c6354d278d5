"""Sync locks shared by the devices of one user (LOCK_SYNC / UNLOCK_SYNC, spec 11).

The reference clients only send the request and wait for the answer; what a
lock means is up to the server. Ours:

* a *sync* is named by its id and belongs to the user: devices of different
  users never share one;
* a *holder* is one device and a lock id inside it (``"lock"`` in the
  request, ``""`` when absent), so one device may hold a sync under several
  lock ids (several slots) and release them one by one;
* LOCK with ``slots = n`` (default 1) is granted while fewer than ``n``
  holders hold the sync; otherwise it waits, first come first served, up to
  its ``timeout`` (0 = try once) and fails after that;
* LOCK by a holder that already holds the sync succeeds at once (it is not
  counted twice); UNLOCK by a holder that does not hold it fails;
* everything a device holds is released, and its waits fail, when it goes
  offline (see :meth:`SyncTable.release_device`).

Pure bookkeeping on the event loop: no I/O, nothing blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

Holder = tuple[str, str]
"""``(device_id, lock_id)``."""


class SyncError(Exception):
    """A LOCK / UNLOCK cannot be served; the message says why."""


class SyncTimeout(SyncError):
    """A LOCK waited its whole timeout without being granted."""


@dataclass(eq=False, slots=True)
class _Waiter:
    holder: Holder
    slots: int
    future: asyncio.Future[None]
    granted: bool = False


@dataclass(slots=True)
class _Sync:
    holders: set[Holder] = field(default_factory=set)
    waiters: deque[_Waiter] = field(default_factory=deque)


class SyncTable:
    """Every sync of every user (see the module docstring)."""

    def __init__(self, per_device: int) -> None:
        self.per_device = per_device
        self._syncs: dict[tuple[str, str], _Sync] = {}
        self._counts: dict[str, int] = {}  # device -> holdings + waits

    def holders(self, user: str, sync: str) -> list[Holder]:
        """Who holds ``sync`` of ``user`` now (for tests and stats)."""
        entry = self._syncs.get((user, sync))
        return [] if entry is None else list(entry.holders)

    def waiting(self, user: str, sync: str) -> int:
        """How many LOCKs wait for ``sync`` of ``user``."""
        entry = self._syncs.get((user, sync))
        return 0 if entry is None else len(entry.waiters)

    def _count(self, device: str, delta: int) -> None:
        value = self._counts.get(device, 0) + delta
        if value > 0:
            self._counts[device] = value
        else:
            self._counts.pop(device, None)

    async def lock(
        self,
        user: str,
        sync: str,
        holder: Holder,
        *,
        slots: int,
        timeout: float,  # noqa: ASYNC109 - the request's own wait, part of the protocol
    ) -> None:
        """Hold ``sync`` as ``holder``; raises :class:`SyncError` when refused or timed out."""
        key = (user, sync)
        entry = self._syncs.get(key)
        if entry is not None and holder in entry.holders:
            return
        if entry is not None and any(w.holder == holder for w in entry.waiters):
            raise SyncError(f"sync {sync!r}: lock {holder[1]!r} is already waiting")
        if self._counts.get(holder[0], 0) >= self.per_device:
            raise SyncError(f"at most {self.per_device} sync locks per device")
        if entry is None:
            entry = self._syncs[key] = _Sync()
        if not entry.waiters and len(entry.holders) < slots:
            entry.holders.add(holder)
            self._count(holder[0], 1)
            return
        if timeout <= 0:
            self._forget_if_idle(key, entry)
            raise SyncError(f"sync {sync!r} is locked")
        waiter = _Waiter(holder, slots, asyncio.get_running_loop().create_future())
        entry.waiters.append(waiter)
        self._count(holder[0], 1)
        try:
            async with asyncio.timeout(timeout):
                await waiter.future
        except TimeoutError:
            if waiter.granted:  # granted at the very moment the wait ran out: keep it
                return
            self._abandon(key, entry, waiter)
            raise SyncTimeout(f"sync {sync!r} still locked after {timeout:.3g} s") from None
        except BaseException:
            self._abandon(key, entry, waiter)
            raise

    def _abandon(self, key: tuple[str, str], entry: _Sync, waiter: _Waiter) -> None:
        """Undo what a waiter got once it gives up (timeout, cancelled, device gone)."""
        if waiter.granted:
            if waiter.holder in entry.holders:
                entry.holders.discard(waiter.holder)
                self._count(waiter.holder[0], -1)
        else:
            with contextlib.suppress(ValueError):
                entry.waiters.remove(waiter)
                self._count(waiter.holder[0], -1)
        self._wake(key, entry)

    def unlock(self, user: str, sync: str, holder: Holder) -> None:
        """Release ``holder``'s hold on ``sync``; :class:`SyncError` when it holds none."""
        key = (user, sync)
        entry = self._syncs.get(key)
        if entry is None or holder not in entry.holders:
            raise SyncError(f"sync {sync!r}: lock {holder[1]!r} is not held by this device")
        entry.holders.discard(holder)
        self._count(holder[0], -1)
        self._wake(key, entry)

    def release_device(self, device: str) -> int:
        """Release everything ``device`` holds and fail its waits; returns how many it held."""
        if device not in self._counts:
            return 0
        released = 0
        for key, entry in list(self._syncs.items()):
            for holder in [h for h in entry.holders if h[0] == device]:
                entry.holders.discard(holder)
                self._count(device, -1)
                released += 1
            for waiter in list(entry.waiters):
                if waiter.holder[0] == device and not waiter.future.done():
                    waiter.future.set_exception(SyncError("the device disconnected"))
                    entry.waiters.remove(waiter)
                    self._count(waiter.holder[0], -1)
            self._wake(key, entry)
        return released

    def _wake(self, key: tuple[str, str], entry: _Sync) -> None:
        """Grant waiters in arrival order while the head of the queue fits."""
        while entry.waiters:
            head = entry.waiters[0]
            if head.future.done():  # failed or cancelled: its task cleans up
                entry.waiters.popleft()
                self._count(head.holder[0], -1)
                continue
            if len(entry.holders) >= head.slots:
                break
            entry.waiters.popleft()
            entry.holders.add(head.holder)
            head.granted = True
            head.future.set_result(None)
        self._forget_if_idle(key, entry)

    def _forget_if_idle(self, key: tuple[str, str], entry: _Sync) -> None:
        if not entry.holders and not entry.waiters and self._syncs.get(key) is entry:
            del self._syncs[key]
