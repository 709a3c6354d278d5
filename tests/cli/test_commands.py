"""The ``iotmp`` command as a user runs it: real processes on loopback.

``iotmp server --demo`` and ``iotmp sim --demo`` run as separate processes
(the smoke test of the standalone package); ``iotmp list/describe/read/write/
run/stream/events`` drive them and are judged by their output and exit codes.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("socket_enabled")

DEMO_IDS = {
    "env-sensor",
    "smart-plug",
    "rgb-lamp",
    "rgb-strip",
    "gpio-board",
    "counter",
    "controller",
}


def iotmp(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m iotmp ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "iotmp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "iotmp", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    if (proc.pid, "stdout") in _readers:  # threads own the pipes
        proc.wait(timeout=15)
        err = "".join(_read_lines(proc, 10_000, 0.5, "stderr"))
        return proc.returncode, "", err
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@dataclass
class Demo:
    demo_file: Path
    http_port: int
    tcp_port: int
    env: dict[str, str]
    server: subprocess.Popen[str] | None = None
    devices: subprocess.Popen[str] | None = None

    def args(self) -> list[str]:
        return ["--demo-file", str(self.demo_file)]

    def document(self) -> dict[str, Any]:
        return json.loads(self.demo_file.read_text())

    def start_server(self) -> None:
        self.server = spawn(
            "server", "--demo", "--demo-file", str(self.demo_file), "--http-port",
            str(self.http_port), "--tcp-port", str(self.tcp_port), "--no-tls", env=self.env,
        )  # fmt: skip


def _wait_online(demo: Demo, ids: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if demo.demo_file.exists():
            last = iotmp("list", "--json", *demo.args(), env=demo.env, timeout=10)
            if last.returncode == 0:
                online = {
                    json.loads(line)["device"]
                    for line in last.stdout.splitlines()
                    if json.loads(line)["online"]
                }
                if ids <= online:
                    return
        time.sleep(0.3)
    pytest.fail(f"devices not online: {last and (last.stdout, last.stderr)}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``iotmp server --demo`` and ``iotmp sim --demo`` as two processes."""
    home = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "IOTMP_DATA_DIR": str(home / "data")}
    env.pop("IOTMP_URL", None)
    env.pop("IOTMP_TOKEN", None)
    # Port 0: the server picks free ports (this process may not open sockets under
    # Home Assistant's pytest-socket); a restart reuses the ones it wrote down.
    demo = Demo(home / "demo.json", 0, 0, env)
    demo.start_server()
    deadline = time.monotonic() + 30
    while not demo.demo_file.exists() and time.monotonic() < deadline:
        assert demo.server is not None and demo.server.poll() is None, demo.server
        time.sleep(0.1)
    document = demo.document()
    demo.http_port = int(document["http_url"].rsplit(":", 1)[1])
    demo.tcp_port = int(document["tcp_port"])
    demo.devices = spawn(
        "sim", "--demo", "--demo-file", str(demo.demo_file), "--reconnect-delay", "0.5", env=env
    )
    try:
        _wait_online(demo, DEMO_IDS)
        yield demo
    finally:
        for proc in (demo.devices, demo.server):
            if proc is not None:
                stop(proc)


