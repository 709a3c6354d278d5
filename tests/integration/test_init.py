"""Setup, unload, outages, reconnects, reauth, dynamic and stale devices, the cache."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_TOKEN, CONF_USERNAME, STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.iotmp.const import (
    AUTH_PASSWORD,
    CONF_ALL_DEVICES,
    CONF_AUTH_METHOD,
    CONF_DEVICE_INTERVALS,
    CONF_DEVICES,
    CONF_REFRESH_TOKEN,
    CONF_UPDATE_INTERVAL,
    DOMAIN,
)
from iotmp.client import IotmpApiClient, IotmpConnectionError
from iotmp.server.testing import TestDevice, TestServer
from iotmp.sim.fleet import Target
from iotmp.sim.testing import TestFleet, run_virtual_devices

from .conftest import find_device, make_entry, setup_entry, state_of, wait_for

PLUG_SWITCH = "switch.smart_plug_relay"
PLUG_POWER = "sensor.smart_plug_power"
COUNTER = "sensor.counter_count"


def _our_entities(hass: HomeAssistant, entry: MockConfigEntry) -> list[er.RegistryEntry]:
    return er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)


@pytest.mark.profiles("smart_plug")
async def test_unload_leaves_nothing(
    hass: HomeAssistant, server: TestServer, loaded_entry: MockConfigEntry
) -> None:
    """Unloading closes every stream socket and task; setting up again works."""
    manager = loaded_entry.runtime_data.manager
    await wait_for(hass, lambda: len(server.server.app_sockets.sockets) == 3)
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.NOT_LOADED
    assert all(device.stream is None for device in manager.devices.values())
    await wait_for(hass, lambda: not server.server.app_sockets.sockets)
    assert state_of(hass, PLUG_SWITCH) == STATE_UNAVAILABLE
    assert await hass.config_entries.async_setup(loaded_entry.entry_id)
    await hass.async_block_till_done()
    await wait_for(hass, lambda: state_of(hass, PLUG_SWITCH) == STATE_OFF)


async def test_server_unreachable_retries_setup(hass: HomeAssistant, server: TestServer) -> None:
    """An unreachable server makes setup retry later (ConfigEntryNotReady)."""
    entry = make_entry(server)
    await server.stop()
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.reason and "Cannot reach the IOTMP server" in entry.reason


async def test_bad_token_starts_reauth(hass: HomeAssistant, server: TestServer) -> None:
    """A refused token fails setup and starts a reauth flow (ConfigEntryAuthFailed)."""
    token = server.issue_token()
    server.revoke_token(token)
    entry = make_entry(server, token=token)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress()
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]


@pytest.mark.profiles("smart_plug", "counter")
async def test_server_restart(
    hass: HomeAssistant,
    server: TestServer,
    fleet: TestFleet,
    loaded_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Server down: everything unavailable (one log line); back: fresh state, same entities."""
    caplog.set_level(logging.INFO, logger="custom_components.iotmp")
    before = {e.entity_id for e in _our_entities(hass, loaded_entry)}
    await wait_for(hass, lambda: state_of(hass, PLUG_SWITCH) == STATE_OFF)
    await server.stop()
    await wait_for(hass, lambda: state_of(hass, PLUG_SWITCH) == STATE_UNAVAILABLE)
    assert state_of(hass, COUNTER) == STATE_UNAVAILABLE
    assert state_of(hass, "binary_sensor.smart_plug_connectivity") == STATE_UNAVAILABLE
    # The device changes while nobody can see it.
    fleet["smart-plug"].sim.write("relay", True)
    await asyncio.sleep(0.5)  # let the reconnect attempts fail a few times
    await server.start()
    await wait_for(hass, lambda: state_of(hass, PLUG_SWITCH) == STATE_ON)
    await wait_for(hass, lambda: state_of(hass, COUNTER) not in (None, STATE_UNAVAILABLE))
    assert {e.entity_id for e in _our_entities(hass, loaded_entry)} == before
    lost = [r for r in caplog.records if "Lost connection to IOTMP server" in r.getMessage()]
    restored = [r for r in caplog.records if "Connection to IOTMP server" in r.getMessage()]
    assert len(lost) == 1
    assert len(restored) == 1
    assert lost[0].levelno == restored[0].levelno == logging.INFO
    # Streams are live again.
    value = float(state_of(hass, COUNTER) or 0)
    await wait_for(hass, lambda: float(state_of(hass, COUNTER) or 0) > value)


