"""HTTPS for the listener: a self-signed certificate made on request, its fingerprint, export.

flespi can validate a stream's HTTPS target against a private CA: the certificate made here is
its own CA, so exporting it and pasting it into the stream's CA field is all the set-up needed.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_NAME = "trackmon-cert.pem"
KEY_NAME = "trackmon-key.pem"
VALID_DAYS = 825


def self_signed_paths(directory: Path) -> tuple[Path, Path]:
    """Where the self-signed certificate and key live in ``directory``."""
    return directory / CERT_NAME, directory / KEY_NAME


def make_self_signed(directory: Path, *, hosts: list[str] | None = None, regenerate: bool = False) -> tuple[Path, Path]:
    """The self-signed certificate and key, made now if missing (or if ``regenerate``).

    Names it covers: localhost, this machine's host name, 127.0.0.1, ::1 and ``hosts`` (LAN
    addresses, a tunnel host...). The key file is readable by the owner only.
    """
    cert_path, key_path = self_signed_paths(directory)
    if cert_path.exists() and key_path.exists() and not regenerate:
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in ["localhost", socket.gethostname(), "127.0.0.1", "::1", *(hosts or [])]:
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"trackmon on {socket.gethostname()}"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trackmon")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)  # its own CA
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(b"")
    key_path.chmod(0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def fingerprint(cert_path: Path) -> str:
    """SHA-256 fingerprint of a PEM certificate, as 'AB:CD:...' (what browsers and flespi show)."""
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))


def certificate_names(cert_path: Path) -> list[str]:
    """The host names and addresses a certificate is valid for."""
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in san]


def export_certificate(cert_path: Path, target: Path) -> Path:
    """Copy the certificate (never the key) to ``target``, e.g. to give flespi as a private CA."""
    shutil.copyfile(cert_path, target)
    return target
