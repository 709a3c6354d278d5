"""Endpoints: configured calls to third-party HTTP services (issue 11).

:mod:`.config` checks and renders an endpoint's configuration, :mod:`.caller`
sends the request, :mod:`.feature` is the server feature (REST, CALL_ENDPOINT).
"""

from __future__ import annotations

from .caller import CallResult
from .feature import EndpointError, Endpoints

__all__ = ["CallResult", "EndpointError", "Endpoints"]
