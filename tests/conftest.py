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
