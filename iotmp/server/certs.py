"""Self-signed certificates for the demo and tests (needs the ``cryptography`` package)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from .demo_files import write_private_file


class CertificateError(ValueError):
    """A certificate or key file cannot be used; the message names it."""


def check_certificate(cert_path: str, key_path: str | None) -> None:
    """Load a certificate and its key as the TLS listener will; CertificateError if unusable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise CertificateError(
            f"unusable TLS certificate/key {cert_path} / {key_path or cert_path}: {reason}"
        ) from exc


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
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_file(Path(key_path), key_pem)  # atomic, 0600, never through a symlink
    write_private_file(Path(cert_path), cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
