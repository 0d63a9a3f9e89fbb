"""The API's HTTPS: a certificate authority and a server certificate made in the state directory on the first
start, or certificate files an administrator gives.

kubectl sends a bearer token over HTTPS only, and every client (dirctl, kubectl, the shell server, the
controller) checks the server's certificate against a CA it is given, never by skipping the check. So the API
makes its own small CA on a first start (`STATE_DIR/tls/ca.crt`, its key `ca.key` mode 0600) and signs a
server certificate with it for `127.0.0.1`, `::1`, `localhost`, this host's name and the names in
DIRECTOR_API_TLS_NAMES. The server certificate is made again, by the same CA, when those names change or
it has less than 30 days left; the CA stays, so what clients trust stays too.

Settings:
  DIRECTOR_API_TLS            on (default) or off: plain HTTP, only on a loopback address (behind a proxy)
  DIRECTOR_API_TLS_CERT/_KEY  a certificate (chain) and its key to serve instead of the ones made here
  DIRECTOR_API_TLS_NAMES      more host names or addresses, comma-separated, for the certificate made here
  DIRECTOR_API_CA             the CA that clients on this machine trust (default: tls/ca.crt made here)
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from specs.config import API_TLS_ENV, CA_CERT_FILE, TLS_DIR

CERT_ENV = "DIRECTOR_API_TLS_CERT"
KEY_ENV = "DIRECTOR_API_TLS_KEY"
NAMES_ENV = "DIRECTOR_API_TLS_NAMES"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
CA_LIFETIME = timedelta(days=3650)
SERVER_LIFETIME = timedelta(days=365)
# A server certificate with less left than this is made anew at the next start.
RENEW_BEFORE = timedelta(days=30)
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


class TlsError(Exception):
    """The TLS settings or files cannot be used; the message names the setting or file and what to do."""


@dataclass(frozen=True)
class ServerTls:
    """What uvicorn serves: a certificate (chain) and its key."""

    certfile: Path
    keyfile: Path


def tls_dir(state_dir: Path) -> Path:
    return state_dir / TLS_DIR


def wanted_names() -> list[str]:
    """The names the certificate made here is for: loopback, this host's name, DIRECTOR_API_TLS_NAMES."""
    names = [*LOOPBACK_NAMES, socket.gethostname().lower()]
    names += [name.strip().lower() for name in os.environ.get(NAMES_ENV, "").split(",") if name.strip()]
    return list(dict.fromkeys(name for name in names if name))


def server_tls(state_dir: Path, bind: str) -> ServerTls | None:
    """The certificate to serve, per the settings; None: plain HTTP (DIRECTOR_API_TLS=off, loopback only)."""
    setting = os.environ.get(API_TLS_ENV, "on").strip().lower() or "on"
    if setting not in ("on", "off"):
        raise TlsError(f"{API_TLS_ENV} must be on or off, got {setting!r}")
    if setting == "off":
        if not _is_loopback(bind):
            raise TlsError(
                f"{API_TLS_ENV}=off serves plain HTTP, which is allowed only on a loopback address (behind a "
                f"proxy that terminates TLS), not on {bind}: bind 127.0.0.1 or turn TLS on"
            )
        return None
    given_cert, given_key = os.environ.get(CERT_ENV, "").strip(), os.environ.get(KEY_ENV, "").strip()
    if given_cert or given_key:
        if not (given_cert and given_key):
            raise TlsError(f"give both {CERT_ENV} and {KEY_ENV} (a certificate and its key), or neither")
        for setting_name, given in ((CERT_ENV, given_cert), (KEY_ENV, given_key)):
            if not Path(given).is_file():
                raise TlsError(f"{setting_name}: {given} is not a readable file")
        return ServerTls(Path(given_cert), Path(given_key))
    return ensure_certificates(state_dir, wanted_names())


def _is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One process at a time makes or renews the files: API servers started together share them."""
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_certificates(state_dir: Path, names: list[str]) -> ServerTls:
    """The CA (made once) and a server certificate for `names` (made again when they change or it ages)."""
    directory = tls_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        ca_cert, ca_key = _ensure_ca(directory)
        cert_path, key_path = directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE
        if not _server_current(cert_path, key_path, names):
            _issue_server(directory, ca_cert, ca_key, names)
    return ServerTls(cert_path, key_path)


def _write(path: Path, data: bytes, mode: int) -> None:
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(partial, mode)
    os.replace(partial, path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _read_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as error:
        problem = str(error)
    else:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return certificate, key
        problem = "the key is not the elliptic-curve key Director makes"
    raise TlsError(
        f"{cert_path} or {key_path} cannot be used ({problem}): remove both to make a new CA, then give "
        "clients the new ca.crt"
    )


def _ensure_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        return _read_ca(cert_path, key_path)
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Director"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Director API CA ({socket.gethostname()})"),
        ]
    )
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return certificate, key


def _alternative_names(names: list[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _server_current(cert_path: Path, key_path: Path, names: list[str]) -> bool:

    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        present = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    if certificate.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE:
        return False
    return set(present) == set(_alternative_names(names))


def _issue_server(
    directory: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[str]
) -> None:

    key = _new_key()
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Director"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Director API"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(min(now + SERVER_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_alternative_names(names)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / SERVER_KEY_FILE, _key_pem(key), 0o600)
    _write(directory / SERVER_CERT_FILE, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
