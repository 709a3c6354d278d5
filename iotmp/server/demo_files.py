"""Writing files that hold secrets (demo settings, TLS keys) safely.

:func:`write_private_file` never writes through a name an attacker could have
prepared: the data goes to a fresh temporary file created with ``O_EXCL`` (so
a pre-existing file or symlink is never opened or followed) and mode 0600 in
the target's folder, is flushed to disk (``fsync``), and then atomically
renamed over the target (a symlink at the target is replaced, not followed);
the folder is synced so that the rename survives a crash. Readers see the old
file or the new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_private_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data`` (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp: O_CREAT | O_EXCL with a random name, mode 0600
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if mode != 0o600:
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_folder(path.parent)


def write_private_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as JSON to ``path``, readable by the owner only."""
    text = json.dumps(document, indent=2) + "\n"
    write_private_file(path, text.encode("utf-8"))


def _sync_folder(folder: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return  # e.g. Windows: folders cannot be opened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def short_token(token: str) -> str:
    """Cut a token down for display: enough to recognise it, too little to use it."""
    if len(token) <= 24:
        return "(see the demo file)"
    return f"{token[:12]}...{token[-6:]}"


__all__ = ["short_token", "write_private_file", "write_private_json"]
