"""A server's TLS certificate: the user's own, or a self-signed one made on first start.

Used by the browser UI's HTTPS (browsers give the microphone only to secure pages, so a UI
opened from another machine needs HTTPS even without a real certificate) and by the
telephone's SIP over TLS. The self-signed certificate is kept in a folder of the cache dir
and reused, so an exception the user accepted once stays valid; it is made again only when
it expired or does not name the address the server now listens on.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
VALID_DAYS = 825  # the longest lifetime browsers accept for a server certificate
_RENEW_BEFORE = dt.timedelta(days=7)

SanName = x509.DNSName | x509.IPAddress


def certificate_names(host: str) -> list[str]:
    """The names a certificate for a server on ``host`` should carry."""
    names = ["localhost", "127.0.0.1", "::1"]
    if host in ("0.0.0.0", "::"):
        # Listening everywhere: name this machine, so the LAN address works too.
        names.append(socket.gethostname())
        names.extend(_local_addresses())
    else:
        names.append(host)
    return list(dict.fromkeys(n for n in names if n))


def _local_addresses() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return []
    # Link-local IPv6 addresses carry a zone ("fe80::1%eth0") that a certificate cannot name.
    return [str(info[4][0]) for info in infos if "%" not in str(info[4][0])]


def _san(name: str) -> SanName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def ensure_self_signed(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """Return (certificate, key) paths in ``directory``, creating them when needed."""
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if _still_usable(cert_path, key_path, names):
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Secretary (self-signed)"),
        x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
    ])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key is written readable by its owner only, before any byte of it is in the file.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("created a self-signed certificate for %s in %s", ", ".join(names), directory)
    return cert_path, key_path


def _still_usable(cert_path: Path, key_path: Path, names: list[str]) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - _RENEW_BEFORE < dt.datetime.now(dt.UTC):
        return False
    present = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return all(str(_san(n).value) in present for n in names)