def test_list_shows_every_demo_device_online(demo: Demo) -> None:
    result = iotmp("list", *demo.args(), env=demo.env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["DEVICE", "STATE", "TYPE", "NAME"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert rows == dict.fromkeys(DEMO_IDS, "online")


def test_read_prints_the_sensor_values(demo: Demo) -> None:
    result = iotmp("read", "env-sensor", "environment", "--json", *demo.args(), env=demo.env)
    assert result.returncode == 0, result.stderr
    value = json.loads(result.stdout)
    assert set(value) >= {"temperature", "humidity"}
    assert isinstance(value["temperature"], int | float)
    human = iotmp("read", "env-sensor", "environment", *demo.args(), env=demo.env)
    assert '"temperature":' in human.stdout and human.stdout.count("\n") > 2  # indented


def test_write_reaches_the_device_and_reads_back(demo: Demo) -> None:
    for value in ("true", "false"):
        result = iotmp("write", "smart-plug", "relay", value, *demo.args(), env=demo.env)
        assert result.returncode == 0, result.stderr
        read = iotmp("read", "smart-plug", "relay", "--json", *demo.args(), env=demo.env)
        assert json.loads(read.stdout) is json.loads(value)


def test_describe_lists_resources_with_samples(demo: Demo) -> None:
    result = iotmp("describe", "rgb-lamp", "--json", *demo.args(), env=demo.env)
    assert result.returncode == 0, result.stderr
    resources = json.loads(result.stdout)
    assert resources["light"]["fn"] == 2
    assert {"r", "g", "b"} <= set(resources["light"]["in"])


def test_run_a_function_and_a_calculation(demo: Demo) -> None:
    described = json.loads(
        iotmp("describe", "controller", "--json", *demo.args(), env=demo.env).stdout
    )
    assert described["reboot"]["fn"] == 1
    result = iotmp("run", "controller", "reboot", *demo.args(), env=demo.env)
    assert result.returncode == 0, result.stderr
    result = iotmp(
        "run",
        "controller",
        "calc",
        "--input",
        '{"a": 3, "b": 4}',
        "--json",
        *demo.args(),
        env=demo.env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"sum": 7, "product": 12}
    refused = iotmp(
        "run", "controller", "calc", "--input", '{"a": "x"}', *demo.args(), env=demo.env
    )
    assert refused.returncode == 1 and "400" in refused.stderr


def test_remote_errors_exit_1_with_the_servers_message(demo: Demo) -> None:
    result = iotmp("read", "no-such-device", "x", *demo.args(), env=demo.env)
    assert result.returncode == 1
    assert "404" in result.stderr and "not found" in result.stderr
    result = iotmp("read", "counter", "no-such-resource", *demo.args(), env=demo.env)
    assert result.returncode == 1
    assert "resource" in result.stderr
    url = demo.document()["http_url"]
    result = iotmp("list", "--url", url, "--token", "not-a-token", env=demo.env)
    assert result.returncode == 1
    assert "not authorised" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(demo: Demo, tmp_path: Path) -> None:
    result = iotmp("write", "smart-plug", "relay", "{", *demo.args(), env=demo.env)
    assert result.returncode == 2 and "not valid JSON" in result.stderr
    result = iotmp("list", "--demo-file", str(tmp_path / "missing.json"), env=demo.env)
    assert result.returncode == 2 and "iotmp demo" in result.stderr
    result = iotmp("read", "only-a-device", env=demo.env)
    assert result.returncode == 2
    assert iotmp("nonsense", env=demo.env).returncode == 2


def test_environment_variables_choose_the_server(demo: Demo) -> None:
    document = demo.document()
    env = {**demo.env, "IOTMP_URL": document["http_url"], "IOTMP_TOKEN": document["token"]}
    env["IOTMP_DATA_DIR"] = "/nonexistent"  # no demo file to fall back on
    result = iotmp("read", "counter", "count", env=env)
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), int)


