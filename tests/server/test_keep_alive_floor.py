"""Keep-alive: a device that declares no interval is kept for at least 75 s of silence."""

from __future__ import annotations

import asyncio

import pytest
from server_helpers import WAIT, RawPeer, ReferenceDevice

from iotmp.protocol.message import Message, MessageType
from iotmp.server.testing import TestDevice, TestServer, run_test_server


async def _session_timeout(server: TestServer, device: str) -> float:
    await server.wait_device_connected(device, WAIT)
    link = server.device(device).link
    assert link is not None
    return link.session.keep_alive_timeout


async def test_reference_device_survives_a_short_keep_alive_setting() -> None:
    async with run_test_server(
        devices=[TestDevice("refdev1", credential="s3cret")], keep_alive=0.5
    ) as server:
        ref = ReferenceDevice(await RawPeer.open(server.tcp_port))
        try:
            await ref.login()  # the recorded CONNECT: no PARAMETERS, so no ka
            ref.start()
            assert await _session_timeout(server, "refdev1") == pytest.approx(60 * 1.15 + 6)
            await asyncio.sleep(1.5)  # silent for 3 x keep_alive x 1.15
            assert server.devices_online() == ["refdev1"]
        finally:
            await ref.close()


@pytest.mark.parametrize(("configured", "expected"), [(30.0, 75.0), (120.0, 138.0)])
async def test_undeclared_interval_timeout_is_the_larger_rule(
    configured: float, expected: float
) -> None:
    async with run_test_server(
        devices=[TestDevice("refdev1", credential="s3cret")], keep_alive=configured
    ) as server:
        ref = ReferenceDevice(await RawPeer.open(server.tcp_port))
        try:
            await ref.login()
            ref.start()
            assert await _session_timeout(server, "refdev1") == pytest.approx(expected)
        finally:
            await ref.close()


async def test_declared_interval_is_honoured() -> None:
    async with run_test_server(
        devices=[TestDevice("refdev1", credential="s3cret")], keep_alive=60
    ) as server:
        peer = await RawPeer.open(server.tcp_port)
        try:
            await peer.send(
                Message.build(
                    MessageType.CONNECT,
                    stream_id=1,
                    parameters={"ka": 0.4},
                    payload=["alice", "refdev1", "s3cret"],
                )
            )
            assert (await peer.receive()).type == MessageType.OK
            describe = await peer.receive()
            await peer.send(Message.build(MessageType.OK, stream_id=describe.stream_id))
            assert await _session_timeout(server, "refdev1") == pytest.approx(0.46)
            assert await peer.wait_eof(limit=3)  # dropped after 0.46 s of silence
        finally:
            await peer.close()
