"""Fixtures for the session / transport / device tests: TLS material and a
minimal IOTMP server made from :mod:`iotmp.protocol.session`.

Everything listens on 127.0.0.1 with ephemeral ports (Home Assistant's pytest
plugin blocks other sockets) and is closed at teardown, so no task or timer
outlives a test.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from session_helpers import LOCALHOST, LOOP_FACTORIES_HOOK, IotmpTestServer, RawPeer

from iotmp.protocol.speedups import CodecImpl, compiled_impl, python_impl

# --------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 / localhost and its key."""

    certfile: str
    keyfile: str


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Generate a throw-away self-signed certificate (no network, no files shipped)."""
    directory: Path = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOCALHOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsFiles(str(certfile), str(keyfile))


@pytest.fixture
def server_ssl(tls_files: TlsFiles) -> ssl.SSLContext:
    """Server-side TLS context with the test certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.certfile, tls_files.keyfile)
    return context


@pytest.fixture
def client_ssl(tls_files: TlsFiles) -> ssl.SSLContext:
    """Client-side TLS context that trusts (and verifies) the test certificate."""
    context = ssl.create_default_context(cafile=tls_files.certfile)
    return context


# ------------------------------------------------------------ test server


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[IotmpTestServer]]]:
    """Factory: ``server = await make_server(kind="tcp", ...)``; stopped at teardown."""
    servers: list[IotmpTestServer] = []

    async def factory(**kwargs: Any) -> IotmpTestServer:
        server = IotmpTestServer(**kwargs)
        servers.append(server)
        return await server.start()

    yield factory
    for server in servers:
        await server.stop()


# ---------------------------------------------------------- raw peers


@pytest.fixture
async def raw_peers() -> AsyncIterator[Callable[[int], Awaitable[RawPeer]]]:
    """Factory of raw TCP clients, closed at teardown."""
    peers: list[RawPeer] = []

    async def factory(port: int) -> RawPeer:
        peer = await RawPeer.connect(port)
        peers.append(peer)
        return peer

    yield factory
    for peer in peers:
        await peer.close()


# ------------------------------------------------------- codec implementations


def _impl_param(name: str) -> Any:
    return pytest.param(name, id=name)


@pytest.fixture(scope="session", params=[_impl_param("python"), _impl_param("compiled")])
def impl(request: pytest.FixtureRequest) -> CodecImpl:
    """Each codec implementation in turn: the pure-Python reference, then the compiled one.

    The compiled one is skipped where it was not built, unless
    IOTMP_REQUIRE_EXTENSIONS=1 (scripts/test sets it where a compiler exists).
    """
    if request.param == "python":
        return python_impl()
    compiled = compiled_impl()
    if compiled is None:
        if os.environ.get("IOTMP_REQUIRE_EXTENSIONS", "") not in ("", "0"):
            pytest.fail("the compiled codec is not installed (IOTMP_REQUIRE_EXTENSIONS=1)")
        pytest.skip("the compiled codec is not installed")
    return compiled


# ------------------------------------------------------------- event loops


_DEFAULT_LOOP: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop
}


if LOOP_FACTORIES_HOOK:

    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
        """A test module's ``LOOP_FACTORIES`` (name -> loop factory): its tests run once per loop.

        Other modules get asyncio's loop, as without this hook (the hook may not
        return None, and one factory adds nothing to the test ids). Without the hook
        (older pytest-asyncio) every module runs on asyncio's loop only.
        """
        return getattr(getattr(item, "module", None), "LOOP_FACTORIES", _DEFAULT_LOOP)