@pytest.mark.profiles("smart_plug", "counter")
async def test_device_disconnects(
    hass: HomeAssistant, server: TestServer, fleet: TestFleet, loaded_entry: MockConfigEntry
) -> None:
    """A device going offline makes only its own entities unavailable, until it is back."""
    plug = fleet["smart-plug"]
    await plug.stop()
    await wait_for(hass, lambda: state_of(hass, PLUG_SWITCH) == STATE_UNAVAILABLE)
    assert state_of(hass, "binary_sensor.smart_plug_connectivity") == STATE_OFF
    assert state_of(hass, COUNTER) != STATE_UNAVAILABLE
    plug.sim.write("relay", True)
    await fleet.start(Target("127.0.0.1", server.tcp_port))
    await wait_for(hass, lambda: state_of(hass, PLUG_SWITCH) == STATE_ON)
    await wait_for(
        hass, lambda: state_of(hass, "binary_sensor.smart_plug_connectivity") == STATE_ON
    )
    # Commands work again and their echo arrives.
    await hass.services.async_call("switch", "turn_off", {"entity_id": PLUG_SWITCH}, blocking=True)
    assert plug.state["relay"] is False
    await wait_for(hass, lambda: state_of(hass, PLUG_SWITCH) == STATE_OFF)


@pytest.mark.profiles("smart_plug")
async def test_revoked_token_starts_reauth(
    hass: HomeAssistant, server: TestServer, fleet: TestFleet
) -> None:
    """A token revoked on the server: entities unavailable and a reauth flow."""
    token = server.issue_token()
    entry = make_entry(server, token=token)
    await setup_entry(hass, entry)
    server.revoke_token(token)
    # The open sockets keep working until they reconnect: restart the server.
    await server.stop()
    await server.start()
    await wait_for(hass, lambda: bool(hass.config_entries.flow.async_progress()))
    flows = hass.config_entries.flow.async_progress()
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]
    assert state_of(hass, PLUG_SWITCH) == STATE_UNAVAILABLE
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.profiles("smart_plug")
async def test_new_device_appears(
    hass: HomeAssistant, server: TestServer, loaded_entry: MockConfigEntry
) -> None:
    """With "all devices", a device added on the server later shows up without a reload."""
    assert state_of(hass, COUNTER) is None
    async with run_virtual_devices(server, profiles=["counter"]) as more:
        await more.wait_connected()
        await wait_for(hass, lambda: state_of(hass, COUNTER) not in (None, STATE_UNAVAILABLE))
        device = find_device(hass, f"{loaded_entry.unique_id}:counter")
        assert device is not None
        assert loaded_entry.state is ConfigEntryState.LOADED


