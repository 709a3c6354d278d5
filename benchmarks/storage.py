"""Storage benchmark: token checks and device creates on SQLite and PostgreSQL.

Run: ``python benchmarks/storage.py [--rounds N] [--tokens N] [--devices N]
[--postgresql URL] [--markdown]``. Without ``--postgresql`` a throwaway
PostgreSQL cluster is started in a temp dir (Debian's ``postgresql`` package;
as root it runs as the ``postgres`` user), like the test fixture does.

Every figure is the median over ``--rounds`` rounds of operations per second,
printed with its ratio to the in-memory baseline measured in the same run:

* token check, server path: ``TokenAuthority.verify_access_token`` of a stored
  access token plus the permission check, on a started ``IotmpServer`` (the
  cache answers; the database is only written). Baseline: the same on a
  TokenAuthority fed from memory.
* token check, database read: the same plus reading the token row and its
  revocation from the database (what an uncached check would cost).
* device create, insert: ``Storage.create_device`` of a device whose
  credential hash is ready. Baseline: ``DeviceRegistry.add`` (the old
  in-memory server).
* device create, server path: ``Accounts.create_device``, i.e. scrypt hash of
  the credential in a worker thread plus the transaction. Same baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import os
import platform
import pwd
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iotmp.server.app import IotmpServer  # noqa: E402
from iotmp.server.auth import TokenAuthority, new_stored_token  # noqa: E402
from iotmp.server.config import DeviceConfig, ServerConfig, UserConfig  # noqa: E402
from iotmp.server.permissions import FULL_ACCESS, Scope, permits  # noqa: E402
from iotmp.server.registry import DeviceRegistry  # noqa: E402
from iotmp.server.storage.hashing import hash_secret  # noqa: E402
from iotmp.server.storage.records import StoredDevice  # noqa: E402

SCOPE = Scope("Device", "lamp", "AccessDeviceResources", "temp")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a throwaway cluster; yields the URL of its ``bench`` database."""
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if not bindirs:
        raise SystemExit("no PostgreSQL binaries: install postgresql or pass --postgresql URL")
    bindir = Path(bindirs[0])
    root = Path(tempfile.mkdtemp(prefix="iotmp-bench-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = root / "data"
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "iotmp"],
        check=True,
        capture_output=True,
    )
    pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data)]
    # Default durability settings (fsync on): the figures are what a user gets.
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "iotmp", "bench"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://iotmp@127.0.0.1:{port}/bench"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


async def _rounds(rounds: int, one_round: Callable[[int], Awaitable[float]]) -> float:
    return statistics.median([await one_round(r) for r in range(rounds)])


def _config(database: str | None, data_dir: str) -> ServerConfig:
    return ServerConfig(
        host="127.0.0.1",
        http_port=None,
        tcp_port=None,
        tls_port=None,
        secret=secrets.token_urlsafe(32),
        users=(UserConfig("alice", "pw"),),
        data_dir=data_dir,
        database=database,
    )


async def bench_memory(args: argparse.Namespace) -> dict[str, float]:
    async def never(_u: str, _p: str) -> bool:
        return False

    auth = TokenAuthority(
        "bench-secret",
        server_name="bench",
        known_user={"alice"}.__contains__,
        check_password=never,
    )
    stored = new_stored_token("alice", "bench", allow=FULL_ACCESS)
    auth.put_token(stored)
    token = auth.sign_stored_token(stored)

    async def checks(_r: int) -> float:
        started = time.perf_counter()
        for _ in range(args.tokens):
            claims = auth.verify_access_token(token)
            record = auth.token_record(claims)
            assert record is not None and permits(record, SCOPE)
        return _rate(args.tokens, time.perf_counter() - started)

    async def creates(r: int) -> float:
        registry = DeviceRegistry()
        started = time.perf_counter()
        for i in range(args.devices):
            registry.add(DeviceConfig(id=f"m{r}-{i}", user="alice", credential="secret-pw"))
        return _rate(args.devices, time.perf_counter() - started)

    rate = await _rounds(args.rounds, checks)
    create = await _rounds(args.rounds, creates)
    return {"check": rate, "check_db": rate, "insert": create, "create": create}


