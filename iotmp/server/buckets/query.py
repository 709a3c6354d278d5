"""The query parameters of a bucket read, and aggregation over fixed intervals (pure).

``GET .../buckets/{b}/data`` takes Thinger's parameters (the Node-RED bucket
read node sends them): ``items`` (how many; 0 or absent = up to the server's
cap), ``sort`` (``asc`` | ``desc``; default ``asc``), ``min_ts`` / ``max_ts``
(ms, inclusive; 0 = unbounded), ``agg`` (an interval such as ``5m``, ``1h``,
``1d``, ``1w``; units ``s m h d w``) and ``agg_type`` (``count mean min max
sum spread``; default ``mean``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..storage.buckets import TimeRange

AGG_RE: Final = re.compile(r"^(\d{1,6})(s|m|h|d|w)$")
AGG_UNITS_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
AGG_TYPES: Final = ("count", "mean", "min", "max", "sum", "spread")


class QueryError(ValueError):
    """A query parameter is invalid (answered 400 with the message)."""


@dataclass(frozen=True, slots=True)
class ReadQuery:
    """A parsed bucket read: the range and, when aggregating, the interval and function."""

    window: TimeRange
    agg_ms: int | None = None
    agg_type: str = "mean"
    limit: int = 0
    """Records (or, aggregating, intervals) to answer at most."""


def _whole(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(float(raw)) if "." in raw or "e" in raw.lower() else int(raw)
    except ValueError:
        raise QueryError(f"invalid {name}: {raw!r}") from None
    if value < 0:
        raise QueryError(f"invalid {name}: {raw!r}")
    return value


def parse_read_query(params: Mapping[str, str], max_items: int) -> ReadQuery:
    """Parse the parameters of a read (see the module docstring); ``items`` capped."""
    items = _whole(params, "items")
    limit = max_items if not items else min(items, max_items)
    sort = params.get("sort", "asc") or "asc"
    if sort not in ("asc", "desc"):
        raise QueryError(f"invalid sort: {sort!r} (asc or desc)")
    min_ts = _whole(params, "min_ts") or None
    max_ts = _whole(params, "max_ts") or None
    if min_ts is not None and max_ts is not None and min_ts > max_ts:
        raise QueryError("min_ts is after max_ts")
    agg_ms: int | None = None
    agg = params.get("agg")
    if agg:
        match = AGG_RE.match(agg)
        if match is None or int(match.group(1)) == 0:
            raise QueryError(f"invalid agg: {agg!r} (a fixed interval such as 5m, 1h, 1d, 1w)")
        agg_ms = int(match.group(1)) * AGG_UNITS_MS[match.group(2)]
    agg_type = params.get("agg_type") or "mean"
    if agg_type not in AGG_TYPES:
        raise QueryError(f"invalid agg_type: {agg_type!r} ({', '.join(AGG_TYPES)})")
    window = TimeRange(min_ts, max_ts, sort == "desc", None if agg_ms else limit)
    return ReadQuery(window, agg_ms, agg_type, limit)


def record_json(ts: int, data: Any) -> dict[str, Any]:
    """Return a record as Thinger's read answers it: ``{"ts": ms, "val": data}``."""
    return {"ts": ts, "val": data}


class _Stats:
    __slots__ = ("count", "high", "low", "total")

    def __init__(self, value: float) -> None:
        self.count = 1
        self.total = value
        self.low = value
        self.high = value

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def result(self, agg_type: str) -> float | int:
        match agg_type:
            case "count":
                return self.count
            case "sum":
                return self.total
            case "min":
                return self.low
            case "max":
                return self.high
            case "spread":
                return self.high - self.low
            case _:
                return self.total / self.count


def _numbers(data: Any) -> Iterator[tuple[str, float]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield str(key), value
    elif isinstance(data, int | float) and not isinstance(data, bool):
        yield "value", data


class Aggregator:
    """Folds records (in ts order, either direction) into one record per interval.

    Each interval starts at a multiple of ``agg_ms`` since the epoch; its record
    is ``{"ts": start, "val": {field: f(values)}}`` over the numeric top-level
    fields (a bare number is the field ``value``; ``count`` counts each field's
    values). It holds one interval's fields at a time, so a range of any size
    streams through it.
    """

    def __init__(self, agg_ms: int, agg_type: str) -> None:
        self.agg_ms = agg_ms
        self.agg_type = agg_type
        self._start: int | None = None
        self._stats: dict[str, _Stats] = {}

    def add(self, ts: int, data: Any) -> dict[str, Any] | None:
        """Take one record; return the previous interval's record when it closed."""
        start = ts - ts % self.agg_ms
        closed = None
        if start != self._start:
            if self._start is not None:
                closed = _interval(self._start, self._stats, self.agg_type)
            self._start, self._stats = start, {}
        for key, value in _numbers(data):
            known = self._stats.get(key)
            if known is None:
                self._stats[key] = _Stats(value)
            else:
                known.add(value)
        return closed

    def finish(self) -> dict[str, Any] | None:
        """Return the last interval's record (None when no record came)."""
        if self._start is None:
            return None
        last = _interval(self._start, self._stats, self.agg_type)
        self._start, self._stats = None, {}
        return last


def aggregate(
    records: Iterable[tuple[int, Any]], agg_ms: int, agg_type: str
) -> Iterator[dict[str, Any]]:
    """Aggregate a sequence of records with :class:`Aggregator`."""
    folder = Aggregator(agg_ms, agg_type)
    for ts, data in records:
        closed = folder.add(ts, data)
        if closed is not None:
            yield closed
    last = folder.finish()
    if last is not None:
        yield last


def _interval(start: int, stats: Mapping[str, _Stats], agg_type: str) -> dict[str, Any]:
    return record_json(start, {key: s.result(agg_type) for key, s in stats.items()})


__all__ = [
    "AGG_TYPES",
    "Aggregator",
    "QueryError",
    "ReadQuery",
    "aggregate",
    "parse_read_query",
    "record_json",
]
