"""Fixtures of the hostile-client suite (the harness is in ``harness.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .harness import Bystander, ServerProcess, run_bystander, start_server, stop_server, tracebacks


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Real loopback sockets (Home Assistant's plugin blocks sockets by default)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server subprocess for the module; its log must hold no ERROR at the end."""
    proc = start_server(tmp_path_factory.mktemp("hostile-server"))
    try:
        yield proc
    finally:
        stop_server(proc)
    bad = tracebacks(proc.log_lines())
    assert not bad, "server logged errors:\n" + "\n".join(bad[:40])


@pytest.fixture
async def bystander(server: ServerProcess) -> AsyncIterator[Bystander]:
    """Another user's device, stream and REST calls, measured during an attack."""
    async with run_bystander(server) as by:
        yield by
