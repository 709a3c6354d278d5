"""Self-signed certificates for the demo and tests (needs the ``cryptography`` package)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path


def cryptography_available() -> bool:
    """Whether certificates can be generated here."""
    try:
        import cryptography  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def make_self_signed(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    *,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = 3650,
) -> None:
    """Write a self-signed EC certificate and its key (PEM) for ``hosts``."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file = Path(key_path)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    Path(cert_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
