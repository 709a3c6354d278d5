"""REST API of the local server against a real device over loopback sockets."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from server_helpers import Lab


async def _get(lab: Lab, url: str, **kwargs: Any) -> tuple[int, Any]:
    headers = kwargs.pop("headers", lab.headers)
    async with lab.http.get(url, headers=headers, **kwargs) as resp:
        text = await resp.text()
        return resp.status, (await resp.json()) if text else None


async def _post(lab: Lab, url: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    headers = dict(kwargs.pop("headers", lab.headers))
    data = kwargs.pop("data", None)
    if body is not None:
        data = json.dumps(body) if data is None else data
        headers["Content-Type"] = "application/json"
    async with lab.http.post(url, headers=headers, data=data, **kwargs) as resp:
        text = await resp.text()
        return resp.status, (await resp.json()) if text else None


# --------------------------------------------------------------------- devices


async def test_device_list_records(lab: Lab) -> None:
    before = int(time.time() * 1000)
    status, body = await _get(lab, lab.url("/v1/users/alice/devices"))
    assert status == 200
    lamp, spare = body
    assert lamp["device"] == "lamp"
    assert lamp["name"] == "Desk lamp"
    assert lamp["description"] == "on the desk"
    assert lamp["type"] == "Generic"
    assert lamp["enabled"] is True
    assert lamp["connection"]["active"] is True
    assert isinstance(lamp["connection"]["ts"], int)
    assert before - 60_000 < lamp["connection"]["ts"] <= before + 1000
    assert spare["connection"]["active"] is False
    assert "ts" not in spare["connection"]  # never connected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("count=1&index=0", ["lamp"]),
        ("count=1&index=1", ["spare"]),
        ("count=1&index=2", []),
        ("count=0", ["lamp", "spare"]),
        ("count=50&index=0", ["lamp", "spare"]),
        ("name=DESK", ["lamp"]),
        ("name=par", ["spare"]),
        ("name=lamp", ["lamp"]),
        ("type=generic", ["lamp", "spare"]),
        ("type=MQTT", []),
        ("sort=device&order=desc", ["spare", "lamp"]),
    ],
)
async def test_device_list_query(lab: Lab, query: str, expected: list[str]) -> None:
    status, body = await _get(lab, lab.url(f"/v1/users/alice/devices?{query}"))
    assert status == 200
    assert [d["device"] for d in body] == expected


async def test_device_list_bad_count(lab: Lab) -> None:
    status, body = await _get(lab, lab.url("/v1/users/alice/devices?count=x"))
    assert status == 400
    assert "count" in body["error"]["message"]


async def test_get_device(lab: Lab) -> None:
    status, body = await _get(lab, lab.url("/v1/users/alice/devices/lamp"))
    assert status == 200
    assert body["device"] == "lamp"
    assert body["connection"]["active"] is True
    status, body = await _get(lab, lab.url("/v1/users/alice/devices/nope"))
    assert status == 404
    assert body == {"error": {"message": "device not found"}}


async def test_server_version_needs_no_token(lab: Lab) -> None:
    status, body = await _get(lab, lab.url("/v1/server/version"), headers={})
    assert status == 200
    assert isinstance(body["version"], str)


async def test_unknown_route_is_json_404(lab: Lab) -> None:
    status, body = await _get(lab, lab.url("/v9/nothing"))
    assert status == 404
    assert "message" in body["error"]


# -------------------------------------------------------------------- resources


async def test_resources_match_device_description(lab: Lab) -> None:
    status, body = await _get(lab, lab.dev("/resources"))
    assert status == 200
    assert body == lab.device.api()
    assert body["$ota/options"] == {"fn": 3}
    assert body["led"] == {"fn": 2}
    status, body2 = await _get(lab, lab.dev("/api", version=2))
    assert status == 200
    assert body2 == body


async def test_resource_samples(lab: Lab) -> None:
    samples = {}
    for name in ("led", "temperature", "calc", "reboot", "rgb", "$ota/options"):
        status, samples[name] = await _get(lab, lab.dev(f"/resources/{name}/api"))
        assert status == 200, name
    assert samples["led"] == {"in": False}
    assert samples["temperature"] == {"out": {"celsius": 21.5, "humidity": 45}}
    assert samples["calc"] == {"in": {"a": 0, "b": 0}, "out": {"sum": 0, "product": 0}}
    assert samples["reboot"] == {}
    assert samples["rgb"] == {"in": {"r": 0, "g": 0, "b": 0}}
    assert samples["$ota/options"] == {"out": {"chunk": 8192}}
    status, body = await _get(lab, lab.dev("/led/api", version=2))
    assert (status, body) == (200, {"in": False})


async def test_read_outputs(lab: Lab) -> None:
    assert await _get(lab, lab.dev("/resources/temperature")) == (
        200,
        {"celsius": 21.5, "humidity": 45},
    )
    assert await _get(lab, lab.dev("/resources/counter")) == (200, 1)
    assert await _get(lab, lab.dev("/resources/counter")) == (200, 2)
    assert await _get(lab, lab.dev("/resources/$ota/options")) == (200, {"chunk": 8192})


async def test_read_input_returns_state(lab: Lab) -> None:
    lab.state.brightness = 77
    assert await _get(lab, lab.dev("/resources/brightness")) == (200, 77)


async def test_get_runs_run_resource(lab: Lab) -> None:
    assert await _get(lab, lab.dev("/resources/reboot")) == (200, None)
    assert lab.state.reboots == 1


async def test_write_input(lab: Lab) -> None:
    status, body = await _post(lab, lab.dev("/resources/led"), True)
    assert (status, body) == (200, None)
    assert lab.state.led is True
    assert await _get(lab, lab.dev("/resources/led/api")) == (200, {"in": True})
    status, body = await _post(lab, lab.dev("/resources/rgb"), {"r": 255, "g": 1, "b": 2})
    assert (status, body) == (200, None)
    assert lab.state.rgb == {"r": 255, "g": 1, "b": 2}


async def test_write_input_output_returns_output(lab: Lab) -> None:
    status, body = await _post(lab, lab.dev("/resources/calc"), {"a": 2, "b": 3})
    assert (status, body) == (200, {"sum": 5, "product": 6})


async def test_post_without_body_runs(lab: Lab) -> None:
    async with lab.http.post(lab.dev("/resources/reboot"), headers=lab.headers) as resp:
        assert resp.status == 200
        assert await resp.read() == b""
    assert lab.state.reboots == 1


async def test_v2_wrapped_forms(lab: Lab) -> None:
    assert await _get(lab, lab.dev("/temperature", version=2)) == (
        200,
        {"out": {"celsius": 21.5, "humidity": 45}},
    )
    assert await _post(lab, lab.dev("/led", version=2), {"in": True}) == (200, None)
    assert lab.state.led is True
    assert await _get(lab, lab.dev("/led", version=2)) == (200, {"in": True})
    assert await _post(lab, lab.dev("/calc", version=2), {"in": {"a": 4, "b": 5}}) == (
        200,
        {"out": {"sum": 9, "product": 20}},
    )
    assert await _get(lab, lab.dev("/reboot", version=2)) == (200, {})
    assert lab.state.reboots == 1
    assert await _get(lab, lab.dev("/$ota/options", version=2)) == (200, {"out": {"chunk": 8192}})
    status, _ = await _post(lab, lab.dev("/led", version=2), [1, 2])
    assert status == 400


# ----------------------------------------------------------------------- errors


async def test_missing_and_bad_tokens(lab: Lab) -> None:
    url = lab.url("/v1/users/alice/devices")
    status, body = await _get(lab, url, headers={})
    assert status == 401
    assert isinstance(body["error"]["message"], str)
    status, body = await _get(lab, url, headers={"Authorization": "Bearer nonsense"})
    assert status == 401
    assert "message" in body["error"]
    forged = lab.server.token[:-4] + ("AAAA" if not lab.server.token.endswith("AAAA") else "BBBB")
    status, _ = await _get(lab, url, headers={"Authorization": f"Bearer {forged}"})
    assert status == 401


async def test_token_in_query(lab: Lab) -> None:
    status, body = await _get(
        lab, lab.url(f"/v1/users/alice/devices?authorization={lab.server.token}"), headers={}
    )
    assert status == 200
    assert len(body) == 2


async def test_token_of_other_user_is_403(lab: Lab) -> None:
    lab.server.add_user("bob", "pw")
    token = lab.server.issue_token(user="bob")
    headers = {"Authorization": f"Bearer {token}"}
    status, body = await _get(lab, lab.url("/v1/users/alice/devices"), headers=headers)
    assert status == 403
    assert "message" in body["error"]
    status, _ = await _get(lab, lab.dev("/resources/temperature"), headers=headers)
    assert status == 403
    status, body = await _get(lab, lab.url("/v1/users/bob/devices"), headers=headers)
    assert (status, body) == (200, [])


async def test_revoked_and_expired_tokens(lab: Lab) -> None:
    token = lab.server.issue_token()
    headers = {"Authorization": f"Bearer {token}"}
    assert (await _get(lab, lab.url("/v1/users/alice/devices"), headers=headers))[0] == 200
    lab.server.revoke_token(token)
    assert (await _get(lab, lab.url("/v1/users/alice/devices"), headers=headers))[0] == 401
    expired = lab.server.issue_token(expires_in=-10)
    status, body = await _get(
        lab, lab.url("/v1/users/alice/devices"), headers={"Authorization": f"Bearer {expired}"}
    )
    assert status == 401
    assert "expired" in body["error"]["message"]
    # the server's own token still works
    assert (await _get(lab, lab.url("/v1/users/alice/devices")))[0] == 200


async def test_offline_device_is_404_at_once(lab: Lab) -> None:
    started = time.monotonic()
    for path in ("/resources", "/resources/temperature", "/resources/temperature/api"):
        status, body = await _get(lab, lab.dev(path, device="spare"))
        assert status == 404
        assert body == {"error": {"message": "device not connected"}}
    status, _ = await _post(lab, lab.dev("/resources/led", device="spare"), True)
    assert status == 404
    assert time.monotonic() - started < 1.0


async def test_unknown_resource_is_404(lab: Lab) -> None:
    for path in ("/resources/nope", "/resources/nope/api", "/resources/a/b"):
        status, body = await _get(lab, lab.dev(path))
        assert status == 404, path
        assert body == {"error": {"message": "resource not found"}}
    status, _ = await _post(lab, lab.dev("/resources/nope"), 1)
    assert status == 404


async def test_unknown_device_is_404(lab: Lab) -> None:
    status, body = await _get(lab, lab.dev("/resources", device="ghost"))
    assert status == 404
    assert body == {"error": {"message": "device not found"}}


async def test_slow_device_is_504(lab: Lab) -> None:
    started = time.monotonic()
    status, body = await _get(lab, lab.dev("/resources/slow"))
    elapsed = time.monotonic() - started
    assert status == 504
    assert "message" in body["error"]
    assert 0.8 < elapsed < 4.0  # request_timeout is 1 s
    # the device is still usable afterwards
    assert (await _get(lab, lab.dev("/resources/counter")))[0] == 200


async def test_malformed_json_is_400(lab: Lab) -> None:
    status, body = await _post(lab, lab.dev("/resources/led"), data="{nope", body="")
    assert status == 400
    assert body == {"error": {"message": "malformed JSON body"}}
    assert lab.state.led is False


async def test_large_body_is_413(lab: Lab) -> None:
    big = {"blob": "x" * (70 * 1024)}
    status, body = await _post(lab, lab.dev("/resources/rgb"), big)
    assert status == 413
    assert "message" in body["error"]


async def test_body_near_the_limit_is_read_whole(lab: Lab) -> None:
    body = {"r": 1, "g": 2, "b": 3, "pad": "x" * (60 * 1024)}
    status, _ = await _post(lab, lab.dev("/resources/rgb"), body)
    assert status == 200
    assert lab.state.rgb == {"r": 1, "g": 2, "b": 3}


async def test_device_errors_map_to_status(lab: Lab) -> None:
    status, body = await _get(lab, lab.dev("/resources/broken"))
    assert (status, body) == (409, {"error": {"message": "sensor unplugged"}})
    status, body = await _get(lab, lab.dev("/resources/weird"))
    assert (status, body) == (500, {"error": {"message": "odd failure"}})
    status, body = await _post(lab, lab.dev("/resources/calc"), {"a": "x"})
    assert (status, body) == (400, {"error": {"message": "calc needs numeric a and b"}})


# ------------------------------------------------------------------ oauth/tokens


async def _oauth(lab: Lab, form: dict[str, str]) -> tuple[int, Any]:
    async with lab.http.post(lab.url("/oauth/token"), data=form) as resp:
        return resp.status, await resp.json()


async def test_password_and_refresh_grants(lab: Lab) -> None:
    status, body = await _oauth(
        lab,
        {"grant_type": "password", "username": "alice", "password": lab.server.password},
    )
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 7200
    access, refresh = body["access_token"], body["refresh_token"]
    headers = {"Authorization": f"Bearer {access}"}
    assert (await _get(lab, lab.url("/v1/users/alice/devices"), headers=headers))[0] == 200
    # a refresh token is not an access token
    bad = {"Authorization": f"Bearer {refresh}"}
    assert (await _get(lab, lab.url("/v1/users/alice/devices"), headers=bad))[0] == 401
    # refresh: new pair; the used refresh token is rejected afterwards
    status, body2 = await _oauth(lab, {"grant_type": "refresh_token", "refresh_token": refresh})
    assert status == 200
    assert body2["refresh_token"] != refresh
    assert body2["access_token"]
    status, body3 = await _oauth(lab, {"grant_type": "refresh_token", "refresh_token": refresh})
    assert status == 401
    assert body3 == {"error": {"message": "invalid refresh token"}}
    # an access token is not a refresh token
    status, _ = await _oauth(lab, {"grant_type": "refresh_token", "refresh_token": access})
    assert status == 401
    # the new refresh token works once
    status, _ = await _oauth(
        lab, {"grant_type": "refresh_token", "refresh_token": body2["refresh_token"]}
    )
    assert status == 200


async def test_password_grant_rejects_bad_password(lab: Lab) -> None:
    status, body = await _oauth(
        lab, {"grant_type": "password", "username": "alice", "password": "wrong"}
    )
    assert status == 401
    assert body == {"error": {"message": "invalid username or password"}}
    status, body = await _oauth(lab, {"grant_type": "password", "username": "zed", "password": ""})
    assert status == 401
    status, body = await _oauth(lab, {"grant_type": "magic"})
    assert status == 400


async def test_token_management(lab: Lab) -> None:
    status, body = await _post(lab, lab.url("/v1/users/alice/tokens"), {"token_name": "ha"})
    assert status == 200
    token, jti = body["access_token"], body["token_id"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await _get(lab, lab.url("/v1/users/alice/devices"), headers=headers))[0] == 200
    async with lab.http.delete(
        lab.url(f"/v1/users/alice/tokens/{jti}"), headers=lab.headers
    ) as resp:
        assert resp.status == 200
    assert (await _get(lab, lab.url("/v1/users/alice/devices"), headers=headers))[0] == 401
