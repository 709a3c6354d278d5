"""Top-level pytest configuration shared by every test suite.

Kept deliberately small. Home Assistant fixtures (for example an autouse
``enable_custom_integrations``) belong in ``tests/integration/conftest.py``:
requesting them here would build a ``hass`` instance for every test, including
the pure protocol/server/client tests.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import settings

# The test machines are shared and noisy: Hypothesis' default 200 ms per-example
# deadline turns scheduler hiccups into flaky failures, so disable it.
# print_blob makes every failure reproducible from the log alone.
settings.register_profile("iotmp", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "iotmp"))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session closed at teardown (REST calls to the test server)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test's servers keep their data under its tmp_path, never in ~/.local/share."""
    monkeypatch.setenv("IOTMP_DATA_DIR", str(tmp_path / "iotmp-data"))
    yield


try:  # pytest-socket comes with Home Assistant's test package only
    import pytest_socket  # noqa: F401
except ImportError:

    @pytest.fixture
    def socket_enabled() -> None:
        """Without pytest-socket (the standalone leg) sockets are always allowed."""


def pytest_configure(config: object) -> None:
    """Under scripts/test, refuse to test a checkout copy of iotmp instead of the wheel."""
    if not os.environ.get("IOTMP_TEST_INSTALLED"):
        return
    import iotmp

    if "site-packages" not in (iotmp.__file__ or ""):
        pytest.exit(f"iotmp imported from {iotmp.__file__}, not from the installed wheel", 4)
