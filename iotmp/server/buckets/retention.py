"""Retention: old records of each bucket are deleted in the background, in small batches.

A bucket's ``retention`` (see :func:`.model.parse_retention`) bounds the age
of its records, their number, or both. The server enforces it at start and
then every ``interval`` seconds; each transaction deletes at most ``batch``
records and the loop yields between batches, so writes and reads go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from sqlalchemy.exc import SQLAlchemyError

from ..storage.buckets import BucketStore, StoredBucket
from .model import max_age_ms, max_records

_LOGGER = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
DEFAULT_BATCH = 5000


class RetentionTask:
    """Enforces every bucket's retention now and then (see the module docstring)."""

    def __init__(
        self,
        store: BucketStore,
        buckets: Callable[[], Iterable[StoredBucket]],
        now_ms: Callable[[], int],
        *,
        interval: float = DEFAULT_INTERVAL,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.store = store
        self._buckets = buckets
        self._now_ms = now_ms
        self.interval = interval
        self.batch = batch
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    def start(self) -> None:
        """Run a first pass now, then one every ``interval`` seconds."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="bucket-retention"
            )

    def kick(self) -> None:
        """Run a pass soon (a bucket's retention changed)."""
        self._kick.set()

    async def stop(self) -> None:
        """Stop the background pass (safe when never started)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.enforce()
            except (SQLAlchemyError, OSError) as exc:
                _LOGGER.warning("bucket retention pass failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._kick.wait()
            self._kick.clear()

    async def enforce(self) -> int:
        """Apply every bucket's retention once; return how many records were deleted."""
        deleted = 0
        for bucket in list(self._buckets()):
            deleted += await self.enforce_bucket(bucket)
        return deleted

    async def enforce_bucket(self, bucket: StoredBucket) -> int:
        """Apply one bucket's retention; return how many records were deleted."""
        deleted = 0
        age = max_age_ms(bucket.retention)
        if age is not None:
            cutoff = self._now_ms() - age
            while True:
                count = await self.store.delete_before(
                    bucket.user, bucket.bucket, cutoff, self.batch
                )
                deleted += count
                await asyncio.sleep(0)  # let queued writes and reads in between batches
                if count < self.batch:
                    break
        keep = max_records(bucket.retention)
        if keep is not None:
            while True:
                count = await self.store.delete_beyond(bucket.user, bucket.bucket, keep, self.batch)
                deleted += count
                await asyncio.sleep(0)
                if count < self.batch:
                    break
        if deleted:
            _LOGGER.debug(
                "bucket %s/%s: retention deleted %d records", bucket.user, bucket.bucket, deleted
            )
        return deleted


__all__ = ["RetentionTask"]
