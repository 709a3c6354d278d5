"""The floors of the package (docs/architecture.md): who may import whom.

Every ``.py`` file under ``iotmp/`` is parsed, not imported, and every import
is checked: ``import``/``from`` statements anywhere in the file (module level,
inside functions, under ``TYPE_CHECKING``) and ``importlib.import_module(...)``/``__import__(...)``
with a literal name. ``tests/test_standalone.py`` checks the same at run time
(``sys.modules`` after importing every module).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "iotmp"

# floor -> floors of ours it may import (besides itself and the package root).
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "device": {"protocol"},
    "client": {"protocol"},
    # Home Assistant's entity rules in pure Python (MQTT discovery, the integration).
    "ha_mapping": {"protocol"},
    "server": {"protocol", "ha_mapping"},
    "sim": {"protocol", "device"},
    # The test helpers of sim start a server to run devices against.
    "sim.testing": {"protocol", "device", "server"},
    "cli": {"protocol", "device", "client", "server", "sim", "ha_mapping"},
}
FORBIDDEN_ROOTS = ("homeassistant", "custom_components")


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


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``path``."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, module, is_package)
            found.append((node.lineno, base))
            # ``from iotmp import server`` names a submodule
            found += [
                (node.lineno, f"{base}.{alias.name}") for alias in node.names if base == "iotmp"
            ]
        elif isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "attr", None) or getattr(func, "id", "")
            if (
                name in {"import_module", "__import__"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append((node.lineno, node.args[0].value))
    return found


def floor_of(module: str) -> str | None:
    """``iotmp.server.app`` -> ``server``; ``iotmp.sim.testing`` -> ``sim.testing``."""
    parts = module.split(".")
    if parts[0] != "iotmp" or len(parts) < 2 or parts[1] not in ALLOWED:
        return None  # the package root (``iotmp.__version__``) is everyone's
    if parts[1:3] == ["sim", "testing"]:
        return "sim.testing"
    return parts[1]


def problems_in(path: Path, module: str) -> list[str]:
    """Every import in ``path`` that crosses a floor the wrong way."""
    own = floor_of(module)
    allowed = ALLOWED.get(own or "", set()) | ({own} if own else set())
    if own == "sim.testing":
        allowed.add("sim")
    problems = []
    for line, target in imported_modules(path, module):
        root = target.split(".")[0]
        if root in FORBIDDEN_ROOTS:
            problems.append(f"{path}:{line}: imports {target!r} (Home Assistant or its glue)")
            continue
        target_floor = floor_of(target)
        if target_floor is None or own is None:
            continue
        if target_floor == "sim.testing":
            target_floor = "sim"
        if target_floor not in allowed:
            problems.append(f"{path}:{line}: {own} imports {target!r} (a floor it stands below)")
    return problems


def test_every_floor_has_files() -> None:
    for floor in ("protocol", "device", "client", "server", "sim", "cli"):
        assert list((PACKAGE / floor).glob("*.py")), (
            f"iotmp/{floor} is empty: did the layout change?"
        )


def test_floors_import_only_downwards() -> None:
    problems = [
        problem
        for path in sorted(PACKAGE.rglob("*.py"))
        for problem in problems_in(path, module_name(path))
    ]
    assert not problems, "imports against the floors:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("iotmp.protocol.codec", "import homeassistant.core\n", "Home Assistant"),
        ("iotmp.protocol.codec", "from ..device import Device\n", "a floor it stands below"),
        ("iotmp.client.api", "from iotmp.server import app\n", "a floor it stands below"),
        ("iotmp.device.device", "from iotmp import sim\n", "a floor it stands below"),
        ("iotmp.client.api", "from iotmp.ha_mapping import map_device\n", "below"),
        ("iotmp.server.app", "def f():\n    from custom_components.iotmp import const\n", "glue"),
        ("iotmp.sim.fleet", "import importlib\nimportlib.import_module('iotmp.cli')\n", "below"),
    ],
)
def test_checker_flags_upward_imports(
    tmp_path: Path, module: str, source: str, expected: str
) -> None:
    path = tmp_path / "mod.py"
    path.write_text(source)
    problems = problems_in(path, module)
    assert problems and expected in problems[0]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("iotmp.device.device", "from ..protocol.session import Session\n"),
        ("iotmp.sim.testing", "from iotmp.server.testing import run_test_server\n"),
        ("iotmp.cli.app", "from iotmp.client import IotmpApiClient\nimport aiohttp\n"),
        ("iotmp.protocol.pson", "from .varint import encode\n"),
        ("iotmp.server.mqtt", "from iotmp.ha_mapping import map_device\n"),
    ],
)
def test_checker_accepts_downward_imports(tmp_path: Path, module: str, source: str) -> None:
    path = tmp_path / "mod.py"
    path.write_text(source)
    assert problems_in(path, module) == []


def test_module_name() -> None:
    assert module_name(ROOT / "iotmp/protocol/__init__.py") == "iotmp.protocol"
    assert module_name(ROOT / "iotmp/server/app.py") == "iotmp.server.app"
