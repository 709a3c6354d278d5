"""Configuration loading, demo generation, tokens and login throttling (no sockets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iotmp.server.auth import (
    AuthError,
    TokenAuthority,
    jwt_claims_unverified,
    jwt_decode,
    jwt_encode,
    signing_key,
)
from iotmp.server.config import (
    DEMO_DEVICES,
    ConfigError,
    default_demo_file,
    demo_config,
    demo_document,
    load_config,
    new_demo_secrets,
    parse_config,
    read_demo_secrets,
    write_private_json,
)
from iotmp.server.registry import flatten_description

YAML = """
host: 0.0.0.0
http_port: 8081
tcp_port: 25204
tls_port: 25206
tls_cert: cert.pem
tls_key: key.pem
secret: s3cret-signing-key
request_timeout: 5
keep_alive: 30
max_body_bytes: 1024
max_message_size: 4096
websocket_frames: legacy
users:
  - name: alice
    password: pw
devices:
  - id: lamp
    credential: lamp-secret
    name: Desk lamp
    description: on the desk
  - id: sensor
    user: alice
    credential: x
"""


def test_load_yaml(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(YAML)
    config = load_config(path)
    assert config.host == "0.0.0.0"
    assert config.http_port == 8081
    assert config.tls_enabled
    assert config.tls_cert == str(tmp_path / "cert.pem")
    assert config.keep_alive == 30
    assert config.websocket_frames == "legacy"
    assert config.users[0].name == "alice"
    lamp = config.devices[0]
    assert (lamp.id, lamp.user, lamp.credential, lamp.name, lamp.type) == (
        "lamp",
        "alice",
        "lamp-secret",
        "Desk lamp",
        "Generic",
    )


def test_load_json_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    path.write_text(json.dumps({"users": [{"name": "bob"}]}))
    config = load_config(path)
    assert (config.http_port, config.tcp_port, config.tls_port) == (25280, 25204, 25206)
    assert not config.tls_enabled
    assert config.request_timeout == 10
    assert config.max_body_bytes == 64 * 1024
    assert config.websocket_frames == "signal"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": 1}, "unknown configuration keys"),
        ({"http_port": "80"}, "http_port"),
        ({"http_port": 70000}, "not a valid port"),
        ({"websocket_frames": "xml"}, "websocket_frames"),
        ({"tls_cert": "a.pem"}, "together"),
        ({"keep_alive": 0}, "keep_alive"),
        (
            {"users": [{"name": "a"}], "devices": [{"id": "x", "user": "b", "credential": "c"}]},
            "unknown user",
        ),
        (
            {"users": [{"name": "a"}], "devices": [{"id": "bad id", "credential": "c"}]},
            "invalid device id",
        ),
        ({"users": [{"name": "a"}, {"name": "a"}]}, "twice"),
        ({"users": [{"name": "a"}], "devices": [{"id": "x"}]}, "credential"),
        ([1, 2], "mapping"),
    ],
)
def test_config_errors(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_config(bad)


def test_demo_config_and_secret_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTMP_DATA_DIR", str(tmp_path / "cache"))
    assert default_demo_file() == tmp_path / "cache" / "demo" / "demo.json"
    secrets = new_demo_secrets()
    config = demo_config(secrets, http_port=0, tcp_port=0)
    assert [d.id for d in config.devices] == [d[0] for d in DEMO_DEVICES]
    assert {d.user for d in config.devices} == {"demo"}
    document = demo_document(
        config, secrets, http_url="http://127.0.0.1:1", tcp_port=2, tls_port=None, token="t"
    )
    assert document["user"] == "demo"
    assert "tls_port" not in document
    profiles = {d["id"]: d["profile"] for d in document["devices"]}
    assert profiles["controller"] == "controller"
    assert profiles["env-sensor"] == "environment_sensor"
    path = default_demo_file()
    write_private_json(path, document)
    assert path.stat().st_mode & 0o777 == 0o600
    again = read_demo_secrets(path)
    assert again is not None
    assert (again.secret, again.password, again.token_id) == (
        secrets.secret,
        secrets.password,
        secrets.token_id,
    )
    config2 = demo_config(again)
    assert [d.credential for d in config2.devices] == [d.credential for d in config.devices]
    assert read_demo_secrets(tmp_path / "missing.json") is None


# ------------------------------------------------------------------------ tokens


def _authority(clock: list[float] | None = None) -> TokenAuthority:
    users = {"alice": "pw", "bob": None}
    now = clock or [1_000_000.0]

    async def check_password(name: str, password: str) -> bool:
        return users.get(name) is not None and users[name] == password

    return TokenAuthority(
        "secret",
        server_name="example:1",
        known_user=users.__contains__,
        check_password=check_password,
        clock=lambda: now[0],
    )


def test_jwt_roundtrip_and_tamper() -> None:
    key, other = signing_key("k"), signing_key("other")
    token = jwt_encode({"usr": "alice"}, key)
    assert jwt_decode(token, key) == {"usr": "alice"}
    with pytest.raises(AuthError):
        jwt_decode(token, other)
    head, _body, sig = token.split(".")
    evil = jwt_encode({"usr": "bob"}, other).split(".")[1]
    with pytest.raises(AuthError):
        jwt_decode(f"{head}.{evil}.{sig}", key)
    for junk in ("", "a.b", "a.b.c", "...", "x" * 9000):
        with pytest.raises(AuthError):
            jwt_decode(junk, key)


def test_access_tokens() -> None:
    clock = [1_000_000.0]
    auth = _authority(clock)
    token = auth.issue_access_token("alice")
    claims = auth.verify_access_token(token)
    assert claims["usr"] == "alice"
    assert claims["svr"] == "example:1"
    assert "exp" not in claims
    short = auth.issue_access_token("alice", expires_in=10)
    auth.verify_access_token(short)
    clock[0] += 11
    with pytest.raises(AuthError, match="expired"):
        auth.verify_access_token(short)
    auth.revoke(token)
    with pytest.raises(AuthError, match="revoked"):
        auth.verify_access_token(token)
    other = auth.issue_access_token("carol")
    with pytest.raises(AuthError, match="unknown user"):
        auth.verify_access_token(other)
    by_id = auth.issue_access_token("alice")
    auth.revoke(jwt_claims_unverified(by_id)["jti"])
    with pytest.raises(AuthError):
        auth.verify_access_token(by_id)


async def test_grants() -> None:
    auth = _authority()
    pair = await auth.password_grant("alice", "pw")
    assert auth.verify_access_token(pair.access_token)["usr"] == "alice"
    with pytest.raises(AuthError):
        auth.verify_access_token(pair.refresh_token)
    with pytest.raises(AuthError):
        await auth.password_grant("alice", "nope")
    with pytest.raises(AuthError):
        await auth.password_grant("bob", "")  # no password: no password login
    pair2 = await auth.refresh_grant(pair.refresh_token)
    with pytest.raises(AuthError, match="invalid refresh token"):
        await auth.refresh_grant(pair.refresh_token)
    with pytest.raises(AuthError):
        await auth.refresh_grant(pair2.access_token)
    await auth.refresh_grant(pair2.refresh_token)
    body = pair.as_json()
    assert body["token_type"] == "bearer"
    assert body["scope"] is None


def test_flatten_description() -> None:
    flat = {"led": {"fn": 2}, "$ota/options": {"fn": 3}, "odd": None}
    assert flatten_description(flat) == {"led": 2, "$ota/options": 3, "odd": None}
    legacy = {"$ota": {"/": {"options": {"al": 0, "fn": 3}}}, "temp": {"al": 0, "fn": 3}}
    assert flatten_description(legacy) == {"$ota/options": 3, "temp": 3}
    assert flatten_description(None) == {}
