"""``iotmp server --log-format json``: every line one JSON object, tokens redacted."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from iotmp.cli.log_format import JsonFormatter


def test_json_formatter_spreads_access_fields() -> None:
    record = logging.LogRecord(
        "iotmp.server.access", logging.INFO, "f", 1, "hello %s", ("x",), None
    )
    record.access = {"client": "127.0.0.1", "status": 200, "path": "/a?authorization=REDACTED"}
    record.handshake = "tls"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "hello x"
    assert data["level"] == "INFO" and data["logger"] == "iotmp.server.access"
    assert data["time"].endswith("Z")
    assert (data["client"], data["status"], data["handshake"]) == ("127.0.0.1", 200, "tls")


def test_server_logs_json_lines_with_tokens_redacted(tmp_path: Path) -> None:
    demo_file = tmp_path / "demo.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iotmp",
            "server",
            "--demo",
            "--demo-file",
            str(demo_file),
            "--http-port",
            "0",
            "--tcp-port",
            "0",
            "--no-tls",
            "--log-format",
            "json",
            "--log-level",
            "INFO",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not demo_file.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # the file is replaced atomically; give the loop a moment
        demo = json.loads(demo_file.read_text())
        token = demo["token"]
        url = f"{demo['http_url']}/v1/users/demo/devices?authorization={token}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [r for r in records if r["logger"] == "iotmp.server.access"]
    assert len(access) == 1
    line = access[0]
    assert line["status"] == 200 and line["method"] == "GET" and line["user"] == "demo"
    assert line["path"] == "/v1/users/demo/devices?authorization=REDACTED"
    assert token not in err
