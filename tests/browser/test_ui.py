"""A newcomer's path, in a real browser: ``scripts/develop`` -> log in -> see the demo
devices -> switch the lamp from the UI -> the virtual device got the command.

Drives Debian's Chromium (headless, through playwright) against the Home Assistant of
the latest leg that ``scripts/develop`` starts with the local server and the demo
devices. Screenshots go to ``build/screenshots/`` (``docs/screenshots/`` with
``IOTMP_UPDATE_SCREENSHOTS=1``).
Runs on the minimum leg (the host); see conftest.py.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import SCREENSHOTS

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 14),
    reason=(
        "browser test runs on the minimum leg (host: Debian Chromium + playwright); "
        "it drives the latest-leg Home Assistant through scripts/develop from there"
    ),
)

DEMO_DEVICE_NAMES = {
    "env-sensor": "Environment sensor",
    "smart-plug": "Smart plug",
    "rgb-lamp": "RGB lamp",
    "rgb-strip": "RGB strip",
    "gpio-board": "GPIO board",
    "counter": "Counter",
    "controller": "Controller",
}
# Text of an element and of everything below it, shadow roots included.
DEEP_TEXT = """(element) => {
    const parts = [];
    const walk = (node) => {
        if (node.nodeType === Node.TEXT_NODE) {
            const text = node.textContent.trim();
            if (text) parts.push(text);
        }
        if (node.shadowRoot) walk(node.shadowRoot);
        for (const child of node.childNodes) walk(child);
    };
    walk(element);
    return parts.join(" | ");
}"""
NUMBER = r"(-?\d[\d,]*(?:\.\d+)?)"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _shot(page: Any, name: str, *, full_page: bool = False) -> None:
    page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page)


def _server(stack: dict[str, Any], path: str, body: Any = None) -> Any:
    """The local IOTMP server's REST API with the demo token (what curl would do)."""
    request = urllib.request.Request(
        stack["server_url"] + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {stack['server_token']}",
            "Content-Type": "application/json",
        },
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _lamp_input(stack: dict[str, Any]) -> dict[str, Any]:
    sample = _server(stack, "/v3/users/demo/devices/rgb-lamp/resources/light/api")
    state: dict[str, Any] = sample["in"]
    return state


