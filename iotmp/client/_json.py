"""JSON decoding of stream frames: orjson when it is installed, results as ``json.loads``.

orjson (a dependency, and shipped with Home Assistant) parses a frame several times
faster than the standard library. Where the two disagree, ``json.loads`` decides, so every
frame gives the same value (or a ``ValueError`` where ``json.loads`` raises one) either way:

* orjson rejects NaN, Infinity, lone surrogates and numbers that overflow a double: the
  frame is parsed again with ``json.loads``;
* orjson turns integers beyond 64 bits into floats, silently: a frame with a run of 19 or
  more digits (the shortest such integer, -9223372036854775809, has 19) goes to
  ``json.loads`` directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_fast_loads: Callable[[str], Any] | None
try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    _fast_loads = None
else:
    _fast_loads = orjson.loads


_LONG_DIGITS = re.compile("[0-9]{19}").search


def loads(text: str) -> Any:
    """``json.loads(text)``, faster."""
    if _fast_loads is not None and _LONG_DIGITS(text) is None:
        try:
            return _fast_loads(text)
        except ValueError:
            pass  # what orjson rejects: json.loads decides (it may accept it, or raise)
    return json.loads(text)
