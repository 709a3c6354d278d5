"""The bucket write queue: records from many devices go to the database in few transactions.

A write is submitted as a batch of rows and answered by a future that
resolves after the transaction holding it committed (a device's OK goes out
only then). One task drains the queue: it takes everything waiting, up to
``batch_rows`` rows, and inserts it in one transaction. The queue holds at
most ``max_rows`` rows; a submit beyond that fails at once with
:class:`QueueFullError` (the device gets ERROR; nothing is dropped silently).
When a batch fails (say a bucket was deleted meanwhile), each write of it is
retried alone, so only the bad one fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from ..storage.buckets import RecordRow

_LOGGER = logging.getLogger(__name__)

Insert = Callable[[Sequence[RecordRow]], Awaitable[None]]
Committed = Callable[[Sequence[RecordRow]], None]


class QueueFullError(Exception):
    """The write queue holds its maximum of rows: the write is refused."""


class WriteFailedError(Exception):
    """The database refused the write."""


def _new_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass(slots=True)
class _Pending:
    rows: Sequence[RecordRow]
    done: asyncio.Future[None] = field(default_factory=_new_future)


class WriteQueue:
    """Bounded queue of record writes, drained in batches (see the module docstring)."""

    def __init__(
        self, insert: Insert, committed: Committed, *, max_rows: int, batch_rows: int
    ) -> None:
        self._insert = insert
        self._committed = committed
        self.max_rows = max_rows
        self.batch_rows = batch_rows
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.transactions = 0  # committed batches (tests and the benchmark read it)

    @property
    def queued_rows(self) -> int:
        """Rows waiting for their transaction."""
        return self._queued_rows

    def start(self) -> None:
        """Start the draining task."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="bucket-writes")

    async def stop(self) -> None:
        """Write what is queued, then stop (safe when never started).

        The task is not cancelled: a batch cut off in its transaction would leave
        its writers without an answer. New writes are refused from now on.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        await task

    def submit(self, rows: Sequence[RecordRow]) -> asyncio.Future[None]:
        """Queue ``rows`` (one write); the future resolves after their commit."""
        if self._task is None:
            raise RuntimeError("the bucket write queue is not running")
        if self._queued_rows + len(rows) > self.max_rows:
            raise QueueFullError("bucket write queue full: try again later")
        pending = _Pending(rows)
        # a writer that went away (device disconnected) leaves its failure unread
        pending.done.add_done_callback(_retrieve)
        self._queue.append(pending)
        self._queued_rows += len(rows)
        self._wake.set()
        return pending.done

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].rows) <= self.batch_rows):
            pending = self._queue.popleft()
            batch.append(pending)
            size += len(pending.rows)
        self._queued_rows -= size
        return batch

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._write_batch(self._take())
            if self._stopping:
                return

    async def _write_batch(self, batch: list[_Pending]) -> None:
        rows = [row for pending in batch for row in pending.rows]
        try:
            await self._insert(rows)
        except (SQLAlchemyError, OSError) as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            for pending in batch:  # find the bad write(s); the rest still commit
                try:
                    await self._insert(pending.rows)
                except (SQLAlchemyError, OSError) as single:
                    self._fail(pending, single)
                else:
                    self._done([pending])
            return
        self._done(batch)

    def _done(self, batch: list[_Pending]) -> None:
        self.transactions += 1
        for pending in batch:
            try:
                self._committed(pending.rows)
            except Exception:
                _LOGGER.exception("bucket write listener failed")
            if not pending.done.done():
                pending.done.set_result(None)

    @staticmethod
    def _fail(pending: _Pending, exc: BaseException) -> None:
        _LOGGER.debug("bucket write failed: %r", exc)
        if not pending.done.done():
            pending.done.set_exception(WriteFailedError("the record could not be stored"))


__all__ = ["QueueFullError", "WriteFailedError", "WriteQueue"]
