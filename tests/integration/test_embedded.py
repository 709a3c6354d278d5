"""The embedded-server entry: an IOTMP server inside Home Assistant, over real sockets.

Virtual devices (iotmp.sim) connect over TCP/TLS on 127.0.0.1 to the listener the
entry opens; nothing else runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)

from custom_components.iotmp.const import (
    CONF_ALL_DEVICES,
    CONF_DEVICES,
    CONF_HOST,
    CONF_MODE,
    CONF_TCP_PORT,
    CONF_TLS_CERT,
    CONF_TLS_KEY,
    CONF_TLS_PORT,
    CONF_UPDATE_INTERVAL,
    DOMAIN,
    EMBEDDED_UNIQUE_ID,
    EMBEDDED_USER,
    MODE_EMBEDDED,
)
from custom_components.iotmp.embedded import EmbeddedServer
from iotmp.sim.fleet import Target, make_devices
from iotmp.sim.profile import load_profile
from iotmp.sim.testing import TestFleet, run_virtual_devices

from .conftest import find_device, setup_entry, state_of, wait_for


def embedded_entry(*, tls: bool = False) -> MockConfigEntry:
    """An embedded-server entry on 127.0.0.1, ports chosen by the system."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="IOTMP server in Home Assistant",
        unique_id=EMBEDDED_UNIQUE_ID,
        data={
            CONF_MODE: MODE_EMBEDDED,
            CONF_HOST: "127.0.0.1",
            CONF_TCP_PORT: 0,
            CONF_TLS_PORT: 0 if tls else None,
            CONF_TLS_CERT: None,
            CONF_TLS_KEY: None,
        },
        options={CONF_ALL_DEVICES: True, CONF_DEVICES: [], CONF_UPDATE_INTERVAL: 1},
    )


class ServerTarget:
    """What ``run_virtual_devices`` needs: the user, the port and a way to add devices."""

    def __init__(self, embedded: EmbeddedServer, *, tls: bool = False) -> None:
        self.embedded = embedded
        self.user = EMBEDDED_USER
        assert embedded.server is not None
        port = embedded.server.tls_port if tls else embedded.server.tcp_port
        assert port is not None
        self.tcp_port = port

    async def add_device(self, device: Any) -> None:
        await self.embedded.async_add_device(device.id, device.name, device.credential)


def embedded_of(entry: MockConfigEntry) -> EmbeddedServer:
    server = entry.runtime_data.server
    assert server is not None
    return server


@asynccontextmanager
async def devices_of(
    entry: MockConfigEntry, *profiles: str, **kwargs: Any
) -> AsyncIterator[TestFleet]:
    async with run_virtual_devices(
        ServerTarget(embedded_of(entry)), profiles=list(profiles), **kwargs
    ) as fleet:
        yield fleet


async def entity_id(hass: HomeAssistant, platform: str, device_id: str, key: str) -> str:
    """Entity id of a device's entity, once it exists."""
    registry = er.async_get(hass)
    unique_id = f"{EMBEDDED_UNIQUE_ID}-{device_id}-{key}"
    await wait_for(
        hass, lambda: registry.async_get_entity_id(platform, DOMAIN, unique_id) is not None
    )
    found = registry.async_get_entity_id(platform, DOMAIN, unique_id)
    assert found is not None
    return found


@pytest.fixture
async def entry(hass: HomeAssistant) -> AsyncIterator[MockConfigEntry]:
    """A loaded embedded-server entry (plain TCP), unloaded at the end."""
    config_entry = embedded_entry()
    await setup_entry(hass, config_entry)
    yield config_entry
    if config_entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(config_entry.entry_id)
        await hass.async_block_till_done()


