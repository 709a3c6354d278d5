"""A throwaway PostgreSQL cluster and a ``database`` fixture (SQLite and PostgreSQL).

Debian's ``postgresql`` package (installed by scripts/setup) provides the
binaries; the cluster runs unprivileged in a temp dir on a loopback port and
stops at the end of the session; each test gets a fresh database in it. Where
the binaries are missing (the HA latest leg runs in a rootfs without them) the
PostgreSQL cases are skipped -- but never in the standalone leg under CI.
Test directories use it with ``from pg_cluster import database, pg_cluster``
in their conftest.
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BACKENDS = ("sqlite", "postgresql")


def _pg_bindir() -> Path | None:
    env = os.environ.get("IOTMP_PG_BINDIR")
    candidates = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _must_not_skip() -> bool:
    # The standalone leg (no Home Assistant) on CI must run the PostgreSQL cases.
    on_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return on_ci and importlib.util.find_spec("homeassistant") is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """A running PostgreSQL cluster; :meth:`new_database` gives each test its own."""

    port: int
    _counter: itertools.count[int]
    _createdb: list[str]

    def url(self, database: str) -> str:
        return f"postgresql://iotmp@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"t{next(self._counter)}"
        subprocess.run([*self._createdb, name], check=True, capture_output=True)
        return self.url(name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """Start a throwaway PostgreSQL cluster for the session."""
    bindir = _pg_bindir()
    if bindir is None:
        if _must_not_skip():
            pytest.fail("PostgreSQL binaries not found: scripts/setup installs postgresql")
        pytest.skip("no PostgreSQL binaries here (/usr/lib/postgresql/*/bin)")
    if importlib.util.find_spec("asyncpg") is None:
        # The Home Assistant legs install the wheel without the postgresql extra.
        if _must_not_skip():
            pytest.fail("asyncpg missing: the standalone leg installs iotmp[postgresql]")
        pytest.skip("asyncpg (the postgresql extra) is not installed in this venv")
    root = Path(tempfile.mkdtemp(prefix="iotmp-pg-"))
    data = root / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "iotmp"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    # The durability under test is the server process's (kill -9), not the OS's: no fsync.
    options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    createdb = [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "iotmp"]
    try:
        yield PgCluster(port, itertools.count(1), createdb)
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL (the ``database`` setting) on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'iotmp.db'}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()
