"""A bucket of 10^6 records: a 1,000-record range is read from the index, through REST."""

from __future__ import annotations

import os
import time

import aiohttp
import pytest

from iotmp.server.storage.buckets import RecordRow, TimeRange
from iotmp.server.testing import run_test_server

TOTAL = 1_000_000
CHUNK = 50_000
STEP = 1000  # ms between records


async def test_range_of_a_million(database: str) -> None:
    # ~30 s per backend on the shared 2-core machine: PostgreSQL only when asked for
    if database.startswith("postgresql") and not os.environ.get("IOTMP_BIG_BUCKET_PG"):
        pytest.skip("set IOTMP_BIG_BUCKET_PG=1 to run the 10^6 case on PostgreSQL too")
    async with run_test_server(user="alice", database=database) as server:
        buckets = server.server.buckets
        await buckets.create("alice", "big")
        await buckets.create("alice", "other")  # a neighbour the range must not touch
        started = time.monotonic()
        for base in range(0, TOTAL, CHUNK):
            await buckets.store.insert_records(
                [
                    RecordRow("alice", "big", i * STEP, {"i": i, "t": i % 40})
                    for i in range(base, base + CHUNK)
                ]
            )
        await buckets.store.insert_records([RecordRow("alice", "other", 500_500 * STEP, {"i": -1})])
        load = time.monotonic() - started
        assert await buckets.store.count("alice", "big") == TOTAL

        low, high = 500_000 * STEP, 500_999 * STEP
        plan = await buckets.store.explain_range("alice", "big", TimeRange(low, high, False, 1000))
        assert "ix_bucket_records_user_bucket_ts" in plan, plan
        assert "SCAN bucket_records" not in plan and "Seq Scan" not in plan, plan

        query = f"min_ts={low}&max_ts={high}&items=1000"
        url = f"{server.http_url}/v1/users/alice/buckets/big/data?{query}"
        headers = {"Authorization": f"Bearer {server.token}"}
        started = time.monotonic()
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            assert resp.status == 200
            rows = await resp.json()
        read = time.monotonic() - started
        assert [r["val"]["i"] for r in rows] == list(range(500_000, 501_000))
        assert [r["ts"] for r in rows] == [i * STEP for i in range(500_000, 501_000)]
        assert read < 5.0, f"range read took {read:.2f} s (load {load:.1f} s)"