async def test_config_flow_creates_a_running_server(hass: HomeAssistant) -> None:
    """The second choice of the user step makes an entry whose server listens at once."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    assert "embedded" in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "embedded"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "embedded"
    bad = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_HOST: "not an address", CONF_TCP_PORT: 25204, "tls": False, CONF_TLS_PORT: 25206},
    )
    assert bad["errors"] == {CONF_HOST: "invalid_host"}
    same = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_HOST: "127.0.0.1", CONF_TCP_PORT: 25204, "tls": True, CONF_TLS_PORT: 25204},
    )
    assert same["errors"] == {CONF_TLS_PORT: "same_port"}
    port = _free_port()
    done = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_HOST: "127.0.0.1", CONF_TCP_PORT: port, "tls": False, CONF_TLS_PORT: 25206},
    )
    assert done["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.state is ConfigEntryState.LOADED
    assert entry.data[CONF_TLS_PORT] is None
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()
    # One embedded server per Home Assistant.
    again = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    again = await hass.config_entries.flow.async_configure(
        again["flow_id"], {"next_step_id": "embedded"}
    )
    assert again["type"] is FlowResultType.ABORT
    assert again["reason"] == "already_configured"
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_device_entities_commands_and_availability(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """A device connects, gets entities with states, takes commands, goes unavailable."""
    async with devices_of(entry, "smart_plug") as fleet:
        await fleet.wait_connected()
        await wait_for(hass, lambda: find_device(hass, "embedded:smart-plug") is not None)
        relay = await entity_id(hass, "switch", "smart-plug", "relay")
        await wait_for(hass, lambda: state_of(hass, relay) == STATE_OFF)
        await hass.services.async_call("switch", "turn_on", {ATTR_ENTITY_ID: relay}, blocking=True)
        plug = fleet["smart-plug"]
        assert plug.state["relay"] is True
        assert [c.value for c in plug.commands if c.resource == "relay"] == [True]
        await wait_for(hass, lambda: state_of(hass, relay) == STATE_ON)
        power = await entity_id(hass, "sensor", "smart-plug", "power")
        await wait_for(hass, lambda: state_of(hass, power) not in (None, "unknown"))
        device = find_device(hass, "embedded:smart-plug")
        assert device is not None
        assert device.name == plug.name
        hub = find_device(hass, EMBEDDED_UNIQUE_ID)
        assert hub is not None
        assert device.via_device_id == hub.id
        assert hub.model == "IOTMP server in Home Assistant"
        assert hub.configuration_url is None
        # The manager reads properties (the firmware version) in process too.
        embedded = embedded_of(entry)
        assert embedded.server is not None
        await embedded.server.properties.set_value("smart-plug", "firmware", "3.0.1")
        listed = await entry.runtime_data.manager.client.list_properties("smart-plug")
        assert [(p["property"], p["value"]) for p in listed] == [("firmware", "3.0.1")]
        await plug.stop()
        started = time.monotonic()
        await wait_for(hass, lambda: state_of(hass, relay) == STATE_UNAVAILABLE, timeout=2.0)
        assert time.monotonic() - started < 2.0
        assert state_of(hass, power) == STATE_UNAVAILABLE


async def test_wrong_credential_refused_and_reported_once(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong credential never connects; one log line and a repair issue name the id."""
    caplog.set_level(logging.WARNING, logger="custom_components.iotmp")
    embedded = embedded_of(entry)
    await embedded.async_add_device("counter", "Counter", "right-credential")
    async with devices_of(
        entry, "counter", register=False, credential="bad-credential", reconnect_delay=0.05
    ) as fleet:
        await wait_for(hass, lambda: embedded.refused_total >= 3, timeout=15)
        assert not fleet["counter"].connected
    assert embedded.server is not None
    assert embedded.server.devices_online() == []
    lines = [r for r in caplog.records if "was refused" in r.getMessage()]
    assert len(lines) == 1
    assert "'counter'" in lines[0].getMessage()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("custom_components")]
    assert not any("right-credential" in m or "bad-credential" in m for m in ours)
    issue = issue_registry.async_get_issue(DOMAIN, f"device_refused_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_placeholders == {"device": "counter"}
    # With the right credential in its firmware the device gets in; the issue goes.
    async with devices_of(entry, "counter", register=False, credential="right-credential") as ok:
        await ok.wait_connected()
        await wait_for(
            hass,
            lambda: (
                issue_registry.async_get_issue(DOMAIN, f"device_refused_{entry.entry_id}") is None
            ),
        )


async def test_options_add_regenerate_remove(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Add a device (credential shown once with firmware), connect, regenerate, remove."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.MENU
    assert {"add_device", "remove_device", "regenerate"} <= set(result["menu_options"])
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "add_device"}
    )
    bad = await hass.config_entries.options.async_configure(
        result["flow_id"], {"device_id": "bad id!", "name": "Plug"}
    )
    assert bad["errors"] == {"device_id": "invalid_device_id"}
    shown = await hass.config_entries.options.async_configure(
        result["flow_id"], {"device_id": "smart-plug", "name": "Kitchen plug"}
    )
    assert shown["type"] is FlowResultType.FORM
    assert shown["step_id"] == "credential"
    placeholders = shown["description_placeholders"]
    credential = placeholders["credential"]
    assert len(credential) >= 20
    firmware = placeholders["firmware"]
    assert f'ThingerESP32 thing("{EMBEDDED_USER}", "smart-plug", "{credential}")' in firmware
    assert "set_host(" in firmware
    done = await hass.config_entries.options.async_configure(shown["flow_id"], {})
    assert done["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED

    async with devices_of(entry, "smart_plug", register=False, credential=credential) as fleet:
        await fleet.wait_connected()
        relay = await entity_id(hass, "switch", "smart-plug", "relay")
        await wait_for(hass, lambda: state_of(hass, relay) == STATE_OFF)
        device = find_device(hass, "embedded:smart-plug")
        assert device is not None and device.name == "Kitchen plug"

        # A new credential: the device (with the old one in its firmware) is cut off.
        result = await hass.config_entries.options.async_init(entry.entry_id)
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {"next_step_id": "regenerate"}
        )
        shown = await hass.config_entries.options.async_configure(
            result["flow_id"], {"device": "smart-plug"}
        )
        assert shown["step_id"] == "credential"
        assert shown["description_placeholders"]["credential"] != credential
        await hass.config_entries.options.async_configure(shown["flow_id"], {})
        await wait_for(hass, lambda: state_of(hass, relay) == STATE_UNAVAILABLE)
        await asyncio.sleep(0.5)  # reconnect attempts with the old credential fail
        assert not fleet["smart-plug"].connected

        result = await hass.config_entries.options.async_init(entry.entry_id)
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {"next_step_id": "remove_device"}
        )
        done = await hass.config_entries.options.async_configure(
            result["flow_id"], {"device": "smart-plug"}
        )
        assert done["type"] is FlowResultType.CREATE_ENTRY
        await wait_for(hass, lambda: find_device(hass, "embedded:smart-plug") is None)
        assert er.async_get(hass).async_get(relay) is None
        assert "smart-plug" not in embedded_of(entry).devices


