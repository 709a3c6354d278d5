"""The command line: help, argument errors, --demo waiting, a real run stopped by SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from iotmp import cli
from iotmp.cli.sim import CliError, parse_server
from iotmp.server.testing import TestDevice, TestServer, run_test_server

ROOT = Path(__file__).parents[2]


def main(argv: list[str]) -> int:
    """``iotmp sim ARGV``."""
    return cli.main(["sim", *argv])


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--server",
        "--profile",
        "--demo",
        "--demo-file",
        "--demo-timeout",
        "--count",
        "--transport",
        "--insecure",
        "--interval",
        "--user",
        "--device-id",
        "--credential",
    ):
        assert option in out
    assert "smart_plug" in out


def test_list_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-profiles"]) == 0
    out = capsys.readouterr().out
    assert "rgb_lamp" in out and "rgb-lamp" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --demo, or --server"),
        (["--demo", "--server", "h"], "cannot be combined"),
        (["--server", "h", "--count", "0"], "--count must be at least 1"),
        (["--server", "h", "--interval", "0"], "--interval must be"),
        (["--demo", "--profile", "counter"], "takes its devices from the demo file"),
        (["--server", "127.0.0.1", "--user", "u", "--credential", "c"], "give --profile"),
        (["--server", "127.0.0.1", "--profile", "counter", "--credential", "c"], "--user"),
        (
            ["--server", "127.0.0.1", "--profile", "nope", "--user", "u", "--credential", "c"],
            "unknown profile 'nope'",
        ),
        (
            [
                "--server",
                "127.0.0.1:99999",
                "--profile",
                "counter",
                "--user",
                "u",
                "--credential",
                "c",
            ],
            "bad port",
        ),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_demo_file_missing_times_out_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope" / "demo.json"
    code = main(["--demo", "--demo-file", str(missing), "--demo-timeout", "0.2"])
    assert code == 1
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "does not exist after waiting 0.2 s" in err
    assert "iotmp server --demo" in err


def test_demo_file_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo.json"
    path.write_text(json.dumps({"user": "demo", "http_url": "http://127.0.0.1:1", "devices": [{}]}))
    assert main(["--demo", "--demo-file", str(path), "--demo-timeout", "0"]) == 1
    assert "devices[0] needs string 'id', 'credential' and 'profile'" in capsys.readouterr().err


def test_parse_server() -> None:
    t = parse_server("example.com", None)
    assert (t.host, t.port, t.transport) == ("example.com", 25204, "tcp")
    t = parse_server("example.com:1234", "tls")
    assert (t.host, t.port, t.transport) == ("example.com", 1234, "tls")
    assert parse_server("example.com", "tls").port == 25206
    t = parse_server("[::1]:7000", None)
    assert (t.host, t.port) == ("::1", 7000)
    assert parse_server("::1", None).host == "::1"
    t = parse_server("wss://example.com/iotmp", None)
    assert (t.transport, t.url) == ("wss", "wss://example.com/iotmp")
    t = parse_server("ws://127.0.0.1:8080", None)
    assert t.url == "ws://127.0.0.1:8080/iotmp"
    assert parse_server("h:80", "ws").url == "ws://h:80/iotmp"
    with pytest.raises(CliError):
        parse_server("ftp://h", None)
    with pytest.raises(CliError):
        parse_server("ws://h", "tcp")


# ----------------------------------------------------------------------- real runs


@pytest.fixture(autouse=True)
def _sockets(socket_enabled: None) -> None:
    """Real loopback sockets (Home Assistant's plugin blocks sockets by default)."""


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    devices = [
        TestDevice("counter", credential="pw-c", name="Counter"),
        TestDevice("rgb-lamp", credential="pw-l", name="Lamp"),
        TestDevice("plug-1", credential="pw"),
        TestDevice("plug-2", credential="pw"),
    ]
    async with run_test_server(devices=devices, user="alice") as test_server:
        yield test_server


async def _run_cli(
    args: list[str],
    server: TestServer,
    ids: list[str],
    on_line: Callable[[str], None] | None = None,
) -> tuple[int, str]:
    """Run the CLI in a subprocess until ``ids`` are online, then SIGINT it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "iotmp",
        "sim",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    lines: list[str] = []

    async def read_stderr() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode()
            lines.append(line)
            if on_line is not None:
                on_line(line)

    reader = asyncio.create_task(read_stderr())
    try:
        async with asyncio.timeout(20):
            for device_id in ids:
                await server.wait_device_connected(device_id, timeout=20)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await proc.wait()
            await reader
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert proc.returncode is not None
    return proc.returncode, "".join(lines)


async def test_cli_server_mode_runs_and_stops_on_ctrl_c(server: TestServer) -> None:
    code, err = await _run_cli(
        [
            "--server",
            f"127.0.0.1:{server.tcp_port}",
            "--user",
            "alice",
            "--credential",
            "pw",
            "--profile",
            "smart_plug",
            "--device-id",
            "plug",
            "--count",
            "2",
            "--interval",
            "0.1",
        ],
        server,
        ["plug-1", "plug-2"],
    )
    assert code == 0, err
    for device_id in ("plug-1", "plug-2"):
        assert f"{device_id}: connected" in err
        assert f"{device_id}: disconnected" in err
    assert "Traceback" not in err


async def test_cli_demo_mode_waits_for_the_file(server: TestServer, tmp_path: Path) -> None:
    demo_file = tmp_path / "demo" / "demo.json"
    document = {
        "http_url": server.http_url,
        "tcp_port": server.tcp_port,
        "user": "alice",
        "password": "x",
        "token": "x",
        "devices": [
            {"id": "counter", "name": "Counter", "credential": "pw-c", "profile": "counter"},
            {"id": "rgb-lamp", "name": "Lamp", "credential": "pw-l", "profile": "rgb_lamp"},
        ],
    }

    def write_when_waiting(line: str) -> None:
        if "waiting up to" in line and not demo_file.exists():
            demo_file.parent.mkdir(parents=True)
            demo_file.write_text(json.dumps(document))

    code, err = await _run_cli(
        ["--demo", "--demo-file", str(demo_file), "--demo-timeout", "15", "--interval", "0.1"],
        server,
        ["counter", "rgb-lamp"],
        on_line=write_when_waiting,
    )
    assert code == 0, err
    assert "waiting up to 15 s for the demo file" in err
    assert "counter: connected (counter)" in err
    assert "rgb-lamp: connected (rgb_lamp)" in err
    assert "rgb-lamp: disconnected" in err
