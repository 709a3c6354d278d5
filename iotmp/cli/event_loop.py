"""The event loop of ``iotmp server`` and ``iotmp demo``: asyncio's own or uvloop's.

uvloop (the ``iotmp[uvloop]`` extra, not on Windows) is a faster drop-in loop.
Only the commands choose it; the Home Assistant integration runs on the loop
Home Assistant gives it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, TypeVar

_LOGGER = logging.getLogger("iotmp.event_loop")

LOOP_CHOICES: Final = ("auto", "asyncio", "uvloop")
LOOP_HELP: Final = (
    "event loop: auto (uvloop when installed, not on Windows; else asyncio), asyncio or "
    "uvloop (needs pip install 'iotmp[uvloop]'); default auto"
)
_T = TypeVar("_T")


class EventLoopError(Exception):
    """The event loop asked for cannot be used (a usage error: exit code 2)."""


@dataclass(frozen=True, slots=True)
class EventLoopChoice:
    """The loop to run on: its name for the log and how to make it (None: asyncio's)."""

    name: str
    factory: Callable[[], asyncio.AbstractEventLoop] | None


def choose_loop(choice: str) -> EventLoopChoice:
    """Resolve ``auto``/``asyncio``/``uvloop`` (:class:`EventLoopError` if it cannot be had)."""
    if choice not in LOOP_CHOICES:
        raise EventLoopError(f"unknown event loop {choice!r} (choose {', '.join(LOOP_CHOICES)})")
    if choice == "asyncio":
        return EventLoopChoice("asyncio", None)
    if sys.platform == "win32":
        if choice == "uvloop":
            raise EventLoopError("uvloop does not run on Windows; use --loop asyncio")
        return EventLoopChoice("asyncio", None)
    try:
        import uvloop  # noqa: PLC0415 - optional extra
    except ImportError:
        if choice == "uvloop":
            raise EventLoopError(
                "--loop uvloop needs uvloop: pip install 'iotmp[uvloop]' (or use --loop asyncio)"
            ) from None
        return EventLoopChoice("asyncio", None)
    return EventLoopChoice(f"uvloop {uvloop.__version__}", uvloop.new_event_loop)


def run_on(loop: EventLoopChoice, main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to completion on a new loop of the chosen kind, as ``asyncio.run`` does."""
    _LOGGER.info("event loop: %s", loop.name)
    with asyncio.Runner(loop_factory=loop.factory) as runner:
        return runner.run(main)
