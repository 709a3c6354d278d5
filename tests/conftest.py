"""Top-level pytest configuration shared by every test suite.

Kept deliberately small. Home Assistant fixtures (for example an autouse
``enable_custom_integrations``) belong in ``tests/integration/conftest.py``:
requesting them here would build a ``hass`` instance for every test, including
the pure protocol/server/client tests.
"""

from __future__ import annotations

import os

from hypothesis import settings

# The test machines are shared and noisy: Hypothesis' default 200 ms per-example
# deadline turns scheduler hiccups into flaky failures, so disable it.
# print_blob makes every failure reproducible from the log alone.
settings.register_profile("iotmp", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "iotmp"))


try:  # pytest-socket comes with Home Assistant's test package only
    import pytest_socket  # noqa: F401
except ImportError:
    import pytest

    @pytest.fixture
    def socket_enabled() -> None:
        """Without pytest-socket (the standalone leg) sockets are always allowed."""


def pytest_configure(config: object) -> None:
    """Under scripts/test, refuse to test a checkout copy of iotmp instead of the wheel."""
    if not os.environ.get("IOTMP_TEST_INSTALLED"):
        return
    import iotmp

    if "site-packages" not in (iotmp.__file__ or ""):
        import pytest

        pytest.exit(f"iotmp imported from {iotmp.__file__}, not from the installed wheel", 4)