def _wait_for(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _open_device(page: Any, stack: dict[str, Any], device: str) -> None:
    page.goto(f"{stack['ha_url']}/config/devices/device/{stack['devices'][device]['ha_device_id']}")
    page.get_by_text(DEMO_DEVICE_NAMES[device], exact=True).first.wait_for()


def _card_text(page: Any, title: str) -> str:
    card = page.locator("ha-card", has_text=title).first
    card.wait_for()
    return str(card.evaluate(DEEP_TEXT))


def _switch_checked(page: Any, card_title: str) -> bool:
    switch = page.locator("ha-card", has_text=card_title).first.locator("ha-switch").first
    return bool(switch.evaluate("(element) => element.checked"))


@pytest.fixture(name="loopback")
def loopback_fixture(socket_enabled: None) -> None:
    """Real sockets for the REST calls (HA's test plugin limits them to 127.0.0.1)."""


def test_stack_reports_demo_devices(stack: dict[str, Any]) -> None:
    """scripts/develop set up the integration with every demo device and its entities."""
    assert stack["ha_url"].startswith("http://127.0.0.1:")
    assert stack["ha_username"] == "demo"
    assert stack["ha_password"]
    assert set(stack["devices"]) == set(DEMO_DEVICE_NAMES)
    for device_id, device in stack["devices"].items():
        assert device["name"] == DEMO_DEVICE_NAMES[device_id]
        assert device["entities"], f"{device_id} has no entities"
    lamp_lights = [
        e for e in stack["devices"]["rgb-lamp"]["entities"] if e["entity_id"].startswith("light.")
    ]
    assert lamp_lights, "the RGB lamp has no light entity"


def test_login_with_demo_user(stack: dict[str, Any], browser_page: Any) -> None:
    """The login page takes the demo user that scripts/develop printed."""
    page = browser_page
    page.goto(stack["ha_url"] + "/")
    page.locator("input[name=username]").wait_for()
    page.locator("input[name=username]").fill(stack["ha_username"])
    page.locator("input[name=password]").fill(stack["ha_password"])
    _shot(page, "login.png")
    page.keyboard.press("Enter")
    page.locator("ha-sidebar").wait_for()
    assert "/auth/" not in page.url
    assert stack["ha_name"] in str(page.locator("ha-sidebar").evaluate(DEEP_TEXT))


def test_integration_page_lists_devices(stack: dict[str, Any], browser_page: Any) -> None:
    """Settings > Devices & services > IOTMP: the hub entry and all seven demo devices."""
    page = browser_page
    brand_responses: list[int] = []

    def on_response(response: Any) -> None:
        if "/api/brands/integration/iotmp/" in response.url:
            brand_responses.append(response.status)

    page.on("response", on_response)
    page.goto(stack["integration_url"])
    page.get_by_text("demo @ 127.0.0.1").first.wait_for()
    for name in DEMO_DEVICE_NAMES.values():
        page.get_by_text(name, exact=True).first.wait_for()
    text = str(page.locator("body").evaluate(DEEP_TEXT))
    assert re.search(r"\b7 devices\b", text), text[:500]
    page.wait_for_load_state("networkidle")
    page.set_viewport_size({"width": 1280, "height": 1040})  # the whole device list
    page.wait_for_timeout(300)
    _shot(page, "integration.png")
    page.set_viewport_size({"width": 1280, "height": 860})
    # The icon comes from custom_components/iotmp/brand/, not from a CDN.
    assert brand_responses, "the page did not ask for the integration's brand image"
    assert all(status == 200 for status in brand_responses), brand_responses
    page.remove_listener("response", on_response)


def test_sensor_values_are_live(stack: dict[str, Any], browser_page: Any) -> None:
    """The environment sensor's page shows numbers with units, from the running device."""
    page = browser_page
    _open_device(page, stack, "env-sensor")

    def sensors_with_temperature() -> str | None:
        text = _card_text(page, "Sensors")
        return text if "°C" in text else None

    text = _wait_for(sensors_with_temperature, "the temperature on the environment sensor's page")
    temperature = _number(re.search(NUMBER + r"\s*°C", text).group(1))  # type: ignore[union-attr]
    humidity = _number(re.search(NUMBER + r"\s*%", text).group(1))  # type: ignore[union-attr]
    pressure = _number(re.search(NUMBER + r"\s*hPa", text).group(1))  # type: ignore[union-attr]
    assert -40 <= temperature <= 60, text
    assert 0 <= humidity <= 100, text
    assert 800 <= pressure <= 1200, text
    diagnostic = _card_text(page, "Diagnostic")
    assert "Connected" in diagnostic, diagnostic
    _shot(page, "env-sensor.png")


def test_device_change_reaches_the_ui(
    stack: dict[str, Any], browser_page: Any, loopback: None
) -> None:
    """Switching the smart plug's relay on the server side shows up in the open page (push)."""
    page = browser_page
    _open_device(page, stack, "smart-plug")
    _wait_for(lambda: not _switch_checked(page, "Controls"), "the relay switch to show off")
    _server(stack, "/v3/users/demo/devices/smart-plug/resources/relay", True)
    _wait_for(lambda: _switch_checked(page, "Controls"), "the relay switch to show on")
    _server(stack, "/v3/users/demo/devices/smart-plug/resources/relay", False)
    _wait_for(lambda: not _switch_checked(page, "Controls"), "the relay switch to show off again")


def test_toggle_lamp_from_the_ui(stack: dict[str, Any], browser_page: Any, loopback: None) -> None:
    """The lamp's toggle on its device page reaches the virtual device, and back."""
    page = browser_page
    _open_device(page, stack, "rgb-lamp")
    assert _lamp_input(stack)["on"] is False
    _wait_for(lambda: not _switch_checked(page, "Controls"), "the lamp toggle to show off")
    _shot(page, "rgb-lamp.png")

    page.locator("ha-card", has_text="Controls").first.locator("ha-entity-toggle").first.click()

    def lamp_on() -> dict[str, Any] | None:
        state = _lamp_input(stack)
        return state if state["on"] else None

    state = _wait_for(lamp_on, "the lamp to receive on")
    assert state["brightness"] > 0
    _wait_for(lambda: _switch_checked(page, "Controls"), "the lamp toggle to show on")
    _shot(page, "rgb-lamp-on.png")

    page.locator("ha-card", has_text="Controls").first.locator("ha-entity-toggle").first.click()
    _wait_for(lambda: _lamp_input(stack)["on"] is False, "the lamp to receive off")
    _wait_for(lambda: not _switch_checked(page, "Controls"), "the lamp toggle to show off again")


def test_config_flow_as_a_user_sees_it(stack: dict[str, Any], browser_page: Any) -> None:
    """Add integration > IOTMP: the sign-in menu, then the token form; closed unsubmitted."""
    page = browser_page
    page.goto(stack["ha_url"] + "/config/integrations/dashboard/add?domain=iotmp")
    # Opened from a link, Home Assistant asks before it starts the flow.
    page.get_by_text("Do you want to set up IOTMP?").first.wait_for()
    page.get_by_role("button", name="OK").click()
    dialog = page.locator("dialog-data-entry-flow")
    dialog.get_by_text("Connect to an IOTMP server").first.wait_for()
    dialog.get_by_text("Use an access token", exact=True).first.wait_for()
    dialog.get_by_text("Use a username and password", exact=True).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)  # the dialog's opening animation
    _shot(page, "config-flow-menu.png")

    dialog.get_by_text("Use an access token", exact=True).first.click()
    dialog.get_by_text("Sign in with an access token").first.wait_for()
    # The fields by their labels (required ones carry a "*").
    for label in ("Server URL", "Access token", "Verify the TLS certificate"):
        field = dialog.get_by_text(re.compile(rf"^{re.escape(label)}\*?$")).filter(visible=True)
        field.first.wait_for()
        assert field.first.is_visible(), label
    page.wait_for_timeout(300)  # the form's transition
    _shot(page, "config-flow-token.png")

    dialog.get_by_role("button", name="Close").first.click()  # not submitted
    dialog.get_by_text("Sign in with an access token").first.wait_for(state="hidden")
    # Closing did not touch the configured entry.
    page.goto(stack["integration_url"])
    page.get_by_text("demo @ 127.0.0.1").first.wait_for()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _input_with_value(scope: Any, value: str) -> Any:
    """The visible input of a form whose current value is ``value``."""
    _wait_for(lambda: scope.locator("input").count() > 0, "the form's fields")
    inputs = scope.locator("input")
    for index in range(inputs.count()):
        candidate = inputs.nth(index)
        if candidate.is_visible() and candidate.input_value() == value:
            return candidate
    pytest.fail(f"no field with the value {value!r}")


