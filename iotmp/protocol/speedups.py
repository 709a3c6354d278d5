"""Which codec implementation the protocol library runs: compiled or pure Python.

``varint``, ``pson``, ``pson_legacy`` and ``codec`` are pure-Python modules, and
they are the reference. A wheel built where Cython and a C compiler exist (see
``hatch_build.py``) also carries each one compiled from the same source, as
``_varint_c``, ``_pson_c``, ``_pson_legacy_c`` and ``_codec_c``. At import, each
pure module puts the compiled module's public functions in its own namespace, so
``iotmp.protocol.pson.decode`` or ``iotmp.protocol.encode_message`` are the
compiled ones. The pure functions stay reachable through :func:`python_impl`.
``ratelimit`` is compiled the same way (``_ratelimit_c``), for its token bucket, which
the server's compiled sample path calls in C; :func:`twins` gives both copies.

Set ``IOTMP_NO_EXTENSIONS=1`` (read at import) to run the pure-Python codec even
where the compiled one is installed. Both give the same bytes, values and
``ProtocolError`` messages; the tests check it on every vector and property.
"""

from __future__ import annotations

import importlib
import os
import types
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ENV_NO_EXTENSIONS",
    "CodecImpl",
    "active",
    "compiled_impl",
    "extension",
    "python_impl",
    "twins",
]

ENV_NO_EXTENSIONS: Final = "IOTMP_NO_EXTENSIONS"
MODULES: Final = ("varint", "pson", "pson_legacy", "codec")
_REBOUND: Final = ("pson", "pson_legacy", "codec")  # varint: only the compiled codec calls it

_PACKAGE: Final = __name__.rpartition(".")[0]
_DISABLED: Final = os.environ.get(ENV_NO_EXTENSIONS, "") not in ("", "0")
_python: dict[str, types.SimpleNamespace] = {}
_active: dict[str, str] = {}


@dataclass(frozen=True)
class CodecImpl:
    """One implementation of the four codec modules (module-like namespaces)."""

    name: str  # "compiled" or "python"
    varint: Any
    pson: Any
    pson_legacy: Any
    codec: Any


def _compiled_module(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(f"{_PACKAGE}._{name}_c")
    except ImportError:
        return None


def extension(module: str) -> types.ModuleType | None:
    """Import the compiled-only module ``module``; None if not built or switched off.

    For the Cython-only modules (no pure twin; their callers keep a Python path),
    under the same ``IOTMP_NO_EXTENSIONS`` switch as the codec.
    """
    if _DISABLED:
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def install(
    name: str, namespace: dict[str, Any], names: tuple[str, ...], *, rebind: bool = True
) -> None:
    """Register a pure module's ``names``; rebind them to the compiled module's.

    The pure functions become the Python implementation; unless disabled (or
    ``rebind`` is false) the module's names then point at the compiled ones.

    Called at the end of the pure module; its compiled copy runs it too, and
    does nothing.
    """
    if namespace["__name__"] != f"{_PACKAGE}.{name}":
        return
    _python[name] = types.SimpleNamespace(**{n: namespace[n] for n in names})
    compiled = None if _DISABLED else _compiled_module(name)
    if compiled is None or not rebind:
        _active[name] = "python"
        return
    for n in names:
        namespace[n] = getattr(compiled, n)
    _active[name] = "compiled"


def active() -> str:
    """``"compiled"`` when the codec runs compiled, else ``"python"``."""
    for name in MODULES:
        importlib.import_module(f"{_PACKAGE}.{name}")
    return "compiled" if all(_active[n] == "compiled" for n in _REBOUND) else "python"


def twins(name: str) -> tuple[types.SimpleNamespace, types.ModuleType | None]:
    """Return the pure names of module ``name`` and its compiled copy, for parity tests.

    The names are those :func:`install` registered; the copy is None if not built,
    and given even when disabled.
    """
    importlib.import_module(f"{_PACKAGE}.{name}")
    return _python[name], _compiled_module(name)


def python_impl() -> CodecImpl:
    """Return the pure-Python codec (the reference), whatever is active."""
    for name in MODULES:
        importlib.import_module(f"{_PACKAGE}.{name}")
    return CodecImpl("python", *(_python[name] for name in MODULES))


def compiled_impl() -> CodecImpl | None:
    """Return the compiled codec if installed (even when disabled), else None."""
    modules = [_compiled_module(name) for name in MODULES]
    if any(m is None for m in modules):
        return None
    return CodecImpl("compiled", *modules)
