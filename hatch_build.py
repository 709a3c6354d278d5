"""Build hook: compile the optional Cython codec and sample path into the wheel.

The pure-Python modules ``iotmp/protocol/{varint,pson,pson_legacy,codec,ratelimit}.py`` are the
reference and the fallback. When Cython and a C compiler are available, each is
also compiled, from the same source plus its ``.pxd`` (Cython's pure-Python mode,
as aioesphomeapi does), into a sibling extension ``_<name>_c`` that
``iotmp.protocol`` prefers at import (``IOTMP_NO_EXTENSIONS=1`` turns it off).
Two Cython-only modules (``.pyx``, as aiohttp's parser is) are compiled with them:
``iotmp/protocol/_pson_json_c`` (PSON to JSON) and ``iotmp/server/_sample_path_c``
(the server's compiled sample path); without them the server takes its Python path,
which is their reference.
The wheel is then tagged for the interpreter and platform that built it; without
Cython or a compiler, or with ``IOTMP_PURE_BUILD=1``, it stays a pure wheel.

In-place build for a checkout (the ``.so`` files are git-ignored)::

    python hatch_build.py --inplace      # with the interpreter that will import them
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

# Compiled in this order. In each compiled copy, imports of these siblings are
# rewritten to their compiled copies, so that compiled modules call compiled ones.
MODULES: tuple[str, ...] = ("varint", "pson", "pson_legacy", "codec", "ratelimit")
PACKAGE = Path("iotmp") / "protocol"
# Cython-only modules, after MODULES (a .pxd beside one is for others to cimport).
PYX_MODULES: tuple[Path, ...] = (
    PACKAGE / "_pson_json_c",
    Path("iotmp") / "server" / "_sample_path_c",
)
DIRECTIVES = {
    "language_level": "3",
    "binding": False,
    "embedsignature": False,
    "annotation_typing": False,
    "initializedcheck": False,
    "infer_types": False,  # an inferred C int would wrap where Python ints grow
}


def _log(message: str) -> None:
    print(f"[iotmp build] {message}", file=sys.stderr)


def _compiler() -> list[str] | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    argv = shlex.split(cc)
    return argv if shutil.which(argv[0]) else None


def _compiled_imports(source: str) -> str:
    """Point ``from . import pson`` / ``from .pson import x`` at the compiled siblings."""

    def sibling_names(match: re.Match[str]) -> str:
        names = [n.strip() for n in match.group(1).split(",")]
        return "\n".join(
            f"from . import _{n}_c as {n}" if n in MODULES else f"from . import {n}" for n in names
        )

    source = re.sub(r"(?m)^from \. import ([\w, ]+)$", sibling_names, source)
    return re.sub(
        r"(?m)^from \.(\w+) import ",
        lambda m: f"from ._{m.group(1)}_c import " if m.group(1) in MODULES else m.group(0),
        source,
    )


def build_extensions(root: Path, out_dir: Path) -> list[Path]:
    """Cythonize and compile every module into ``out_dir/iotmp/protocol``; [] if impossible.

    Raises if Cython and a compiler are present but the build fails (a broken
    extension must not be silently replaced by the fallback in a release).
    """
    if os.environ.get("IOTMP_PURE_BUILD", "") not in ("", "0"):
        _log("IOTMP_PURE_BUILD set: pure-Python wheel")
        return []
    try:
        from Cython.Compiler import Options  # noqa: PLC0415 (optional)
        from Cython.Compiler.Main import (  # noqa: PLC0415 (optional)
            CompilationOptions,
            compile_single,
        )
    except ImportError:
        _log("Cython not installed: pure-Python wheel")
        return []
    cc = _compiler()
    include = sysconfig.get_paths()["include"]
    if cc is None or not (Path(include) / "Python.h").exists():
        _log("no C compiler or Python headers: pure-Python wheel")
        return []
    Options.docstrings = True
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = out_dir / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    built = []
    with tempfile.TemporaryDirectory(prefix="iotmp-cython-") as tmp:
        work = Path(tmp) / PACKAGE
        work.mkdir(parents=True)
        (Path(tmp) / "iotmp" / "server").mkdir()
        for init in ("iotmp", "iotmp/protocol", "iotmp/server"):
            (Path(tmp) / init / "__init__.py").write_text("")
        sources: list[tuple[Path, str]] = []  # (Cython source in tmp, module name)
        for name in MODULES:
            source = _compiled_imports((root / PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
            py = work / f"_{name}_c.py"
            py.write_text(source, encoding="utf-8")
            shutil.copy(root / PACKAGE / f"{name}.pxd", work / f"_{name}_c.pxd")
            sources.append((py, f"iotmp.protocol._{name}_c"))
        for module in PYX_MODULES:
            for ext in (".pyx", ".pxd"):
                if (root / module).with_suffix(ext).exists():
                    shutil.copy(
                        (root / module).with_suffix(ext), (Path(tmp) / module).with_suffix(ext)
                    )
            sources.append(((Path(tmp) / module).with_suffix(".pyx"), ".".join(module.parts)))
        for py, full_name in sources:
            options = CompilationOptions(
                compiler_directives=DIRECTIVES,
                language_level=3,
                include_path=[tmp],
                output_file=str(py.with_suffix(".c")),
            )
            result = compile_single(str(py), options, full_module_name=full_name)
            if result.num_errors:
                raise RuntimeError(f"Cython failed on {py.name}")
            *package, module_name = full_name.split(".")
            so = out_dir.joinpath(*package) / f"{module_name}{suffix}"
            so.parent.mkdir(parents=True, exist_ok=True)
            cmd = [
                *cc,
                "-shared",
                "-fPIC",
                "-O2",
                "-fno-strict-aliasing",
                "-w",
                f"-I{include}",
                str(py.with_suffix(".c")),
                "-o",
                str(so),
            ]
            subprocess.run(cmd, check=True)
            built.append(so)
            _log(f"compiled {so.name}")
    return built


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # running this file directly, without hatchling
    BuildHookInterface = object  # type: ignore[misc,assignment]


class CythonBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Hatchling wheel hook: add the compiled modules and tag the wheel for this interpreter."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile into a directory of the build and force-include the results."""
        if self.target_name != "wheel" or version == "editable":
            return
        out = Path(self.directory) / "cython-build"
        shutil.rmtree(out, ignore_errors=True)
        built = build_extensions(Path(self.root), out)
        if not built:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        for so in built:
            build_data["force_include"][str(so)] = str(so.relative_to(out))

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the intermediate build directory."""
        shutil.rmtree(Path(self.directory) / "cython-build", ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] != ["--inplace"]:
        sys.exit(__doc__)
    here = Path(__file__).resolve().parent
    for so in build_extensions(here, here):
        print(so)
