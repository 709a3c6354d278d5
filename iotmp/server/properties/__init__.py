"""Device properties: configuration and state a device keeps on the server (issue 11).

:mod:`.core` (the feature, ``server.properties``), :mod:`.routes` (REST),
:mod:`.rules` (ids, bodies, merge patch, sizes). The queries are in
:mod:`iotmp.server.storage.properties`, loaded when the storage opens.
"""

from __future__ import annotations

from .core import Properties
from .rules import PropertyError, PropertyNotFoundError

__all__ = ["Properties", "PropertyError", "PropertyNotFoundError"]
