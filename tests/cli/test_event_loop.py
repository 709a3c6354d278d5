"""``iotmp server --loop``: uvloop or asyncio's loop, and a clear error without uvloop.

Real processes on loopback, as in ``test_commands.py``; the absence of uvloop is
a ``uvloop`` module on ``PYTHONPATH`` that raises ImportError, as an interpreter
without the extra would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_commands import iotmp, spawn

pytestmark = pytest.mark.usefixtures("socket_enabled")


def _env(home: Path, *, without_uvloop: bool = False) -> dict[str, str]:
    env = {**os.environ, "IOTMP_DATA_DIR": str(home / "data")}
    env.pop("IOTMP_URL", None)
    env.pop("IOTMP_TOKEN", None)
    if without_uvloop:
        shim = home / "no-uvloop"
        (shim / "uvloop").mkdir(parents=True)
        (shim / "uvloop" / "__init__.py").write_text(
            "raise ImportError(\"No module named 'uvloop'\")\n"
        )
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), env.get("PYTHONPATH")]))
    return env


# Ctrl-C before the server's signal handlers are in place ends it as KeyboardInterrupt.
STOPPED = (0, 130)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def _server_args(demo_file: Path, loop: str) -> list[str]:
    return [
        "server", "--demo", "--demo-file", str(demo_file), "--http-port", "0",
        "--tcp-port", "0", "--no-tls", "--loop", loop,
    ]  # fmt: skip


def _wait_for(demo_file: Path, server: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while not demo_file.exists():
        assert server.poll() is None, _stop(server)
        assert time.monotonic() < deadline, "the server wrote no demo file"
        time.sleep(0.1)
    document: dict[str, Any] = json.loads(demo_file.read_text())
    return document


def _version(document: dict[str, Any]) -> Any:
    with urllib.request.urlopen(document["http_url"] + "/v1/server/version", timeout=10) as resp:
        return json.load(resp)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_server_on_uvloop_serves_a_device_and_rest(home: Path) -> None:
    pytest.importorskip("uvloop")
    env = _env(home)
    demo_file = home / "demo.json"
    server = spawn(*_server_args(demo_file, "uvloop"), env=env)
    devices = None
    try:
        document = _wait_for(demo_file, server)
        assert "version" in _version(document)
        devices = spawn("sim", "--demo", "--demo-file", str(demo_file), env=env)
        deadline = time.monotonic() + 30
        while True:
            listed = iotmp("read", "--demo-file", str(demo_file), "counter", "count", env=env)
            if listed.returncode == 0:
                break
            assert time.monotonic() < deadline, listed.stderr
            time.sleep(0.3)
        assert listed.stdout.strip().isdigit()
    finally:
        if devices is not None:
            _stop(devices)
        code, err = _stop(server)
    assert code in STOPPED, err
    assert "event loop: uvloop" in err


def test_server_on_asyncio_loop(home: Path) -> None:
    demo_file = home / "demo.json"
    server = spawn(*_server_args(demo_file, "asyncio"), env=_env(home))
    try:
        assert "version" in _version(_wait_for(demo_file, server))
    finally:
        code, err = _stop(server)
    assert code in STOPPED, err
    assert "event loop: asyncio" in err


def test_uvloop_asked_for_but_missing_is_a_usage_error(home: Path) -> None:
    env = _env(home, without_uvloop=True)
    result = iotmp(*_server_args(home / "demo.json", "uvloop"), env=env)
    assert result.returncode == 2
    assert "pip install 'iotmp[uvloop]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "demo.json").exists()  # it stopped before starting anything
    result = iotmp("demo", "--loop", "uvloop", "--no-tls", "--no-mqtt", env=env)
    assert result.returncode == 2
    assert "pip install 'iotmp[uvloop]'" in result.stderr


def test_auto_falls_back_to_asyncio_without_uvloop(home: Path) -> None:
    demo_file = home / "demo.json"
    server = spawn(*_server_args(demo_file, "auto"), env=_env(home, without_uvloop=True))
    try:
        _wait_for(demo_file, server)
    finally:
        code, err = _stop(server)
    assert code in STOPPED, err
    assert "event loop: asyncio" in err
