"""The Adafruit IO photocell example as an MQTT device, written with stock paho-mqtt.

No IOTMP here: this is what a sketch written for Adafruit IO does, pointed at
our broker by changing only host, username and key. It publishes the feed
``{user}/feeds/photocell`` (a light level 0-1024) every ``interval`` seconds and
follows ``{user}/feeds/onoff`` (``ON``/``OFF``, a toggle on the dashboard side).

    iotmp sim --profile photocell --server 127.0.0.1:1883 --user demo --credential KEY
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any, Final

PROFILE_NAME: Final = "photocell"
DEFAULT_MQTT_PORT: Final = 1883


class Photocell:
    """A light sensor plus a switch on one MQTT session (paho-mqtt's network thread)."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        key: str,
        *,
        interval: float = 2.0,
        client_id: str | None = None,
        seed: int | None = None,
    ) -> None:
        import paho.mqtt.client as paho  # noqa: PLC0415 - optional (iotmp[mqtt])
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.host = host
        self.port = port
        self.user = user
        self.interval = interval
        self.onoff = False
        self.level = 512
        self.published = 0
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"photocell-{self._random.randrange(1 << 30)}",
        )
        self.client.username_pw_set(user, key)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()

    @property
    def photocell_topic(self) -> str:
        """``{user}/feeds/photocell``."""
        return f"{self.user}/feeds/photocell"

    @property
    def onoff_topic(self) -> str:
        """``{user}/feeds/onoff``."""
        return f"{self.user}/feeds/onoff"

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            return
        client.subscribe(self.onoff_topic)
        client.publish(self.onoff_topic, "ON" if self.onoff else "OFF")  # its state now
        self.connected.set()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        text = bytes(message.payload).decode("utf-8", "replace").strip().strip('"').upper()
        if text in ("ON", "1", "TRUE"):
            self.onoff = True
        elif text in ("OFF", "0", "FALSE"):
            self.onoff = False

    def sample(self, now: float) -> int:
        """Return a light level 0-1024: a slow day/night swing plus noise."""
        swing = 512 + 400 * math.sin(now / 60.0)
        noise = self._random.gauss(0, 20)
        return max(0, min(1024, round(swing + noise)))

    def start(self) -> None:
        """Connect (retrying in the background) and start the network thread."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def publish_once(self) -> None:
        """Publish one photocell reading."""
        self.level = self.sample(time.time())
        self.client.publish(self.photocell_topic, str(self.level))
        self.published += 1

    def run(self) -> None:
        """Publish until :meth:`stop` (blocking; call from a thread or the CLI)."""
        self.start()
        try:
            while not self._stop.is_set():
                if self.connected.is_set():
                    self.publish_once()
                self._stop.wait(self.interval)
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    def stop(self) -> None:
        """End :meth:`run`."""
        self._stop.set()
