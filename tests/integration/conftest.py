"""Fixtures: the local IOTMP server and virtual devices, run in-process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_TOKEN, CONF_URL, CONF_VERIFY_SSL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotmp.config_flow import entry_unique_id
from custom_components.iotmp.const import (
    AUTH_TOKEN,
    CONF_ACCOUNT,
    CONF_ALL_DEVICES,
    CONF_AUTH_METHOD,
    CONF_DEVICES,
    CONF_UPDATE_INTERVAL,
    DOMAIN,
)
from iotmp.server.testing import TestDevice, TestServer, run_test_server
from iotmp.sim.testing import TestFleet, run_virtual_devices

MOSQUITTO = shutil.which("mosquitto", path="/usr/sbin:/usr/bin:/usr/local/sbin")
"""Debian's mosquitto (scripts/setup installs it on the host and in the latest leg's rootfs)."""


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant find custom_components/iotmp."""


@pytest.fixture(autouse=True)
def no_deprecation_reports(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test in which Home Assistant reports a deprecated use by the integration.

    Home Assistant logs "Detected that custom integration 'iotmp' ..." for each use of a
    deprecated API (once per call site), so every test of every leg checks it.
    """
    yield
    reports = [
        record.getMessage()
        for when in ("setup", "call")
        for record in caplog.get_records(when)  # type: ignore[arg-type]
        if "custom integration 'iotmp'" in record.getMessage()
    ]
    assert not reports, reports


@pytest.fixture(autouse=True)
def loopback_sockets(socket_enabled: None) -> None:
    """Allow sockets; pytest-socket still limits them to 127.0.0.1."""


@pytest.fixture(autouse=True)
def fast_retries() -> Iterator[None]:
    """Short snapshot retries and stream restarts so tests stay quick."""
    with (
        patch("custom_components.iotmp.coordinator.SNAPSHOT_RETRY_MIN", 0.05),
        patch("custom_components.iotmp.coordinator.SNAPSHOT_RETRY_MAX", 0.2),
        patch("custom_components.iotmp.coordinator.STREAM_RESTART_DELAY", 0.05),
        patch("custom_components.iotmp.coordinator.STREAM_BACKOFF_INITIAL", 0.05),
        patch("custom_components.iotmp.coordinator.STREAM_BACKOFF_MAX", 0.2),
    ):
        yield


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    """A local server with one registered (offline) device and no virtual devices."""
    async with run_test_server(
        devices=[TestDevice("lamp", credential="pw", name="Desk lamp")], user="alice"
    ) as srv:
        yield srv


def make_entry(
    server: TestServer,
    *,
    token: str | None = None,
    options: dict[str, Any] | None = None,
    **data: Any,
) -> MockConfigEntry:
    """A config entry for ``server`` (token login, all devices)."""
    url = server.http_url
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"{server.user} @ 127.0.0.1",
        unique_id=entry_unique_id(url, server.user),
        data={
            CONF_URL: url,
            CONF_VERIFY_SSL: True,
            CONF_AUTH_METHOD: AUTH_TOKEN,
            CONF_TOKEN: token or server.token,
            CONF_ACCOUNT: server.user,
            **data,
        },
        options=options
        if options is not None
        else {CONF_ALL_DEVICES: True, CONF_DEVICES: [], CONF_UPDATE_INTERVAL: 30},
    )


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Add and set up an entry; assert it loaded."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``profiles`` marker."""
    config.addinivalue_line(
        "markers", "profiles(*names): virtual device profiles of the fleet fixture"
    )


@pytest.fixture
async def fleet(request: pytest.FixtureRequest, server: TestServer) -> AsyncIterator[TestFleet]:
    """Demo devices connected to ``server``: all, or those of the ``profiles`` marker."""
    marker = request.node.get_closest_marker("profiles")
    kwargs: dict[str, Any] = {"profiles": list(marker.args)} if marker else {"demo": True}
    async with run_virtual_devices(server, **kwargs) as devices:
        await devices.wait_connected()
        yield devices


@pytest.fixture
async def loaded_entry(
    hass: HomeAssistant, server: TestServer, fleet: TestFleet
) -> AsyncIterator[MockConfigEntry]:
    """An entry for every device of ``server`` (outputs every second), set up and unloaded."""
    entry = make_entry(
        server, options={CONF_ALL_DEVICES: True, CONF_DEVICES: [], CONF_UPDATE_INTERVAL: 1}
    )
    await setup_entry(hass, entry)
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


async def wait_for(
    hass: HomeAssistant,
    predicate: Callable[[], bool],
    timeout: float = 10.0,  # noqa: ASYNC109 - a bound on waiting, not an assertion
) -> None:
    """Wait until ``predicate()`` holds (the server and devices run in real time)."""
    async with asyncio.timeout(timeout):
        while True:
            await hass.async_block_till_done()
            if predicate():
                return
            await asyncio.sleep(0.02)


def state_of(hass: HomeAssistant, entity_id: str) -> str | None:
    """State string of an entity, None when it has none."""
    state = hass.states.get(entity_id)
    return None if state is None else state.state


def find_device(hass: HomeAssistant, identifier: str) -> dr.DeviceEntry | None:
    """Registry device with the identifier ``(iotmp, identifier)`` (works on every HA)."""
    registry = dr.async_get(hass)
    for entry in hass.config_entries.async_entries(DOMAIN):
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id):
            if (DOMAIN, identifier) in device.identifiers:
                return device
    return None


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def broker_port(tmp_path: Path) -> Iterator[int]:
    """A mosquitto with anonymous logins on a loopback port (skips without mosquitto)."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto not installed")
    port = free_port()
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert MOSQUITTO is not None
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(5)