def test_embedded_server_as_a_user_sees_it(
    stack: dict[str, Any], browser_page: Any, loopback: None, tmp_path: Path
) -> None:
    """Add integration > IOTMP > run a server in Home Assistant; add a device; it connects.

    The steps a user takes for "Devices straight to Home Assistant": the embedded-server
    form, the new device's one-time credential with its firmware lines, and the device
    page once a (virtual) device connected with that credential.
    """
    page = browser_page
    port = _free_port()
    page.goto(stack["ha_url"] + "/config/integrations/dashboard/add?domain=iotmp")
    page.get_by_text("Do you want to set up IOTMP?").first.wait_for()
    page.get_by_role("button", name="OK").click()
    dialog = page.locator("dialog-data-entry-flow")
    dialog.get_by_text("Run an IOTMP server in Home Assistant (devices connect here)").first.click()
    dialog.get_by_text(
        "Devices on your network connect straight to Home Assistant"
    ).first.wait_for()
    _input_with_value(dialog, "0.0.0.0").fill("127.0.0.1")  # the defaults identify the fields
    _input_with_value(dialog, "25204").fill(str(port))
    dialog.locator("ha-switch").first.click()  # no TLS listener (its port may be taken)
    page.wait_for_timeout(300)
    _shot(page, "embedded-form.png")
    dialog.get_by_role("button", name="Submit").first.click()
    # The entry is created (and its hub device named) on the next step.
    dialog.get_by_role("button", name="Skip and finish").first.click()

    # Options of the new entry: add a device.
    page.goto(stack["integration_url"])
    entry = page.locator("ha-config-entry-row", has_text="IOTMP server in Home Assistant")
    entry.first.get_by_role("button", name="Configure").first.click()
    dialog.get_by_text("Add a device", exact=True).first.click()
    dialog.get_by_text("1 to 32 letters, digits").first.wait_for()
    fields = dialog.locator("input")
    fields.nth(0).fill("garden")
    fields.nth(1).fill("Garden sensor")
    dialog.get_by_role("button", name="Submit").first.click()
    dialog.get_by_text("Copy the credential now").first.wait_for()
    text = str(dialog.first.evaluate(DEEP_TEXT))
    credential = re.search(r"Credential:\s*\|?\s*([A-Za-z0-9_-]{16,})", text)
    user = re.search(r"User:\s*\|?\s*([A-Za-z0-9_-]+)", text)
    assert credential and user, text[:2000]
    assert "IOTMP" in text and str(port) in text, text[:2000]
    page.wait_for_timeout(300)
    _shot(page, "embedded-credential.png")
    dialog.get_by_role("button", name="Submit").first.click()

    # A virtual environment sensor with that credential connects straight to HA.
    log = (tmp_path / "garden.log").open("wb")
    device = subprocess.Popen(
        [
            sys.executable, "-m", "iotmp", "sim", "--profile", "environment_sensor",
            "--server", f"127.0.0.1:{port}", "--user", user.group(1),
            "--device-id", "garden", "--name", "Garden sensor",
            "--credential", credential.group(1), "--interval", "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        page.goto(stack["integration_url"])
        page.get_by_text("Garden sensor", exact=True).first.click()

        _wait_for(
            lambda: "°C" in _card_text(page, "Sensors"), "the garden sensor's temperature", 30
        )
        assert "Connected" in _card_text(page, "Diagnostic")
        page.wait_for_timeout(300)
        _shot(page, "embedded-device.png")
    finally:
        device.terminate()
        device.wait(10)
        log.close()


def test_browser_stayed_local(blocked_requests: list[str]) -> None:
    """Nothing outside the stack was requested (brand images of other integrations aside)."""
    blocked = [url for url in blocked_requests if "/api/brands/" not in url]
    assert not blocked, blocked


def test_ctrl_c_stops_everything(develop_stack: Any, loopback: None) -> None:
    """SIGINT stops Home Assistant, the devices and the server: exit 0, ports closed."""
    info = develop_stack.info
    exit_code = develop_stack.interrupt()
    assert exit_code == 0, develop_stack.log.read_text()[-3000:]
    for url in (info["ha_url"], info["server_url"]):
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as sock:
            sock.settimeout(2)
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"{url} still answers"
    assert not Path(str(develop_stack.ready_file)).exists()