async def bench_storage(database: str | None, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="iotmp-bench-") as scratch:
        server = IotmpServer(_config(database, scratch))
        await server.start()
        try:
            storage = server.accounts.storage
            assert storage is not None
            stored = await server.accounts.create_token(
                new_stored_token("alice", f"bench{secrets.token_hex(3)}", allow=FULL_ACCESS)
            )
            token = server.auth.sign_stored_token(stored)
            auth = server.auth

            async def checks(_r: int) -> float:
                started = time.perf_counter()
                for _ in range(args.tokens):
                    claims = auth.verify_access_token(token)
                    record = auth.token_record(claims)
                    assert record is not None and permits(record, SCOPE)
                return _rate(args.tokens, time.perf_counter() - started)

            count_db = max(1, args.tokens // 20)

            async def checks_db(_r: int) -> float:
                started = time.perf_counter()
                for _ in range(count_db):
                    claims = auth.verify_access_token(token)
                    record = await storage.token(claims["usr"], claims["jti"])
                    assert not await storage.is_revoked(claims["usr"], claims["jti"])
                    assert record is not None and permits(record, SCOPE)
                return _rate(count_db, time.perf_counter() - started)

            ready_hash = hash_secret("secret-pw")

            async def inserts(r: int) -> float:
                started = time.perf_counter()
                for i in range(args.devices):
                    await storage.create_device(
                        StoredDevice(id=f"i{r}-{i}", user="alice", credential_hash=ready_hash)
                    )
                return _rate(args.devices, time.perf_counter() - started)

            count_create = max(1, args.devices // 10)

            async def creates(r: int) -> float:
                started = time.perf_counter()
                for i in range(count_create):
                    await server.accounts.create_device(
                        StoredDevice(id=f"c{r}-{i}", user="alice"), "secret-pw"
                    )
                return _rate(count_create, time.perf_counter() - started)

            return {
                "check": await _rounds(args.rounds, checks),
                "check_db": await _rounds(args.rounds, checks_db),
                "insert": await _rounds(args.rounds, inserts),
                "create": await _rounds(args.rounds, creates),
            }
        finally:
            await server.stop()


LABELS = {
    "check": "token check, server path (cached)",
    "check_db": "token check with a database read",
    "insert": "device create, insert only",
    "create": "device create, server path (scrypt + insert)",
}


def report(results: dict[str, dict[str, float]], markdown: bool) -> None:
    base = results["memory"]
    backends = [b for b in results if b != "memory"]
    if markdown:
        print(
            "| operation | in-memory /s | " + " | ".join(f"{b} /s (ratio)" for b in backends) + " |"
        )
        print("|---|---:|" + "---:|" * len(backends))
    for key, label in LABELS.items():
        cells = [f"{results[b][key]:,.0f} ({results[b][key] / base[key]:.3f})" for b in backends]
        if markdown:
            print(f"| {label} | {base[key]:,.0f} | " + " | ".join(cells) + " |")
        else:
            print(
                f"{label:48} memory {base[key]:>12,.0f}/s  "
                + "  ".join(f"{b} {c}" for b, c in zip(backends, cells, strict=True))
            )


async def main_async(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, Any]] = {"memory": await bench_memory(args)}
    results["sqlite"] = await bench_storage(None, args)
    if args.postgresql:
        results["postgresql"] = await bench_storage(args.postgresql, args)
    elif not args.no_postgresql:
        with postgres_cluster() as url:
            results["postgresql"] = await bench_storage(url, args)
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{args.rounds} rounds, medians of ops/s; ratio = backend / in-memory"
    )
    report(results, args.markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=20_000, help="token checks per round")
    parser.add_argument("--devices", type=int, default=200, help="device inserts per round")
    parser.add_argument("--postgresql", help="use this database instead of a throwaway cluster")
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (medians)")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