@pytest.mark.profiles("smart_plug", "counter")
async def test_selected_devices_only(
    hass: HomeAssistant, server: TestServer, fleet: TestFleet
) -> None:
    """With a device selection only those devices are added, also later."""
    entry = make_entry(
        server,
        options={CONF_ALL_DEVICES: False, CONF_DEVICES: ["smart-plug"], CONF_UPDATE_INTERVAL: 30},
    )
    await setup_entry(hass, entry)
    assert state_of(hass, PLUG_SWITCH) == STATE_OFF
    assert state_of(hass, COUNTER) is None
    async with run_virtual_devices(server, profiles=["rgb_strip"]) as more:
        await more.wait_connected()
        await hass.async_block_till_done()
        assert state_of(hass, "light.rgb_strip_rgb") is None
    assert set(entry.runtime_data.manager.devices) == {"smart-plug"}
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.profiles("smart_plug")
async def test_device_deleted_on_server(
    hass: HomeAssistant, server: TestServer, loaded_entry: MockConfigEntry
) -> None:
    """A device the server no longer lists is removed at the next snapshot."""
    ident = f"{loaded_entry.unique_id}:lamp"
    assert find_device(hass, ident) is not None
    server.add_user("bob")
    server.add_device(TestDevice("lamp", credential="pw", user="bob"))
    await server.stop()
    await server.start()
    await wait_for(hass, lambda: find_device(hass, ident) is None)
    assert state_of(hass, "binary_sensor.desk_lamp_connectivity") is None
    assert "lamp" not in loaded_entry.runtime_data.manager.devices
    await wait_for(hass, lambda: state_of(hass, PLUG_SWITCH) == STATE_OFF)


@pytest.mark.profiles("smart_plug")
async def test_remove_stale_device(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    loaded_entry: MockConfigEntry,
) -> None:
    """Users may delete devices the server no longer has, not live ones or the hub."""
    assert await async_setup_component(hass, "config", {})
    dev_reg = dr.async_get(hass)
    stale = dev_reg.async_get_or_create(
        config_entry_id=loaded_entry.entry_id,
        identifiers={("other", "x"), (DOMAIN, f"{loaded_entry.unique_id}:gone")},
        name="Gone",
    )
    live = find_device(hass, f"{loaded_entry.unique_id}:smart-plug")
    hub = find_device(hass, loaded_entry.unique_id)
    assert live is not None
    assert hub is not None
    client = await hass_ws_client(hass)

    async def remove(device_id: str) -> dict[str, Any]:
        await client.send_json_auto_id(
            {
                "type": "config/device_registry/remove_config_entry",
                "config_entry_id": loaded_entry.entry_id,
                "device_id": device_id,
            }
        )
        return await client.receive_json()

    assert (await remove(live.id))["success"] is False
    assert (await remove(hub.id))["success"] is False
    assert (await remove(stale.id))["success"] is True
    assert dev_reg.async_get(stale.id) is None


@pytest.mark.profiles("smart_plug")
async def test_cache_keeps_entities_of_offline_devices(
    hass: HomeAssistant, server: TestServer, fleet: TestFleet, hass_storage: dict[str, Any]
) -> None:
    """After a restart with a device offline its entities exist (unavailable) from the cache."""
    entry = make_entry(server)
    await setup_entry(hass, entry)
    assert state_of(hass, PLUG_SWITCH) == STATE_OFF
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    stored = hass_storage[f"{DOMAIN}.{entry.entry_id}"]["data"]["devices"]
    assert set(stored["smart-plug"]["resources"]) >= {"relay", "power", "energy", "voltage"}
    await fleet.stop()
    await server.wait_device_disconnected("smart-plug")
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert state_of(hass, PLUG_SWITCH) == STATE_UNAVAILABLE
    assert state_of(hass, PLUG_POWER) == STATE_UNAVAILABLE
    await fleet.start(Target("127.0.0.1", server.tcp_port))
    await wait_for(hass, lambda: state_of(hass, PLUG_SWITCH) == STATE_OFF)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert f"{DOMAIN}.{entry.entry_id}" not in hass_storage


@pytest.mark.profiles("smart_plug")
async def test_options_change_reloads(
    hass: HomeAssistant, server: TestServer, loaded_entry: MockConfigEntry
) -> None:
    """Changing options reloads the entry and applies them; data changes do not."""
    manager = loaded_entry.runtime_data.manager
    assert manager.devices["smart-plug"].subscriptions["power"] == 1
    hass.config_entries.async_update_entry(loaded_entry, data={**loaded_entry.data, "x": 1})
    await hass.async_block_till_done()
    assert loaded_entry.runtime_data.manager is manager
    hass.config_entries.async_update_entry(
        loaded_entry,
        options={**loaded_entry.options, CONF_DEVICE_INTERVALS: {"smart-plug": 5}},
    )
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.LOADED
    new_manager = loaded_entry.runtime_data.manager
    assert new_manager is not manager
    await wait_for(hass, lambda: new_manager.devices["smart-plug"].stream is not None)
    assert new_manager.devices["smart-plug"].subscriptions["power"] == 5
    assert new_manager.devices["smart-plug"].subscriptions["relay"] == 0


