"""Alarms: rules on device resources, properties or bucket fields, and their instances."""

from __future__ import annotations

from .feature import Alarms

__all__ = ["Alarms"]
