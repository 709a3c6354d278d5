"""Config flow: token and password sign-in, device selection, reauth, reconfigure."""

from __future__ import annotations

from collections.abc import Iterator
from unittest.mock import AsyncMock, patch

import pytest
from homeassistant.config_entries import SOURCE_USER
from homeassistant.const import (
    CONF_PASSWORD,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VERIFY_SSL,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.iotmp.config_flow import entry_unique_id
from custom_components.iotmp.const import (
    AUTH_PASSWORD,
    AUTH_TOKEN,
    CONF_ACCOUNT,
    CONF_ALL_DEVICES,
    CONF_AUTH_METHOD,
    CONF_DEVICES,
    CONF_EXPIRES_AT,
    CONF_REFRESH_TOKEN,
    CONF_UPDATE_INTERVAL,
    DOMAIN,
)
from iotmp.client import (
    IotmpApiError,
    IotmpConnectionError,
    IotmpForbiddenError,
)
from iotmp.server.testing import TestDevice, TestServer, run_test_server

from .conftest import make_entry

API = "custom_components.iotmp.config_flow.IotmpApiClient"


@pytest.fixture(autouse=True)
def no_setup() -> Iterator[AsyncMock]:
    """Flow tests stop at the entry: its setup is tested elsewhere."""
    with patch("custom_components.iotmp.async_setup_entry", return_value=True) as mock:
        yield mock


async def _start(hass: HomeAssistant, method: str) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["token", "password", "embedded"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": method}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == method
    return result["flow_id"]


async def test_token_flow_all_devices(hass: HomeAssistant, server: TestServer) -> None:
    """A token signs in, the device list is shown, "all devices" creates the entry."""
    flow_id = await _start(hass, "token")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {CONF_URL: server.http_url + "/", CONF_TOKEN: f" {server.token} ", CONF_VERIFY_SSL: True},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "devices"
    assert result["description_placeholders"] == {"count": "1", "online": "0"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_ALL_DEVICES: True, CONF_DEVICES: ["lamp"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "alice @ 127.0.0.1"
    assert result["data"] == {
        CONF_URL: server.http_url,
        CONF_VERIFY_SSL: True,
        CONF_AUTH_METHOD: AUTH_TOKEN,
        CONF_TOKEN: server.token,
        CONF_ACCOUNT: "alice",
    }
    assert result["options"] == {
        CONF_ALL_DEVICES: True,
        CONF_DEVICES: [],
        CONF_UPDATE_INTERVAL: 30,
    }
    assert result["result"].unique_id == entry_unique_id(server.http_url, "alice")
    assert result["result"].unique_id.endswith(":alice")


async def test_pick_devices_needs_one(hass: HomeAssistant, server: TestServer) -> None:
    """Without "all devices" at least one device must be chosen."""
    flow_id = await _start(hass, "token")
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: server.http_url, CONF_TOKEN: server.token, CONF_VERIFY_SSL: True}
    )
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_ALL_DEVICES: False, CONF_DEVICES: []}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "no_devices_selected"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_ALL_DEVICES: False, CONF_DEVICES: ["lamp"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["options"][CONF_ALL_DEVICES] is False
    assert result["options"][CONF_DEVICES] == ["lamp"]


@pytest.mark.parametrize(
    ("url", "token", "error"),
    [
        ("ftp://127.0.0.1", None, "invalid_url"),
        ("not a url", None, "invalid_url"),
        (None, "not-a-jwt", "invalid_auth"),
        ("http://127.0.0.1:9", None, "cannot_connect"),
    ],
)
async def test_token_flow_errors_then_recover(
    hass: HomeAssistant, server: TestServer, url: str | None, token: str | None, error: str
) -> None:
    """Bad URL, bad token or an unreachable server show an error; fixing it continues."""
    flow_id = await _start(hass, "token")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_URL: url or server.http_url,
            CONF_TOKEN: token or server.token,
            CONF_VERIFY_SSL: True,
        },
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "token"
    assert result["errors"] == {"base": error}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: server.http_url, CONF_TOKEN: server.token, CONF_VERIFY_SSL: True}
    )
    assert result["step_id"] == "devices"


async def test_revoked_token(hass: HomeAssistant, server: TestServer) -> None:
    """A token the server refuses is invalid_auth."""
    token = server.issue_token()
    server.revoke_token(token)
    flow_id = await _start(hass, "token")
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: server.http_url, CONF_TOKEN: token, CONF_VERIFY_SSL: True}
    )
    assert result["errors"] == {"base": "invalid_auth"}


