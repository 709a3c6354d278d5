"""Issue 10 item 9: the demo file, the TLS key and the printed token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iotmp.server.certs import cryptography_available
from iotmp.server.demo_files import write_private_file

pytestmark = pytest.mark.timeout(120)


def _demo_command(demo_file: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "iotmp", "server", "--demo", "--demo-file", str(demo_file),
        "--http-port", "0", "--tcp-port", "0", "--tls-port", "0", *extra,
    ]  # fmt: skip


def _run_until_written(demo_file: Path, *extra: str) -> str:
    """Run the demo server until it wrote the demo file; return its stdout."""
    proc = subprocess.Popen(
        _demo_command(demo_file, *extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    try:
        while not (demo_file.exists() and demo_file.stat().st_size > 0):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    return out.decode()


def test_corrupted_demo_file_is_an_error_not_a_reset(tmp_path: Path) -> None:
    demo_file = tmp_path / "demo.json"
    demo_file.write_text('{"password": "x", "config": {"secr')  # truncated
    result = subprocess.run(
        _demo_command(demo_file, "--no-tls"),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "corrupted" in result.stderr and str(demo_file) in result.stderr
    assert "Traceback" not in result.stderr
    assert demo_file.read_text() == '{"password": "x", "config": {"secr'  # left alone


def test_demo_file_and_key_are_private_and_never_written_through_links(tmp_path: Path) -> None:
    demo_file = tmp_path / "demo.json"
    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours")
    (tmp_path / "demo.json.tmp").symlink_to(target)  # a prepared temporary name
    extra = () if cryptography_available() else ("--no-tls",)
    out = _run_until_written(demo_file, *extra)
    assert target.read_text() == "not yours"
    assert demo_file.stat().st_mode & 0o777 == 0o600
    document = json.loads(demo_file.read_text())
    token = document["token"]
    # printed once, shortened; in full only in the 0600 file
    assert token not in out
    assert out.count(token[:12]) == 1
    if cryptography_available():
        assert (tmp_path / "demo-key.pem").stat().st_mode & 0o777 == 0o600
    # a restart keeps every secret
    again = _run_until_written(demo_file, *extra)
    assert json.loads(demo_file.read_text())["password"] == document["password"]
    assert token not in again
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


@pytest.mark.skipif(not cryptography_available(), reason="needs cryptography")
def test_truncated_certificate_is_a_clear_error(tmp_path: Path) -> None:
    demo_file = tmp_path / "demo.json"
    _run_until_written(demo_file)
    cert = tmp_path / "demo-cert.pem"
    cert.write_bytes(cert.read_bytes()[:100])
    result = subprocess.run(
        _demo_command(demo_file), check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unusable TLS certificate" in result.stderr and "demo-cert.pem" in result.stderr
    assert "cannot listen" not in result.stderr


def test_private_file_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    link = tmp_path / "secret.json"
    link.symlink_to(target)
    write_private_file(link, b"new")
    assert target.read_text() == "keep"
    assert not link.is_symlink()
    assert link.read_bytes() == b"new"
    assert os.stat(link).st_mode & 0o777 == 0o600
