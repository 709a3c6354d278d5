"""Who may log in to the built-in broker and which topics each login may use.

Pure (no amqtt): :mod:`.broker` asks these questions for every CONNECT,
SUBSCRIBE, PUBLISH and delivery. See :mod:`.broker` for the rules.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .settings import MqttConfig

if TYPE_CHECKING:
    from iotmp.server.app import IotmpServer

_LOGGER = logging.getLogger(__name__)

ROLE_SERVER: Final = "server"
ROLE_USER: Final = "user"
ROLE_DEVICE: Final = "device"


@dataclass(frozen=True, slots=True)
class Login:
    """Who an MQTT session belongs to."""

    role: str
    user: str
    device: str | None = None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest)."""
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    for index, part in enumerate(f_parts):
        if part == "#":
            return True
        if index >= len(t_parts):
            return False
        if part != "+" and part != t_parts[index]:
            return False
    return len(f_parts) == len(t_parts)


def _filter_within(topic_filter: str, allowed: str) -> bool:
    """Whether every topic ``topic_filter`` can match is also matched by ``allowed``."""
    f_parts = topic_filter.split("/")
    a_parts = allowed.split("/")
    for index, part in enumerate(a_parts):
        if part == "#":
            return True
        if index >= len(f_parts):
            return False
        if f_parts[index] == "#":
            return False
        if part != "+" and (f_parts[index] == "+" or part != f_parts[index]):
            return False
    return len(f_parts) == len(a_parts)


class BrokerAuthority:
    """Answers the broker's questions (login, topic rights) from the server's state."""

    def __init__(self, server: IotmpServer, config: MqttConfig) -> None:
        self.server = server
        self.config = config
        self.server_username = f"$iotmp-{secrets.token_hex(6)}"
        self.server_password = secrets.token_urlsafe(24)
        self.logins: dict[str, Login] = {}
        self.on_connected: Callable[[str, Login, Any], None] | None = None
        self.on_disconnected: Callable[[str, Login, Any], None] | None = None
        self.on_message: Callable[[str, Login, Any], None] | None = None
        self.on_subscribed: Callable[[str, Login, str], None] | None = None
        self.key = secrets.token_hex(8)
        self.discovery_owners: dict[str, str] = {}

    # -- logins ------------------------------------------------------------

    def check_login(self, username: Any, password: Any) -> Login | None:
        """Return the login of these credentials, or None when refused."""
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        if hmac.compare_digest(username, self.server_username):
            ok = hmac.compare_digest(password.encode(), self.server_password.encode())
            return Login(ROLE_SERVER, "") if ok else None
        user = self.server.config.user(username)
        if user is None:
            return None
        if user.password is not None and hmac.compare_digest(
            user.password.encode("utf-8"), password.encode("utf-8")
        ):
            return Login(ROLE_USER, username)
        for state in self.server.registry.for_user(username):
            config = state.config
            if config.enabled and hmac.compare_digest(
                config.credential.encode("utf-8"), password.encode("utf-8")
            ):
                return Login(ROLE_DEVICE, username, config.id)
        try:
            claims = self.server.auth.verify_access_token(password)
        except Exception:
            return None
        return Login(ROLE_USER, username) if claims.get("usr") == username else None

    # -- topic rights --------------------------------------------------------

    def _patterns(self, login: Login, action: str) -> list[str]:
        prefix = self.config.prefix
        if login.role == ROLE_USER:
            own = [f"{prefix}/{login.user}/#", f"{login.user}/#"]
            if action == "publish":
                return own
            return [*own, f"{self.config.discovery_prefix}/#", f"{prefix}/status"]
        own = [f"{login.user}/#"]
        topic_map = self.config.topic_maps.get(login.device or "", {})
        own.extend(topic_map.values())
        return own

    def allowed(self, login: Login, topic: str, action: str) -> bool:
        """Whether ``login`` may subscribe to / publish / receive ``topic``."""
        if login.role == ROLE_SERVER:
            return True
        if "\x00" in topic or any(p in (".", "..") for p in topic.split("/")):
            return False
        if action == "publish" and topic == f"{self.config.prefix}/status":
            return False  # only the server says whether it is up (a user named "status")
        patterns = self._patterns(login, action)
        if action == "subscribe":
            return any(_filter_within(topic, p) for p in patterns)
        if action == "receive" and topic.startswith(f"{self.config.discovery_prefix}/"):
            # One user's discovery configs are not delivered to another user.
            return self.discovery_owners.get(topic) == login.user
        return any(topic_matches(p, topic) for p in patterns)