async def test_unload_closes_everything_and_reload_keeps_entities(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """Unload stops the listener and drops the devices; a reload gives the same entities."""
    embedded = embedded_of(entry)
    async with devices_of(entry, "rgb_lamp", reconnect_delay=0.05) as fleet:
        await fleet.wait_connected()
        lamp = await entity_id(hass, "light", "rgb-lamp", "light")
        await wait_for(hass, lambda: state_of(hass, lamp) in (STATE_ON, STATE_OFF))
        before = {
            e.unique_id: e.entity_id
            for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        }
        assert embedded.server is not None
        port = embedded.server.tcp_port
        assert port is not None
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
        await wait_for(hass, lambda: not fleet["rgb-lamp"].connected, timeout=2)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        assert embedded.server is None

        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        after = {
            e.unique_id: e.entity_id
            for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        }
        assert after == before
        # Stored device, cached description: the lamp's entities are there, offline.
        assert state_of(hass, lamp) == STATE_UNAVAILABLE


async def test_tls_listener_with_generated_certificate(
    hass: HomeAssistant, tmp_path: Path, hass_client: Any
) -> None:
    """A TLS port without a certificate gets a self-signed one on first start."""
    hass.config.config_dir = str(tmp_path)
    config_entry = embedded_entry(tls=True)
    await setup_entry(hass, config_entry)
    embedded = embedded_of(config_entry)
    assert embedded.server is not None and embedded.server.tls_port is not None
    cert = tmp_path / DOMAIN / config_entry.entry_id / "server.crt"
    assert cert.is_file()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", embedded.server.tls_port, ssl=context
    )
    writer.close()
    await writer.wait_closed()
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, config_entry)
    listener = diagnostics["server"]["listeners"]
    assert listener["running"] is True
    assert listener["tls_port"] == embedded.server.tls_port
    assert listener["tls_error"] is None
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    await hass.async_block_till_done()


