"""Buckets: time series kept in the server's database (issue 11).

``service`` (the feature and its in-process calls), ``routes`` (REST),
``model`` (bucket objects and checks), ``query`` (read parameters and
aggregation), ``writer`` (the batched write queue), ``retention``,
``sampling`` (device-resource buckets), ``export`` (CSV / JSON).
"""

from __future__ import annotations

from .service import BucketError, Buckets

__all__ = ["BucketError", "Buckets"]
