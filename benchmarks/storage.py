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


Round = Callable[[int], Awaitable[float]]


class MemoryBackend:
    """The in-memory baseline: a TokenAuthority fed from memory, a bare DeviceRegistry."""

    name = "memory"

    def __init__(self, args: argparse.Namespace) -> None:
        async def never(_u: str, _p: str) -> bool:
            return False

        self.args = args
        self.auth = TokenAuthority(
            "bench-secret",
            server_name="bench",
            known_user={"alice"}.__contains__,
            check_password=never,
        )
        stored = new_stored_token("alice", "bench", allow=FULL_ACCESS)
        self.auth.put_token(stored)
        self.token = self.auth.sign_stored_token(stored)

    async def close(self) -> None:
        """Nothing to close."""

    async def check(self, _r: int) -> float:
        started = time.perf_counter()
        for _ in range(self.args.tokens):
            claims = self.auth.verify_access_token(self.token)
            record = self.auth.token_record(claims)
            assert record is not None and permits(record, SCOPE)
        return _rate(self.args.tokens, time.perf_counter() - started)

    check_db = check

    async def insert(self, r: int) -> float:
        registry = DeviceRegistry()
        started = time.perf_counter()
        for i in range(self.args.devices):
            registry.add(DeviceConfig(id=f"m{r}-{i}", user="alice", credential="secret-pw"))
        return _rate(self.args.devices, time.perf_counter() - started)

    create = insert


class StorageBackend(MemoryBackend):
    """A started IotmpServer (no listeners) on SQLite or PostgreSQL."""

    def __init__(self, name: str, database: str | None, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.name = name
        self.database = database
        self.scratch = tempfile.TemporaryDirectory(prefix="iotmp-bench-")
        self.server = IotmpServer(_config(database, self.scratch.name))
        self.ready_hash = hash_secret("secret-pw")

    async def open(self) -> StorageBackend:
        await self.server.start()
        stored = await self.server.accounts.create_token(
            new_stored_token("alice", "bench", allow=FULL_ACCESS)
        )
        self.auth = self.server.auth
        self.token = self.auth.sign_stored_token(stored)
        return self

    async def close(self) -> None:
        await self.server.stop()
        self.scratch.cleanup()

    @property
    def storage(self) -> Any:
        return self.server.accounts.storage

    async def check_db(self, _r: int) -> float:
        count = max(1, self.args.tokens // 50)
        started = time.perf_counter()
        for _ in range(count):
            claims = self.auth.verify_access_token(self.token)
            record = await self.storage.token(claims["usr"], claims["jti"])
            assert not await self.storage.is_revoked(claims["usr"], claims["jti"])
            assert record is not None and permits(record, SCOPE)
        return _rate(count, time.perf_counter() - started)

    async def insert(self, r: int) -> float:
        started = time.perf_counter()
        for i in range(self.args.devices):
            await self.storage.create_device(
                StoredDevice(id=f"i{r}-{i}", user="alice", credential_hash=self.ready_hash)
            )
        return _rate(self.args.devices, time.perf_counter() - started)

    async def create(self, r: int) -> float:
        count = max(1, self.args.devices // 10)
        started = time.perf_counter()
        for i in range(count):
            await self.server.accounts.create_device(
                StoredDevice(id=f"c{r}-{i}", user="alice"), "secret-pw"
            )
        return _rate(count, time.perf_counter() - started)


async def measure(backends: list[MemoryBackend], rounds: int) -> dict[str, dict[str, float]]:
    """Medians per backend and operation; the rounds of all backends interleave."""
    samples: dict[str, dict[str, list[float]]] = {b.name: {} for b in backends}
    for key in LABELS:
        for r in range(rounds):
            for backend in backends:
                rate = await getattr(backend, key)(r)
                samples[backend.name].setdefault(key, []).append(rate)
    return {
        name: {key: statistics.median(values) for key, values in ops.items()}
        for name, ops in samples.items()
    }


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


async def run(args: argparse.Namespace, pg_url: str | None) -> dict[str, dict[str, float]]:
    backends: list[MemoryBackend] = [MemoryBackend(args)]
    try:
        backends.append(await StorageBackend("sqlite", None, args).open())
        if pg_url:
            backends.append(await StorageBackend("postgresql", pg_url, args).open())
        return await measure(backends, args.rounds)
    finally:
        for backend in backends:
            await backend.close()


def main_async(args: argparse.Namespace) -> None:
    if args.postgresql or args.no_postgresql:
        results = asyncio.run(run(args, args.postgresql))
    else:
        with postgres_cluster() as url:
            results = asyncio.run(run(args, url))
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{args.rounds} rounds (interleaved), medians of ops/s; ratio = backend / in-memory"
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
    main_async(args)


if __name__ == "__main__":
    main()