@pytest.mark.parametrize(
    ("side_effect", "error"),
    [
        (IotmpForbiddenError("no permission", status=403), "forbidden"),
        (IotmpApiError("odd answer"), "cannot_connect"),
        (RuntimeError("boom"), "unknown"),
    ],
)
async def test_listing_errors(
    hass: HomeAssistant, server: TestServer, side_effect: Exception, error: str
) -> None:
    """Errors while listing devices map to form errors."""
    flow_id = await _start(hass, "token")
    with patch(f"{API}.list_devices", side_effect=side_effect):
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_URL: server.http_url, CONF_TOKEN: server.token, CONF_VERIFY_SSL: True}
        )
    assert result["errors"] == {"base": error}


async def test_duplicate_aborts(hass: HomeAssistant, server: TestServer) -> None:
    """The same account on the same server cannot be added twice."""
    make_entry(server).add_to_hass(hass)
    flow_id = await _start(hass, "token")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {CONF_URL: server.http_url, CONF_TOKEN: server.issue_token(), CONF_VERIFY_SSL: True},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_password_flow(hass: HomeAssistant, server: TestServer) -> None:
    """Username and password sign in through /oauth/token; the refresh token is kept."""
    flow_id = await _start(hass, "password")
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_URL: server.http_url,
            CONF_USERNAME: server.user,
            CONF_PASSWORD: "wrong",
            CONF_VERIFY_SSL: True,
        },
    )
    assert result["errors"] == {"base": "invalid_auth"}
    # The password is not suggested again.
    assert "suggested_value" not in str(
        [key.description for key in result["data_schema"].schema if key == CONF_PASSWORD]
    )
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_URL: server.http_url,
            CONF_USERNAME: server.user,
            CONF_PASSWORD: server.password,
            CONF_VERIFY_SSL: True,
        },
    )
    assert result["step_id"] == "devices"
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_ALL_DEVICES: True})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    data = result["data"]
    assert data[CONF_AUTH_METHOD] == AUTH_PASSWORD
    assert data[CONF_USERNAME] == "alice"
    assert data[CONF_ACCOUNT] == "alice"
    assert data[CONF_TOKEN]
    assert data[CONF_REFRESH_TOKEN]
    assert CONF_EXPIRES_AT in data
    assert CONF_PASSWORD not in data


@pytest.mark.parametrize(
    ("side_effect", "error"),
    [
        (IotmpConnectionError("down"), "cannot_connect"),
        (IotmpApiError("odd"), "cannot_connect"),
    ],
)
async def test_password_login_errors(
    hass: HomeAssistant, server: TestServer, side_effect: Exception, error: str
) -> None:
    """Login failures other than bad credentials."""
    flow_id = await _start(hass, "password")
    with patch(f"{API}.password_login", side_effect=side_effect):
        result = await hass.config_entries.flow.async_configure(
            flow_id,
            {
                CONF_URL: server.http_url,
                CONF_USERNAME: "alice",
                CONF_PASSWORD: "x",
                CONF_VERIFY_SSL: False,
            },
        )
    assert result["errors"] == {"base": error}


# ---------------------------------------------------------------------- reauth


async def test_reauth_token(hass: HomeAssistant, server: TestServer) -> None:
    """A new token of the same account replaces the old one and reloads."""
    old = server.issue_token()
    entry = make_entry(server, token=old)
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"]["account"] == "alice"
    assert result["description_placeholders"]["url"] == server.http_url
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: "garbage"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    new = server.issue_token()
    with patch.object(hass.config_entries, "async_schedule_reload") as reload:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_TOKEN: new}
        )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_TOKEN] == new
    reload.assert_called_once_with(entry.entry_id)


async def test_reauth_wrong_account(hass: HomeAssistant) -> None:
    """A token of another account aborts the reauth."""
    async with run_test_server(devices=[TestDevice("x", user="bob")], user="alice") as srv:
        entry = make_entry(srv)
        entry.add_to_hass(hass)
        result = await entry.start_reauth_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_TOKEN: srv.issue_token(user="bob")}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "wrong_account"


async def test_reauth_password(hass: HomeAssistant, server: TestServer) -> None:
    """A password entry signs in again with the password."""
    entry = make_entry(
        server,
        **{
            CONF_AUTH_METHOD: AUTH_PASSWORD,
            CONF_USERNAME: "alice",
            CONF_REFRESH_TOKEN: "stale",
        },
    )
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_USERNAME: "alice", CONF_PASSWORD: "nope"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    with patch.object(hass.config_entries, "async_schedule_reload"):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_USERNAME: "alice", CONF_PASSWORD: server.password}
        )
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_REFRESH_TOKEN] != "stale"
    assert entry.data[CONF_AUTH_METHOD] == AUTH_PASSWORD


