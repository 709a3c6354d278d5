"""The package runs without Home Assistant: importing every module loads none of it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_importing_every_iotmp_module_loads_no_homeassistant() -> None:
    # A fresh interpreter: this test process may have Home Assistant loaded already.
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import iotmp
        names = [m.name for m in pkgutil.walk_packages(iotmp.__path__, "iotmp.")
                 if not m.name.endswith("__main__")]
        # Modules of an extra whose library is not installed (amqtt, asyncpg)
        # may fail to import; nothing else may.
        OPTIONAL = {"amqtt", "aiomqtt", "paho", "asyncpg", "yaml", "cryptography", "Cython"}
        for name in names:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] not in OPTIONAL:
                    raise
        leaked = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("homeassistant", "custom_components"))
        print(len(names))
        print(" ".join(leaked))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    count, leaked = [*result.stdout.splitlines(), "", ""][:2]
    assert int(count) >= 30, "walked suspiciously few modules"
    assert leaked == "", f"importing iotmp loaded: {leaked}"
