"""Helpers for the MQTT tests: mosquitto processes, labs, the mosquitto clients."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from iotmp.server.mqtt.settings import MqttConfig
from iotmp.server.testing import TestDevice, TestServer, run_test_server


def have_mosquitto() -> bool:
    """Whether the mosquitto broker is installed (scripts/setup installs it)."""
    return shutil.which("mosquitto", path="/usr/sbin:/usr/bin:/usr/local/sbin") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """A mosquitto process on 127.0.0.1:``port``."""

    def __init__(self, tmp: Path, *, password_file: Path | None = None) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.password_file = password_file
        self.config = tmp / "mosquitto.conf"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to "mosquitto", who cannot read tmp_path
        if self.password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / "mosquitto.log").open("wb"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None


class MqttLab:
    """A running server plus where its broker is."""

    def __init__(self, server: TestServer, host: str, port: int, kind: str) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.kind = kind

    @property
    def prefix(self) -> str:
        config = self.server.config.mqtt
        assert config is not None
        return config.prefix

    def client_auth(self, device_credential: str | None = None) -> dict[str, str]:
        """Login for a client: the user's (built-in broker) or nothing (mosquitto)."""
        if self.kind == "external":
            return {}
        password = device_credential or self.server.password
        return {"username": self.server.user, "password": password}

    def cli_auth(self, device_credential: str | None = None) -> list[str]:
        auth = self.client_auth(device_credential)
        return ["-u", auth["username"], "-P", auth["password"]] if auth else []


def start_lab(
    kind: str,
    devices: list[TestDevice],
    mosquitto: Mosquitto | None = None,
    **mqtt: Any,
) -> Any:
    if kind == "builtin":
        settings = MqttConfig(broker="builtin", host="127.0.0.1", port=0, tls_port=None, **mqtt)
    else:
        assert mosquitto is not None
        settings = MqttConfig(broker="external", host="127.0.0.1", port=mosquitto.port, **mqtt)
    return run_test_server(devices=devices, user="alice", request_timeout=2.0, mqtt=settings)


async def run_cli(*args: str, timeout: float = 10.0) -> tuple[int, str, str]:  # noqa: ASYNC109
    """Run a mosquitto client; returns (rc, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()