@pytest.mark.profiles("smart_plug")
async def test_password_entry_refreshes_token(
    hass: HomeAssistant, server: TestServer, fleet: TestFleet
) -> None:
    """A refused session token is refreshed with the refresh token, then stored."""
    from homeassistant.helpers.aiohttp_client import async_get_clientsession

    tokens = await IotmpApiClient.password_login(
        async_get_clientsession(hass), server.http_url, server.user, server.password
    )
    stale = server.issue_token()
    server.revoke_token(stale)
    entry = make_entry(
        server,
        token=stale,
        **{
            CONF_AUTH_METHOD: AUTH_PASSWORD,
            CONF_USERNAME: server.user,
            CONF_REFRESH_TOKEN: tokens.refresh_token,
        },
    )
    await setup_entry(hass, entry)
    assert entry.data[CONF_TOKEN] != stale
    assert entry.data[CONF_REFRESH_TOKEN] != tokens.refresh_token
    assert state_of(hass, PLUG_SWITCH) == STATE_OFF
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.profiles("smart_plug")
async def test_stream_crash_is_restarted(
    hass: HomeAssistant, server: TestServer, fleet: TestFleet, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream that dies of an unexpected error is started again."""
    from iotmp.client import AccountEventStream

    original = AccountEventStream.run
    calls = 0

    async def flaky(self: AccountEventStream) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        await original(self)

    with patch.object(AccountEventStream, "run", flaky):
        entry = make_entry(server)
        await setup_entry(hass, entry)
        await wait_for(hass, lambda: calls == 2)
    assert "Stream events stopped unexpectedly" in caplog.text
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.profiles("smart_plug")
async def test_snapshot_retries(
    hass: HomeAssistant, server: TestServer, fleet: TestFleet, loaded_entry: MockConfigEntry
) -> None:
    """A snapshot that fails is retried with backoff until it works."""
    manager = loaded_entry.runtime_data.manager
    client = manager.client
    original = client.get_resources
    calls = 0

    async def flaky(device_id: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise IotmpConnectionError("down")
        return await original(device_id)

    with patch.object(client, "get_resources", flaky):
        manager._async_request_refresh("smart-plug")
        await wait_for(hass, lambda: calls >= 2 and manager.server_available)
    assert state_of(hass, PLUG_SWITCH) == STATE_OFF


@pytest.mark.profiles("smart_plug")
async def test_no_state_storm_on_shutdown(
    hass: HomeAssistant, server: TestServer, loaded_entry: MockConfigEntry
) -> None:
    """While Home Assistant stops, a lost server does not rewrite every state."""
    manager = loaded_entry.runtime_data.manager
    events = manager._events
    assert events is not None
    await wait_for(hass, lambda: events.connected)
    hass.set_state(CoreState.stopping)
    try:
        await server.stop()
        await wait_for(hass, lambda: not events.connected)
        # The outage is not acted on: no log line, no rewrite of every entity.
        assert manager.server_available is True
    finally:
        hass.set_state(CoreState.running)
    await server.start()


async def test_missing_permission_starts_reauth(hass: HomeAssistant, server: TestServer) -> None:
    """A token that may not list devices fails setup with a reauth (a new token is needed)."""
    from iotmp.client import IotmpForbiddenError

    entry = make_entry(server)
    entry.add_to_hass(hass)
    with patch(
        "custom_components.iotmp.coordinator.IotmpApiClient.list_devices",
        side_effect=IotmpForbiddenError("no", status=403),
    ):
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason and "permission" in entry.reason
    flows = hass.config_entries.flow.async_progress()
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]
