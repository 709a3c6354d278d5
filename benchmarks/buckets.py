"""Bucket benchmark: record writes and 1,000-record range reads, on SQLite and PostgreSQL.

Run: ``python benchmarks/buckets.py [--records N] [--writes N] [--reads N]
[--postgresql URL | --no-postgresql]``. Without ``--postgresql`` a throwaway
PostgreSQL cluster is started as ``benchmarks/storage.py`` does (fsync on).

Each figure is operations per second, with its ratio to a plain SQLAlchemy
loop on the same database in the same run:

* write, single: ``await server.buckets.write(...)`` one after the other (each
  waits for its commit). Baseline: one ``INSERT`` per transaction in a loop.
* write, batched: the same number of writes at once (many devices): the write
  queue folds them into few transactions. Same baseline.
* range read: ``GET /v1/.../data?min_ts=&max_ts=&items=1000`` over HTTP of a
  random 1,000-record range of a 10^6-record bucket (whole JSON body
  received). Baseline: the same ``SELECT ... ORDER BY ts LIMIT 1000`` with
  SQLAlchemy, rows fetched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from storage import postgres_cluster  # noqa: E402

from iotmp.server.app import IotmpServer  # noqa: E402
from iotmp.server.config import ServerConfig, UserConfig  # noqa: E402
from iotmp.server.storage import schema  # noqa: E402
from iotmp.server.storage.buckets import RecordRow  # noqa: E402

STEP = 1000  # ms between the loaded records
CHUNK = 50_000


def _config(database: str | None, data_dir: str) -> ServerConfig:
    return ServerConfig(
        host="127.0.0.1",
        http_port=0,
        tcp_port=None,
        tls_port=None,
        secret=secrets.token_urlsafe(32),
        users=(UserConfig("alice", "pw"),),
        data_dir=data_dir,
        database=database,
    )


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


async def _bench(name: str, database: str | None, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="iotmp-bench-buckets-") as scratch:
        server = IotmpServer(_config(database, scratch))
        await server.start()
        try:
            return await _measure(server, args)
        finally:
            await server.stop()


async def _measure(server: IotmpServer, args: argparse.Namespace) -> dict[str, Any]:
    buckets = server.buckets
    engine = server.storage.engine
    await buckets.create("alice", "w")
    await buckets.create("alice", "big")
    table = schema.bucket_records
    record = {"temperature": 21.5, "humidity": 45, "label": "hall"}
    out: dict[str, Any] = {}

    # plain loop: one INSERT per transaction
    started = time.perf_counter()
    for i in range(args.writes):
        async with engine.begin() as conn:
            await conn.execute(insert(table).values(user="alice", bucket="w", ts=i, data=record))
    plain_write = _rate(args.writes, time.perf_counter() - started)

    started = time.perf_counter()
    for _ in range(args.writes):
        await buckets.write("alice", "w", record)
    single = _rate(args.writes, time.perf_counter() - started)

    before = buckets.queue.transactions
    started = time.perf_counter()
    await asyncio.gather(*(buckets.write("alice", "w", record) for _ in range(args.writes)))
    batched = _rate(args.writes, time.perf_counter() - started)
    out["batched_transactions"] = buckets.queue.transactions - before
    out["write"] = {"plain": plain_write, "single": single, "batched": batched}

    started = time.perf_counter()
    for base in range(0, args.records, CHUNK):
        rows = [
            RecordRow("alice", "big", i * STEP, {"i": i, "t": i % 40})
            for i in range(base, min(base + CHUNK, args.records))
        ]
        await buckets.store.insert_records(rows)
    out["load_s"] = time.perf_counter() - started

    rng = random.Random(11)
    starts = [rng.randrange(0, args.records - 1000) * STEP for _ in range(args.reads)]
    started = time.perf_counter()
    for low in starts:
        query = (
            select(table.c.id, table.c.ts, table.c.data)
            .where(table.c.user == "alice", table.c.bucket == "big")
            .where(table.c.ts >= low, table.c.ts <= low + 999 * STEP)
            .order_by(table.c.ts, table.c.id)
            .limit(1000)
        )
        async with engine.connect() as conn:
            fetched = (await conn.execute(query)).all()
        assert len(fetched) == 1000
    plain_read = _rate(args.reads, time.perf_counter() - started)

    token = server.issue_token("alice")
    headers = {"Authorization": f"Bearer {token}"}
    base_url = f"http://127.0.0.1:{server.http_port}/v1/users/alice/buckets/big/data"
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        for low in starts:
            params = {"min_ts": low, "max_ts": low + 999 * STEP, "items": 1000}
            async with http.get(base_url, params=params, headers=headers) as resp:
                body = await resp.json()
            assert len(body) == 1000
        rest_read = _rate(args.reads, time.perf_counter() - started)
    out["read"] = {"plain": plain_read, "rest": rest_read}
    return out


def _report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} cores; "
        f"{args.writes} writes, {args.records:,} records, {args.reads} range reads of 1,000"
    )
    print()
    print("| database | operation | per second | plain SQLAlchemy per second | ratio |")
    print("|---|---|---|---|---|")
    for name, figures in results.items():
        write, read = figures["write"], figures["read"]
        for label, value in (
            ("write, single", write["single"]),
            ("write, batched", write["batched"]),
        ):
            print(
                f"| {name} | {label} | {value:,.0f} | {write['plain']:,.0f} |"
                f" {value / write['plain']:.2f} |"
            )
        print(
            f"| {name} | range read (REST) | {read['rest']:,.1f} | {read['plain']:,.1f} |"
            f" {read['rest'] / read['plain']:.2f} |"
        )
    print()
    for name, figures in results.items():
        print(
            f"{name}: {figures['batched_transactions']} transactions for {args.writes} "
            f"batched writes; 10^6-record load {figures['load_s']:.1f} s"
        )


async def _run(args: argparse.Namespace, pg_url: str | None) -> dict[str, dict[str, Any]]:
    results = {"SQLite": await _bench("SQLite", None, args)}
    if pg_url is not None:
        results["PostgreSQL"] = await _bench("PostgreSQL", pg_url, args)
    return results


def main() -> None:
    """Parse the options, run both databases, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--postgresql", help="use this database instead of a throwaway cluster")
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()
    if args.no_postgresql:
        results = asyncio.run(_run(args, None))
    elif args.postgresql:
        results = asyncio.run(_run(args, args.postgresql))
    else:
        with postgres_cluster() as url:
            results = asyncio.run(_run(args, url))
    _report(results, args)


if __name__ == "__main__":
    main()