async def test_diagnostics_redact_credentials(
    hass: HomeAssistant, entry: MockConfigEntry, hass_client: Any
) -> None:
    """Diagnostics show the listener state and the devices, never a credential."""
    embedded = embedded_of(entry)
    credential = await embedded.async_add_device("counter", "Counter")
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    listener = diagnostics["server"]["listeners"]
    assert listener["running"] is True
    assert listener["tcp_port"] == embedded.server.tcp_port  # type: ignore[union-attr]
    assert listener["devices"] == ["counter"]
    assert credential not in str(diagnostics)


async def test_devices_over_websocket_on_the_http_port(
    hass: HomeAssistant, hass_client_no_auth: Any
) -> None:
    """With HTTP loaded, devices can also connect by WebSocket to ``/iotmp`` on its port."""
    assert await async_setup_component(hass, "http", {})
    config_entry = embedded_entry()
    await setup_entry(hass, config_entry)
    client = await hass_client_no_auth()
    url = f"ws://127.0.0.1:{client.server.port}/iotmp"
    embedded = embedded_of(config_entry)
    devices = make_devices(
        load_profile("counter"), user=EMBEDDED_USER, credential="ws-credential", tick=0.05
    )
    for device in devices:
        await embedded.async_add_device(device.device_id, device.name, device.credential)
    fleet = TestFleet(None, devices)
    await fleet.start(Target(transport="ws", url=url))
    try:
        await fleet.wait_connected()
        count = await entity_id(hass, "sensor", "counter", "count")
        await wait_for(hass, lambda: state_of(hass, count) not in (None, "unknown"))
        assert embedded.server is not None
        assert embedded.server.devices_online() == ["counter"]
    finally:
        await fleet.stop()
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    await hass.async_block_till_done()
    # No server behind the view any more.
    response = await client.get("/iotmp")
    assert response.status == 404


async def test_port_in_use_retries_setup(hass: HomeAssistant) -> None:
    """A taken port is a temporary problem: setup is retried, nothing is left running."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config_entry = embedded_entry()
        config_entry.add_to_hass(hass)
        hass.config_entries.async_update_entry(
            config_entry, data={**config_entry.data, CONF_TCP_PORT: port}
        )
        await hass.config_entries.async_setup(config_entry.entry_id)
        await hass.async_block_till_done()
        assert config_entry.state is ConfigEntryState.SETUP_RETRY
        assert "cannot listen" in (config_entry.reason or "")
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    await hass.async_block_till_done()


async def test_refused_unknown_id_is_shown_without_markup(
    hass: HomeAssistant, entry: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """An id the device made up reaches the repair issue as plain id characters."""
    embedded = embedded_of(entry)
    assert embedded.server is not None
    await embedded.server.registry.authenticate(EMBEDDED_USER, "[x](http://evil)", "nope")
    issue = issue_registry.async_get_issue(DOMAIN, f"device_refused_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_placeholders == {"device": "?x??http???evil?"}
