"""Fixtures of the browser test: the ``scripts/develop`` stack and a headless Chromium.

The test runs on the **minimum** leg only, i.e. on the host, where ``scripts/setup``
installed Debian's Chromium and the ``playwright`` package (requirements_test_min.txt).
It still exercises the *latest* Home Assistant: ``scripts/develop`` always starts the
latest leg's HA (in the forky root filesystem when the host has no Python 3.14). On the
latest leg the test is skipped with that reason; on the minimum leg a missing browser,
package or stack is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Screenshots go to build/screenshots; the committed ones in docs/screenshots are
# replaced only on request (IOTMP_UPDATE_SCREENSHOTS=1), so a test run leaves git clean.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("IOTMP_UPDATE_SCREENSHOTS") == "1"
    else ROOT / "build" / "screenshots"
)
CHROMIUM = Path("/usr/bin/chromium")
# One instance per run (two clones may test at once); removed afterwards.
INSTANCE = f"browser-test-{os.getpid()}"
# Cold: the develop venv is built once (about 2-3 minutes); warm: about 20 s.
READY_TIMEOUT = 900.0
STOP_TIMEOUT = 120.0
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Nothing but the local stack: any other host name resolves to nothing.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


class DevelopStack:
    """``scripts/develop`` as a subprocess, and what it wrote to its ready file."""

    def __init__(self, workdir: Path) -> None:
        self.ready_file = workdir / "ready.json"
        self.log = workdir / "develop.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.startup_seconds = 0.0

    def start(self) -> None:
        """Start the stack (fresh instance, free ports) and wait until it is ready."""
        cmd = [
            str(ROOT / "scripts" / "develop"),
            "--instance", INSTANCE,
            "--fresh",
            "--port", "0",
            "--server-port", "0",
            "--ready-file", str(self.ready_file),
        ]  # fmt: skip
        started = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = started + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"scripts/develop exited with {self.proc.returncode} before it was "
                    f"ready:\n{_tail(self.log)}"
                )
            if self.ready_file.exists():
                self.info = json.loads(self.ready_file.read_text())
                self.startup_seconds = time.monotonic() - started
                return
            time.sleep(0.5)
        self.kill()
        pytest.fail(f"scripts/develop not ready within {READY_TIMEOUT:.0f} s:\n{_tail(self.log)}")

    def interrupt(self) -> int:
        """Ctrl-C (SIGINT to the stack's process) and wait for it; returns its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"scripts/develop did not stop within {STOP_TIMEOUT:.0f} s")

    def kill(self) -> None:
        """Last resort: SIGKILL the stack's process group (its children have their own)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _require_browser_tooling() -> None:
    """Fail (not skip) when the browser or the package is missing on this leg."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Debian's Chromium is missing ({CHROMIUM}); scripts/setup installs it "
            "(apt packages chromium, chromium-driver)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(
            "the playwright package is missing from this venv; scripts/setup installs it "
            "(requirements_test_min.txt)"
        )


@pytest.fixture(scope="module")
def develop_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevelopStack]:
    """The running ``scripts/develop`` stack (fresh instance, free ports)."""
    _require_browser_tooling()
    workdir = tmp_path_factory.mktemp("develop")
    stack = DevelopStack(workdir)
    try:
        stack.start()
        yield stack
    finally:
        if stack.proc is not None and stack.proc.poll() is None:
            stack.interrupt()
        _remove_instance(stack, workdir)


def _remove_instance(stack: DevelopStack, workdir: Path) -> None:
    """Keep the instance's logs next to develop.log, then delete the instance."""
    config_dir = stack.info.get("ha_config_dir")
    if not config_dir:
        return
    instance = Path(config_dir).parent
    if instance.name != INSTANCE or instance.parent.name != "develop":
        return
    for log in instance.glob("*.log"):
        shutil.copy(log, workdir / log.name)
    shutil.rmtree(instance, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(develop_stack: DevelopStack) -> dict[str, Any]:
    """What ``scripts/develop --ready-file`` reported: URLs, credentials, devices."""
    return develop_stack.info


@pytest.fixture(scope="module")
def chromium_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh Chromium profile (``--user-data-dir``) shared by the module's tests.

    Home Assistant keeps the login in the profile's local storage, so the tests after
    the login test start logged in.
    """
    return tmp_path_factory.mktemp("chromium-profile")


@pytest.fixture(scope="module")
def blocked_requests() -> list[str]:
    """Requests the browser was not allowed to make (anything but the stack's HA)."""
    return []


@pytest.fixture
def browser_page(
    develop_stack: DevelopStack, chromium_profile: Path, blocked_requests: list[str]
) -> Iterator[Any]:
    """A Chromium page that can reach only the stack's Home Assistant.

    Chromium is started per test: playwright's sync API must be closed before the
    Home Assistant test plugin tears down the test's event loop.
    """
    from playwright.sync_api import Route, sync_playwright

    ha_url = develop_stack.info["ha_url"]

    def only_local(route: Route) -> None:
        url = route.request.url
        # Brand images of other integrations would make HA fetch them from its CDN.
        foreign_brand = "/api/brands/" in url and "/api/brands/integration/iotmp/" not in url
        if url.startswith(ha_url) and not foreign_brand:
            route.continue_()
        else:
            blocked_requests.append(url)
            route.abort()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(chromium_profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
            locale="en-US",
            timezone_id="Europe/Madrid",
        )
        try:
            context.set_default_timeout(30_000)
            context.route("**/*", only_local)
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()
