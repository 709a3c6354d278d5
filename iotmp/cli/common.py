"""What the ``iotmp`` subcommands share: exit codes, logging, server settings."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Final

from iotmp.server.config import default_demo_file


class ExitCode(IntEnum):
    """Exit codes of the ``iotmp`` commands (scripts test them)."""

    OK = 0
    REMOTE = 1
    """The server (or the device behind it) answered with an error, or was unreachable."""
    USAGE = 2
    """The command line or its settings are wrong."""


ENV_URL: Final = "IOTMP_URL"
ENV_TOKEN: Final = "IOTMP_TOKEN"
ENV_INSECURE: Final = "IOTMP_INSECURE"


class UsageError(Exception):
    """A mistake on the command line: one line on stderr, exit code 2."""


def setup_logging(
    level: str,
    *,
    fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s",
    log_format: str = "text",
) -> None:
    """Log to stderr at ``level`` (a name such as INFO; unknown names mean INFO).

    ``log_format="json"`` writes one JSON object per line (:mod:`.log_format`).
    """
    level_no = getattr(logging, str(level).upper(), logging.INFO)
    if log_format == "json":
        from .log_format import JsonFormatter  # noqa: PLC0415

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level_no, handlers=[handler])
        return
    logging.basicConfig(level=level_no, format=fmt)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT/SIGTERM while inside (Ctrl-C and ``kill`` end a command cleanly)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not on the main thread (tests) or not on this platform: Ctrl-C raises instead.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``--url``/``--token``/``--demo-file``/``--insecure`` of the application commands."""
    group = parser.add_argument_group(
        "server",
        f"Where the server is and how to log in: --url/--token, else ${ENV_URL}/${ENV_TOKEN}, "
        "else the demo file of 'iotmp server --demo' / 'iotmp demo'.",
    )
    group.add_argument("--url", help=f"server base URL, e.g. http://127.0.0.1:25280 (${ENV_URL})")
    group.add_argument("--token", help=f"access token (${ENV_TOKEN})")
    group.add_argument(
        "--demo-file",
        type=Path,
        metavar="FILE",
        help=f"read URL and token from this demo file (default {default_demo_file()})",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help=f"do not verify the server's TLS certificate (${ENV_INSECURE}=1)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (one value per line)")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Resolved connection settings of an application command."""

    url: str
    token: str
    verify_ssl: bool
    source: str


def _read_demo(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"no server given: pass --url and --token, set ${ENV_URL} and ${ENV_TOKEN}, "
            f"or start 'iotmp demo' (demo file {path} does not exist)"
        ) from None
    except (OSError, ValueError) as err:
        raise UsageError(f"demo file {path} is not readable JSON: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"demo file {path} is not a JSON object")
    return data


def resolve_server(args: argparse.Namespace) -> ServerSettings:
    """Resolve the server: command line, else the environment, else the demo file."""
    url = args.url or os.environ.get(ENV_URL)
    token = args.token or os.environ.get(ENV_TOKEN)
    source = "command line / environment"
    if args.demo_file is not None or not (url and token):
        path = args.demo_file or default_demo_file()
        demo = _read_demo(path)
        url = url or demo.get("http_url")
        token = token or demo.get("token")
        source = f"demo file {path}"
    if not isinstance(url, str) or not url:
        raise UsageError("no server URL: pass --url or set $" + ENV_URL)
    if not isinstance(token, str) or not token:
        raise UsageError("no access token: pass --token or set $" + ENV_TOKEN)
    insecure = args.insecure
    if insecure is None:
        insecure = os.environ.get(ENV_INSECURE, "").lower() in {"1", "true", "yes"}
    return ServerSettings(url=url, token=token, verify_ssl=not insecure, source=source)


def parse_json_value(text: str) -> Any:
    """Parse a command-line value as JSON (``21.5``, ``true``, ``{"r":1}``); a bare word is text."""
    try:
        return json.loads(text)
    except ValueError:
        if text[:1] in '{["' or not text:
            raise UsageError(f"not valid JSON: {text!r}") from None
        return text
