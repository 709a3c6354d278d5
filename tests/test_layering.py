"""Layering rule: protocol, client, mapping, server and virtual devices never import HA.

Every ``.py`` file in those places is parsed (not imported) and checked for any
import of ``homeassistant``: ``import``/``from`` statements anywhere in the file
(module level, inside functions, under ``TYPE_CHECKING``), and
``importlib.import_module("homeassistant...")`` / ``__import__("homeassistant...")``
with a literal name. Imports of the integration's Home Assistant glue
(``custom_components.iotmp`` itself or its other modules, e.g. ``..const``) are
reported too, because they pull Home Assistant in indirectly.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION_PKG = "custom_components.iotmp"

# Places that must stay free of Home Assistant (see docs/architecture.md).
HA_FREE_PATHS = [
    "custom_components/iotmp/protocol",
    "custom_components/iotmp/client",
    "custom_components/iotmp/mapping.py",
    "iotmp_server",
    "iotmp_devices",
]
# Modules of the integration package that HA-free code may import.
HA_FREE_INTEGRATION_MODULES = [
    f"{INTEGRATION_PKG}.protocol",
    f"{INTEGRATION_PKG}.client",
    f"{INTEGRATION_PKG}.mapping",
]


def _is_homeassistant(module: str) -> bool:
    return module == "homeassistant" or module.startswith("homeassistant.")


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _is_ha_glue(module: str) -> bool:
    """True for the integration package or any of its Home Assistant modules."""
    if not _within(module, INTEGRATION_PKG):
        return False
    return not any(_within(module, ok) for ok in HA_FREE_INTEGRATION_MODULES)


def module_name(path: Path, root: Path = ROOT) -> str:
    """Dotted module name of a file below ``root`` (``pkg/__init__.py`` -> ``pkg``)."""
    parts = list(path.resolve().relative_to(root.resolve()).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """Absolute module name an ``ImportFrom`` refers to."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)] if node.level - 1 <= len(base) else []
    return ".".join([*base, *([node.module] if node.module else [])])


def forbidden_imports(path: Path, module: str | None = None) -> list[str]:
    """Return a description of every forbidden import in ``path``.

    ``module`` is the file's dotted module name (used to resolve relative
    imports); it defaults to the name derived from the repository layout.
    """
    if module is None:
        module = module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []

    def report(node: ast.AST, target: str) -> None:
        what = "Home Assistant" if _is_homeassistant(target) else "HA glue module"
        found.append(f"{path}:{getattr(node, 'lineno', '?')}: imports {what} {target!r}")

    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, module, is_package)
            # ``from pkg import sub`` may name a submodule: check both.
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            # ``from custom_components.iotmp import protocol`` is fine; only the
            # package's own names (e.g. DOMAIN from its __init__) are glue.
            if base == INTEGRATION_PKG and all(
                not _is_ha_glue(f"{base}.{alias.name}") for alias in node.names
            ):
                targets = targets[1:]
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if (
                name in {"import_module", "__import__"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                targets = [node.args[0].value]
        for target in targets:
            if _is_homeassistant(target) or _is_ha_glue(target):
                report(node, target)
                break
    return found


def _ha_free_files() -> list[Path]:
    files: list[Path] = []
    for rel in HA_FREE_PATHS:
        path = ROOT / rel
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted(path.rglob("*.py")))
    return files


def test_ha_free_code_does_not_import_homeassistant() -> None:
    files = _ha_free_files()
    assert files, "no files found to check: did the layout change?"
    problems = [problem for path in files for problem in forbidden_imports(path)]
    assert not problems, "Home Assistant imported from HA-free code:\n" + "\n".join(problems)


# --- self-checks: the scanner must catch every form it claims to catch -------

BAD_SOURCES = {
    "plain": "import homeassistant\n",
    "submodule_alias": "import os, homeassistant.core as hc\n",
    "from": "from homeassistant.core import HomeAssistant\n",
    "from_package": "from homeassistant import core\n",
    "in_function": "def f():\n    from homeassistant.const import Platform\n    return Platform\n",
    "type_checking": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from homeassistant.core import HomeAssistant\n"
    ),
    "try_except": "try:\n    import homeassistant.util\nexcept ImportError:\n    pass\n",
    "import_module": "import importlib\nimportlib.import_module('homeassistant.core')\n",
    "bare_import_module": "from importlib import import_module\nimport_module('homeassistant')\n",
    "dunder_import": "__import__('homeassistant.helpers')\n",
    "glue_relative": "from ..const import DOMAIN\n",
    "glue_relative_package": "from .. import DOMAIN\n",
    "glue_absolute": "from custom_components.iotmp.coordinator import X\n",
    "glue_package": "import custom_components.iotmp\n",
}
GOOD_SOURCES = {
    "lookalike": "import homeassistantx\nfrom homeassistant_fake import y\n",
    "same_package": "from . import errors\nfrom .codec import encode_message\n",
    "sibling_ha_free": "from ..client import Client\nfrom ..mapping import rules\n",
    "absolute_ha_free": (
        "from custom_components.iotmp.protocol import codec\n"
        "from custom_components.iotmp import protocol, client\n"
        "import custom_components.iotmp.protocol.pson\n"
    ),
    "string_mention": "NAME = 'homeassistant'\nprint(NAME)\n",
    "stdlib": "import asyncio\nfrom importlib import import_module\nimport_module('json')\n",
}
SELF_CHECK_MODULE = f"{INTEGRATION_PKG}.protocol.sample"


@pytest.mark.parametrize("source", BAD_SOURCES.values(), ids=BAD_SOURCES.keys())
def test_scanner_flags_forbidden_import(tmp_path: Path, source: str) -> None:
    path = tmp_path / "sample.py"
    path.write_text(source, encoding="utf-8")
    assert forbidden_imports(path, SELF_CHECK_MODULE)


@pytest.mark.parametrize("source", GOOD_SOURCES.values(), ids=GOOD_SOURCES.keys())
def test_scanner_accepts_clean_file(tmp_path: Path, source: str) -> None:
    path = tmp_path / "sample.py"
    path.write_text(source, encoding="utf-8")
    assert forbidden_imports(path, SELF_CHECK_MODULE) == []


def test_module_name() -> None:
    assert (
        module_name(ROOT / "custom_components/iotmp/protocol/__init__.py")
        == "custom_components.iotmp.protocol"
    )
    assert module_name(ROOT / "iotmp_server/api.py") == "iotmp_server.api"
