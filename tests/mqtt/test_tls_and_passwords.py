"""The built-in broker's TLS listener; an external broker that wants a password."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import aiomqtt
import pytest
from mqtt_helpers import Mosquitto, have_mosquitto

from iotmp.server.certs import cryptography_available, make_self_signed
from iotmp.server.mqtt.settings import MqttConfig
from iotmp.server.testing import run_test_server
from iotmp.sim.testing import run_virtual_devices


@pytest.mark.skipif(not cryptography_available(), reason="needs cryptography (iotmp[tls])")
async def test_builtin_broker_tls_listener(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed(cert, key)
    mqtt = MqttConfig(host="127.0.0.1", port=0, tls_port=0)
    async with run_test_server(tls_cert=str(cert), tls_key=str(key), mqtt=mqtt) as server:
        service = server.server.mqtt
        assert service is not None and service.tls_port
        await service.wait_connected()
        context = ssl.create_default_context(cafile=str(cert))
        async with aiomqtt.Client(
            "127.0.0.1",
            service.tls_port,
            username=server.user,
            password=server.password,
            tls_context=context,
        ) as client:
            await client.subscribe("iotmp/status")
            message = await anext(aiter(client.messages))
            assert message.payload == b"online"


def password_file(path: Path, user: str, password: str) -> Path:
    """A mosquitto password file made by the Debian tool."""
    path.write_text("", encoding="utf-8")
    subprocess.run(
        ["mosquitto_passwd", "-b", str(path), user, password],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)
    return path


@pytest.mark.skipif(not have_mosquitto(), reason="mosquitto not installed")
async def test_external_broker_with_password(tmp_path: Path) -> None:
    passwords = await asyncio.to_thread(password_file, tmp_path / "passwd", "iotmp", "s3cret")
    broker = Mosquitto(tmp_path, password_file=passwords)
    broker.start()
    try:
        mqtt = MqttConfig(
            broker="external",
            host="127.0.0.1",
            port=broker.port,
            username="iotmp",
            password="s3cret",
        )
        async with run_test_server(mqtt=mqtt) as server:
            assert server.server.mqtt is not None
            await server.server.mqtt.wait_connected()
            async with run_virtual_devices(server, profiles=["counter"]) as fleet:
                await fleet.wait_connected()
                async with aiomqtt.Client(
                    "127.0.0.1", broker.port, username="iotmp", password="s3cret"
                ) as client:
                    await client.subscribe("iotmp/alice/counter/status")
                    message = await anext(aiter(client.messages))
                    assert message.payload == b"online"
        # A wrong password is refused by mosquitto: the server keeps retrying, no crash.
        wrong = MqttConfig(
            broker="external", host="127.0.0.1", port=broker.port, username="iotmp", password="x"
        )
        async with run_test_server(mqtt=wrong) as server:
            assert server.server.mqtt is not None
            with pytest.raises(TimeoutError):
                await server.server.mqtt.wait_connected(1.0)
    finally:
        broker.stop()