# ----------------------------------------------------------------- reconfigure


async def test_reconfigure(hass: HomeAssistant, server: TestServer) -> None:
    """URL and TLS switch change after a connection check; errors recover."""
    entry = make_entry(server)
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "ftp://x", CONF_VERIFY_SSL: True}
    )
    assert result["errors"] == {"base": "invalid_url"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "http://127.0.0.1:9", CONF_VERIFY_SSL: True}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    with patch(f"{API}.list_devices", side_effect=RuntimeError("boom")):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: server.http_url, CONF_VERIFY_SSL: True}
        )
    assert result["errors"] == {"base": "unknown"}
    with patch.object(hass.config_entries, "async_schedule_reload") as reload:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: server.http_url + "/", CONF_VERIFY_SSL: False}
        )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_VERIFY_SSL] is False
    assert entry.data[CONF_URL] == server.http_url
    reload.assert_called_once_with(entry.entry_id)


async def test_reconfigure_other_account(hass: HomeAssistant, server: TestServer) -> None:
    """The stored token naming another account than the entry aborts."""
    entry = make_entry(server, **{CONF_ACCOUNT: "someone-else"})
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: server.http_url, CONF_VERIFY_SSL: True}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_account"


async def test_reconfigure_to_configured_server(hass: HomeAssistant, server: TestServer) -> None:
    """Pointing an entry at a server+account another entry has aborts."""
    make_entry(server).add_to_hass(hass)
    async with run_test_server(user="alice") as other:
        entry = make_entry(other, token=server.token)
        entry.add_to_hass(hass)
        result = await entry.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: server.http_url, CONF_VERIFY_SSL: True}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "already_configured"


async def test_reconfigure_password_refresh(hass: HomeAssistant, server: TestServer) -> None:
    """An expired session token of a password entry is refreshed during the check."""
    tokens = await _login(hass, server)
    stale = server.issue_token()
    server.revoke_token(stale)
    entry = make_entry(
        server,
        token=stale,
        **{
            CONF_AUTH_METHOD: AUTH_PASSWORD,
            CONF_USERNAME: "alice",
            CONF_REFRESH_TOKEN: tokens.refresh_token,
        },
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    with patch.object(hass.config_entries, "async_schedule_reload"):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: server.http_url, CONF_VERIFY_SSL: True}
        )
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_TOKEN] != stale
    assert entry.data[CONF_REFRESH_TOKEN] != tokens.refresh_token


@pytest.mark.parametrize(
    ("refresh_token", "side_effect", "error"),
    [
        ("bad-refresh-token", None, "invalid_auth"),
        (None, None, "invalid_auth"),
        ("x", IotmpConnectionError("down"), "cannot_connect"),
    ],
)
async def test_reconfigure_password_refresh_fails(
    hass: HomeAssistant,
    server: TestServer,
    refresh_token: str | None,
    side_effect: Exception | None,
    error: str,
) -> None:
    """A refused or failing refresh shows an error."""
    stale = server.issue_token()
    server.revoke_token(stale)
    extra = {CONF_AUTH_METHOD: AUTH_PASSWORD, CONF_USERNAME: "alice"}
    if refresh_token:
        extra[CONF_REFRESH_TOKEN] = refresh_token
    entry = make_entry(server, token=stale, **extra)
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    if side_effect is None:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: server.http_url, CONF_VERIFY_SSL: True}
        )
    else:
        with patch(f"{API}.refresh_login", side_effect=side_effect):
            result = await hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_URL: server.http_url, CONF_VERIFY_SSL: True}
            )
    assert result["errors"] == {"base": error}


async def test_reconfigure_token_without_account(hass: HomeAssistant, server: TestServer) -> None:
    """A stored token without a readable account is invalid_auth."""
    entry = make_entry(server)
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    with patch(f"{API}.list_devices", return_value=[]):
        entry_data = dict(entry.data)
        entry_data[CONF_TOKEN] = "garbage"
        hass.config_entries.async_update_entry(entry, data=entry_data)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: server.http_url, CONF_VERIFY_SSL: True}
        )
    assert result["errors"] == {"base": "invalid_auth"}


async def _login(hass: HomeAssistant, server: TestServer):  # type: ignore[no-untyped-def]
    from homeassistant.helpers.aiohttp_client import async_get_clientsession

    from iotmp.client import IotmpApiClient

    return await IotmpApiClient.password_login(
        async_get_clientsession(hass), server.http_url, server.user, server.password
    )