def test_every_subcommand_has_help() -> None:
    for command in (
        "server",
        "sim",
        "demo",
        "list",
        "describe",
        "read",
        "write",
        "run",
        "stream",
        "events",
    ):
        result = iotmp(command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert "usage: iotmp " + command in result.stdout


_readers: dict[tuple[int, str], queue.Queue[str]] = {}


def _read_lines(
    proc: subprocess.Popen[str], count: int, timeout: float, which: str = "stdout"
) -> list[str]:
    """Up to ``count`` lines of ``which`` within ``timeout`` s (read by a thread; never blocks)."""
    lines_queue = _readers.get((proc.pid, which))
    if lines_queue is None:
        lines_queue = _readers[proc.pid, which] = queue.Queue()
        pipe = getattr(proc, which)
        assert pipe is not None

        def pump() -> None:
            for line in pipe:
                lines_queue.put(line)

        threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count:
        try:
            lines.append(lines_queue.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            break
    return lines


def _wait_for_stderr(proc: subprocess.Popen[str], text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen += _read_lines(proc, 1, max(0.01, deadline - time.monotonic()), "stderr")
        if any(text in line for line in seen):
            return
    pytest.fail(f"{text!r} not on stderr: {seen}")


def test_stream_prints_values_and_says_when_it_reconnects(demo: Demo) -> None:
    stream = spawn("stream", "counter", "count", "--json", *demo.args(), env=demo.env)
    try:
        first = [json.loads(line) for line in _read_lines(stream, 2, 15)]
        assert len(first) == 2 and first[1] > first[0], first
        # The server restarts on the same ports; the stream comes back by itself.
        assert demo.server is not None
        code, _, _ = stop(demo.server, signal.SIGTERM)
        assert code == 0
        demo.start_server()
        _wait_online(demo, {"counter"})
        after = _read_lines(stream, 2, 20)
        assert len(after) == 2, "no values after the server restarted"
    finally:
        code, _, err = stop(stream)
    assert code == 0
    assert "connection lost, reconnecting" in err
    assert "reconnected" in err


def test_events_show_a_device_going_offline_and_online(demo: Demo) -> None:
    events = spawn("events", "--json", *demo.args(), env=demo.env)
    try:
        _wait_for_stderr(events, "events: connected")
        assert demo.devices is not None
        stop(demo.devices)
        demo.devices = spawn(
            "sim",
            "--demo",
            "--demo-file",
            str(demo.demo_file),
            "--reconnect-delay",
            "0.5",
            env=demo.env,
        )
        _wait_online(demo, DEMO_IDS)
        frames = [json.loads(line) for line in _read_lines(events, 2 * len(DEMO_IDS), 15)]
    finally:
        stop(events)
    states = {
        (f.get("device"), f.get("state")) for f in frames if f["event"] == "device_state_change"
    }
    assert ("counter", "disconnected") in states and ("counter", "connected") in states, frames


def _json_lines(result: subprocess.CompletedProcess[str]) -> list[Any]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_demos_bucket_property_endpoint_and_alarm(demo: Demo) -> None:
    """The README's commands: the bucket fills, the property round trip fires the alarm."""
    args, env = demo.args(), demo.env

    def bucket_records() -> list[Any]:
        return _json_lines(iotmp("bucket", "read", "environment", "--json", *args, env=env))

    deadline = time.monotonic() + 30  # the sensor writes every 10 s
    while not (records := bucket_records()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert records, "the environment sensor wrote nothing to its bucket"
    assert set(records[0]["val"]) >= {"temperature", "humidity"}

    config = _json_lines(iotmp("property", "get", "controller", "config", "--json", *args, env=env))
    assert config[0]["value"]["setpoint"] < 25
    patched = iotmp("property", "patch", "controller", "config", '{"setpoint": 27}', *args, env=env)
    assert patched.returncode == 0, patched.stderr

    def setpoint() -> Any:
        return json.loads(iotmp("read", "controller", "setpoint", "--json", *args, env=env).stdout)

    deadline = time.monotonic() + 10
    while setpoint() != 27 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert setpoint() == 27  # the controller followed its config
    alarms = _json_lines(iotmp("alarm", "list", "--active", "--json", *args, env=env))
    assert [(a["rule"], a["state"], a["value"]) for a in alarms] == [
        ("setpoint_high", "active", 27)
    ]

    # The rule called the endpoint: the demo's receiver got the alarm.
    document = demo.document()
    request = urllib.request.Request(
        f"{document['http_url']}/v1/users/demo/endpoints/demo_receiver",
        headers={"Authorization": f"Bearer {document['token']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        url = json.loads(response.read())["config"]["url"]
    with urllib.request.urlopen(url.rsplit("/", 1)[0] + "/", timeout=10) as response:
        calls = json.loads(response.read())
    assert any(c["path"] == "/alarm" and c["body"]["rule"] == "setpoint_high" for c in calls), calls

    restored = iotmp(
        "property", "patch", "controller", "config", '{"setpoint": 21}', *args, env=env
    )
    assert restored.returncode == 0, restored.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = _json_lines(iotmp("alarm", "list", "--json", *args, env=env))
        if states and states[-1]["state"] == "cleared":
            break
        time.sleep(0.2)
    assert states[-1]["state"] == "cleared", states
