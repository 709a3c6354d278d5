"""Server configuration: dataclasses, loading from YAML/JSON, demo generation.

A configuration file is a mapping (YAML or JSON) with the keys documented in
``docs/server.md``. Everything has a default except ``users`` and ``devices``,
which may be empty. Unknown keys are rejected so that typos do not pass
silently.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from .demo_files import write_private_json as write_private_json  # noqa: PLC0414 (moved)
from .limits import LimitsError, ServerLimits, parse_limits
from .mqtt.settings import MqttConfig, MqttConfigError, parse_mqtt

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_HTTP_PORT: Final = 25280
DEFAULT_TCP_PORT: Final = 25204
DEFAULT_TLS_PORT: Final = 25206
DEFAULT_HTTPS_PORT: Final = 25243
DEFAULT_REQUEST_TIMEOUT: Final = 10.0
DEFAULT_KEEP_ALIVE: Final = 60.0
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_MAX_MESSAGE_SIZE: Final = 256 * 1024
DEFAULT_ACCESS_TOKEN_TTL: Final = 7200
DEFAULT_REFRESH_TOKEN_TTL: Final = 60 * 24 * 3600
MAX_KEEP_ALIVE: Final = 1800.0

DEVICE_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
USER_RE: Final = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
FRAME_STYLES: Final = ("signal", "legacy")
DEVICE_TYPES: Final = ("Generic", "HTTP", "MQTT")

DEMO_USER: Final = "demo"
DEMO_DEVICES: Final[tuple[tuple[str, str, str], ...]] = (
    # (device id, profile, display name) -- iotmp.sim has a profile of each.
    ("env-sensor", "environment_sensor", "Environment sensor"),
    ("smart-plug", "smart_plug", "Smart plug"),
    ("rgb-lamp", "rgb_lamp", "RGB lamp"),
    ("rgb-strip", "rgb_strip", "RGB strip"),
    ("gpio-board", "gpio_board", "GPIO board"),
    ("counter", "counter", "Counter"),
    ("controller", "controller", "Controller"),
)


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


class DemoFileError(ConfigError):
    """The demo file exists but cannot be used (its secrets are never silently replaced)."""


@dataclass(frozen=True, slots=True)
class UserConfig:
    """An account that applications log in to (password grant) and devices belong to."""

    name: str
    password: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """A device allowed to connect: ``user`` owns it, ``credential`` authenticates it."""

    id: str
    user: str
    credential: str
    name: str = ""
    description: str = ""
    type: str = "Generic"
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs to start.

    Ports: ``0`` picks a free port; ``None`` disables the listener. The TLS
    listener runs only when ``tls_port`` is set *and* ``tls_cert``/``tls_key``
    are given; the HTTPS API listener (REST, app WebSockets, ``wss://.../iotmp``)
    likewise on ``https_port``.
    """

    host: str = DEFAULT_HOST
    http_port: int | None = DEFAULT_HTTP_PORT
    tcp_port: int | None = DEFAULT_TCP_PORT
    tls_port: int | None = DEFAULT_TLS_PORT
    https_port: int | None = DEFAULT_HTTPS_PORT
    tls_cert: str | None = None
    tls_key: str | None = None
    secret: str | None = None
    server_name: str | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    keep_alive: float = DEFAULT_KEEP_ALIVE
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    websocket_frames: str = "signal"
    access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL
    refresh_token_ttl: int = DEFAULT_REFRESH_TOKEN_TTL
    login_delay: float = 0.5
    login_delay_max: float = 8.0
    # Storage (docs/storage.md): None -> default_data_dir(); database None -> SQLite there.
    data_dir: str | None = None
    database: str | None = None
    users: tuple[UserConfig, ...] = ()
    devices: tuple[DeviceConfig, ...] = ()
    mqtt: MqttConfig | None = None
    http_device_timeout: float = 300.0
    limits: ServerLimits = field(default_factory=ServerLimits)

    @property
    def tls_enabled(self) -> bool:
        """Whether a TLS device listener should run."""
        return self.tls_port is not None and bool(self.tls_cert) and bool(self.tls_key)

    @property
    def https_enabled(self) -> bool:
        """Whether the HTTPS API listener should run."""
        return self.https_port is not None and bool(self.tls_cert) and bool(self.tls_key)

    def user(self, name: str) -> UserConfig | None:
        """Return the user called ``name``, if configured."""
        for user in self.users:
            if user.name == name:
                return user
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the same keys a config file uses)."""
        data = asdict(self)
        data["users"] = [asdict(u) for u in self.users]
        data["devices"] = [asdict(d) for d in self.devices]
        return data

    def with_overrides(self, **changes: Any) -> ServerConfig:
        """Return a copy with some keys replaced (validated again)."""
        return validate(replace(self, **changes))


_SCALAR_KEYS: Final[dict[str, tuple[type, ...]]] = {
    "host": (str,),
    "http_port": (int, type(None)),
    "tcp_port": (int, type(None)),
    "tls_port": (int, type(None)),
    "https_port": (int, type(None)),
    "tls_cert": (str, type(None)),
    "tls_key": (str, type(None)),
    "secret": (str, type(None)),
    "server_name": (str, type(None)),
    "request_timeout": (int, float),
    "keep_alive": (int, float),
    "max_body_bytes": (int,),
    "max_message_size": (int,),
    "websocket_frames": (str,),
    "access_token_ttl": (int,),
    "refresh_token_ttl": (int,),
    "login_delay": (int, float),
    "login_delay_max": (int, float),
    "data_dir": (str, type(None)),
    "database": (str, type(None)),
    "http_device_timeout": (int, float),
}


def _check_type(key: str, value: Any, types: tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, types):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise ConfigError(f"{key}: expected {names}, got {value!r}")


def _parse_user(index: int, raw: Any) -> UserConfig:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"users[{index}]: expected a mapping")
    unknown = set(raw) - {"name", "password"}
    if unknown:
        raise ConfigError(f"users[{index}]: unknown keys {sorted(unknown)}")
    name = raw.get("name")
    password = raw.get("password")
    _check_type(f"users[{index}].name", name, (str,))
    _check_type(f"users[{index}].password", password, (str, type(None)))
    assert isinstance(name, str)
    return UserConfig(name=name, password=password)


def _parse_device(index: int, raw: Any, default_user: str | None) -> DeviceConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"devices[{index}]: expected a mapping")
    allowed = {"id", "user", "credential", "name", "description", "type", "enabled"}
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"devices[{index}]: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = dict(raw)
    if "user" not in values and default_user is not None:
        values["user"] = default_user
    for key in ("id", "user", "credential"):
        if key not in values:
            raise ConfigError(f"devices[{index}]: missing {key!r}")
        _check_type(f"devices[{index}].{key}", values[key], (str,))
    for key in ("name", "description", "type"):
        if key in values:
            _check_type(f"devices[{index}].{key}", values[key], (str,))
    if "enabled" in values and not isinstance(values["enabled"], bool):
        raise ConfigError(f"devices[{index}].enabled: expected a boolean")
    return DeviceConfig(**values)


def parse_config(data: Any) -> ServerConfig:
    """Build a validated :class:`ServerConfig` from a parsed YAML/JSON mapping."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a mapping")
    unknown = set(data) - set(_SCALAR_KEYS) - {"users", "devices", "mqtt", "limits"}
    if unknown:
        raise ConfigError(f"unknown configuration keys: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for key, types in _SCALAR_KEYS.items():
        if key in data:
            _check_type(key, data[key], types)
            values[key] = data[key]
    raw_users = data.get("users") or []
    if not isinstance(raw_users, list):
        raise ConfigError("users: expected a list")
    users = tuple(_parse_user(i, u) for i, u in enumerate(raw_users))
    default_user = users[0].name if len(users) == 1 else None
    raw_devices = data.get("devices") or []
    if not isinstance(raw_devices, list):
        raise ConfigError("devices: expected a list")
    devices = tuple(_parse_device(i, d, default_user) for i, d in enumerate(raw_devices))
    try:
        values["mqtt"] = parse_mqtt(data.get("mqtt"))
    except MqttConfigError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        values["limits"] = parse_limits(data.get("limits"))
    except LimitsError as exc:
        raise ConfigError(str(exc)) from exc
    return validate(ServerConfig(users=users, devices=devices, **values))


def validate(config: ServerConfig) -> ServerConfig:
    """Check cross-field rules; returns ``config`` unchanged when valid."""
    for key in ("http_port", "tcp_port", "tls_port", "https_port"):
        port = getattr(config, key)
        if port is not None and not 0 <= port <= 65535:
            raise ConfigError(f"{key}: {port} is not a valid port")
    if config.request_timeout <= 0:
        raise ConfigError("request_timeout must be positive")
    if not 0 < config.keep_alive <= MAX_KEEP_ALIVE:
        raise ConfigError(f"keep_alive must be in (0, {MAX_KEEP_ALIVE:g}]")
    if config.max_body_bytes <= 0 or config.max_message_size <= 0:
        raise ConfigError("max_body_bytes and max_message_size must be positive")
    if config.websocket_frames not in FRAME_STYLES:
        raise ConfigError(f"websocket_frames must be one of {FRAME_STYLES}")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("tls_cert and tls_key must be given together")
    if config.login_delay < 0 or config.login_delay_max < config.login_delay:
        raise ConfigError("login_delay must be >= 0 and <= login_delay_max")
    seen_users: set[str] = set()
    for user in config.users:
        if not USER_RE.match(user.name):
            raise ConfigError(f"invalid user name {user.name!r}")
        if user.name in seen_users:
            raise ConfigError(f"user {user.name!r} is defined twice")
        seen_users.add(user.name)
    seen_devices: set[str] = set()
    for device in config.devices:
        if not DEVICE_ID_RE.match(device.id):
            raise ConfigError(f"invalid device id {device.id!r} (1-32 of A-Z a-z 0-9 _ -)")
        if device.id in seen_devices:
            raise ConfigError(f"device {device.id!r} is defined twice")
        seen_devices.add(device.id)
        if device.user not in seen_users:
            raise ConfigError(f"device {device.id!r}: unknown user {device.user!r}")
        if device.type not in DEVICE_TYPES:
            raise ConfigError(f"device {device.id!r}: type must be one of {DEVICE_TYPES}")
    return config


def load_config(path: str | os.PathLike[str]) -> ServerConfig:
    """Read a YAML (``.yaml``/``.yml``) or JSON configuration file.

    Relative ``tls_cert``/``tls_key`` paths are resolved against the file's folder.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from exc
    if file.suffix.lower() in (".yaml", ".yml"):
        import yaml  # noqa: PLC0415 - only needed for YAML files

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: invalid YAML: {exc}") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{file}: invalid JSON: {exc}") from exc
    config = parse_config(data)
    base = file.resolve().parent
    changes: dict[str, Any] = {}
    for key in ("tls_cert", "tls_key", "data_dir"):
        value = getattr(config, key)
        if value and not Path(value).is_absolute():
            changes[key] = str(base / value)
    return replace(config, **changes) if changes else config


# ---------------------------------------------------------------------------
# Demo configuration
# ---------------------------------------------------------------------------


def default_data_dir() -> Path:
    """``$IOTMP_DATA_DIR``, else ``$XDG_DATA_HOME/iotmp``, else ``~/.local/share/iotmp``."""
    env = os.environ.get("IOTMP_DATA_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "iotmp"


def default_demo_file() -> Path:
    """Where ``--demo`` writes its settings (URL, user, token, devices) by default."""
    return default_data_dir() / "demo" / "demo.json"


@dataclass(slots=True)
class DemoSecrets:
    """Secrets of a demo setup, kept across restarts so tokens stay valid."""

    secret: str
    password: str
    token_id: str
    credentials: dict[str, str] = field(default_factory=dict)
    token: str | None = None


def read_demo_secrets(path: Path) -> DemoSecrets | None:
    """Secrets from an existing demo file, or None when there is none.

    Raises :class:`DemoFileError` when the file exists but is unreadable or
    corrupted: replacing it would silently change every secret and device
    credential (running devices could no longer log in).
    """
    advice = "repair it, or delete it to generate new secrets and device credentials"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DemoFileError(f"cannot read the demo file {path}: {exc}; {advice}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DemoFileError(f"the demo file {path} is corrupted ({exc}); {advice}") from exc
    config = data.get("config") if isinstance(data, dict) else None
    secret = config.get("secret") if isinstance(config, dict) else None
    password = data.get("password") if isinstance(data, dict) else None
    token_id = data.get("token_id") if isinstance(data, dict) else None
    if not (isinstance(secret, str) and isinstance(password, str) and isinstance(token_id, str)):
        raise DemoFileError(
            f"the demo file {path} is corrupted (no secret, password or token_id); {advice}"
        )
    credentials: dict[str, str] = {}
    for device in data.get("devices") or []:
        if (
            isinstance(device, dict)
            and isinstance(device.get("id"), str)
            and isinstance(device.get("credential"), str)
        ):
            credentials[device["id"]] = device["credential"]
    token = data.get("token") if isinstance(data.get("token"), str) else None
    return DemoSecrets(secret, password, token_id, credentials, token)


def new_demo_secrets() -> DemoSecrets:
    """Fresh random secrets for a demo setup."""
    return DemoSecrets(
        secret=secrets.token_urlsafe(32),
        password=secrets.token_urlsafe(12),
        token_id=secrets.token_hex(8),
    )


def demo_config(
    demo_secrets: DemoSecrets,
    *,
    host: str = DEFAULT_HOST,
    http_port: int | None = DEFAULT_HTTP_PORT,
    tcp_port: int | None = DEFAULT_TCP_PORT,
    tls_port: int | None = DEFAULT_TLS_PORT,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    https_port: int | None = DEFAULT_HTTPS_PORT,
) -> ServerConfig:
    """Build the demo server configuration (user ``demo`` and the demo devices)."""
    devices = []
    for device_id, _profile, name in DEMO_DEVICES:
        credential = demo_secrets.credentials.get(device_id) or secrets.token_urlsafe(12)
        demo_secrets.credentials[device_id] = credential
        devices.append(DeviceConfig(id=device_id, user=DEMO_USER, credential=credential, name=name))
    return validate(
        ServerConfig(
            host=host,
            http_port=http_port,
            tcp_port=tcp_port,
            tls_port=tls_port,
            https_port=https_port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            secret=demo_secrets.secret,
            users=(UserConfig(DEMO_USER, demo_secrets.password),),
            devices=tuple(devices),
        )
    )


def demo_document(
    config: ServerConfig,
    demo_secrets: DemoSecrets,
    *,
    http_url: str,
    tcp_port: int | None,
    tls_port: int | None,
    token: str,
    https_url: str | None = None,
) -> dict[str, Any]:
    """Build the JSON document ``--demo`` writes for other programs (devices, HA, curl)."""
    profiles = {device_id: profile for device_id, profile, _ in DEMO_DEVICES}
    document: dict[str, Any] = {
        "http_url": http_url,
        "tcp_port": tcp_port,
    }
    if https_url is not None:
        document["https_url"] = https_url
    if tls_port is not None:
        document["tls_port"] = tls_port
    document.update(
        {
            "host": config.host,
            "user": DEMO_USER,
            "password": demo_secrets.password,
            "token": token,
            "token_id": demo_secrets.token_id,
            "devices": [
                {
                    "id": device.id,
                    "name": device.name,
                    "credential": device.credential,
                    "profile": profiles.get(device.id, device.id),
                }
                for device in config.devices
            ],
            "config": config.to_dict(),
        }
    )
    return document
