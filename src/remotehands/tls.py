"""TLS for the fleet server and the agent: certificates, fingerprints, pinning.

- :func:`self_signed` makes a certificate and key (ECDSA P-256, with the given host names and
  addresses) in a directory, 0600 in a 0700 directory, and reuses them on later starts, so a
  certificate an agent pinned stays valid across restarts;
- :func:`load` reads an operator's certificate and key and refuses an expired certificate or a
  key that does not belong to it;
- :func:`fingerprint` names a certificate as ``sha256:HEX`` (of its DER form), the form
  ``--server-fingerprint`` takes;
- :func:`pinned_context` is a client context that accepts exactly the pinned certificate
  (self-signed ones included), as MeshCentral's agents pin their server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from remotehands.errors import AuthError, ConfigError
from remotehands.private import private_dir, write_private

__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "TlsFiles",
    "fingerprint",
    "load",
    "normalise_fingerprint",
    "pinned_context",
    "self_signed",
]

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
VALID_DAYS = 3650
"""A self-signed certificate is pinned, not trusted through a CA: it may live long."""


@dataclass(frozen=True)
class TlsFiles:
    """A certificate and its key on disk, and the certificate's fingerprint."""

    cert: Path
    key: Path
    fingerprint: str
    """``sha256:HEX`` of the certificate (DER)."""
    public_key_pin: str
    """``sha256//BASE64`` of the certificate's public key, as ``curl --pinnedpubkey`` takes it."""

    def uvicorn_options(self) -> dict[str, Any]:
        """uvicorn's options to serve HTTPS with these files."""
        return {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}


def fingerprint(cert_der: bytes) -> str:
    """``sha256:HEX`` of a DER certificate."""
    return "sha256:" + hashlib.sha256(cert_der).hexdigest()


def normalise_fingerprint(text: str) -> str:
    """``sha256:HEX`` (lower case, colons between bytes dropped); :class:`ConfigError` when it
    is not a SHA-256 fingerprint."""
    algorithm, sep, digest = text.strip().partition(":")
    digest = digest.replace(":", "").lower()
    if not sep or algorithm.lower() != "sha256" or len(digest) != 64:
        raise ConfigError(
            f"{text!r} is not a certificate fingerprint: give sha256:HEX (64 hex digits), as "
            "the server's enrollment install command shows it"
        )
    try:
        bytes.fromhex(digest)
    except ValueError as err:
        raise ConfigError(f"{text!r} is not a certificate fingerprint: bad hex digits") from err
    return "sha256:" + digest


def _check(cert_pem: bytes, key_pem: bytes | None, where: str) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as err:
        raise ConfigError(f"{where}: not a PEM certificate ({err})") from err
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        raise ConfigError(
            f"{where}: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}; renew it "
            "(a self-signed one: remove it, a new one is made at the next start)"
        )
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: the key is not an unencrypted PEM key ({err})") from err
        if key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise ConfigError(f"{where}: the key does not belong to the certificate")
    return cert


def load(cert: Path, key: Path) -> TlsFiles:
    """The operator's certificate and key, checked (readable, unexpired, matching)."""
    try:
        cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read the TLS certificate or key: {err}") from err
    return _files(cert, key, _check(cert_pem, key_pem, str(cert)))


def _files(cert_path: Path, key_path: Path, cert: x509.Certificate) -> TlsFiles:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return TlsFiles(cert_path, key_path, fingerprint(cert.public_bytes(serialization.Encoding.DER)),
                    pin)  # fmt: skip


def self_signed(directory: Path, names: Sequence[str] = ()) -> TlsFiles:
    """The self-signed certificate kept in ``directory``, made on first use for ``names``
    (host names or IP addresses; ``localhost`` and ``127.0.0.1`` always)."""
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if cert_path.exists() and key_path.exists():
        return load(cert_path, key_path)
    private_dir(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    wanted = ["localhost", "127.0.0.1", *names]
    alt: list[x509.GeneralName] = []
    wildcard = ("0.0.0.0", "::")  # noqa: S104  # listen-anywhere addresses name no host
    for name in dict.fromkeys(n for n in wanted if n and n not in wildcard):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "remotehands")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))  # fmt: skip
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return _files(cert_path, key_path, cert)


PROBE_TIMEOUT_S = 10.0
"""How long fetching a server's certificate may take."""


async def pinned_context(host: str, port: int, pin: str) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate whose fingerprint is ``pin``.

    The server's certificate is fetched first (without checks) and compared with the pin; a
    certificate whose SHA-256 matches is the pinned one, so the context then trusts it alone
    (as its only trust anchor, host names not checked: the pin names the server). A connection
    made with the context is refused during the TLS handshake by any other certificate, before
    a credential is sent on it. Raises :class:`AuthError` when the server shows another
    certificate, :class:`OSError`/:class:`TimeoutError` when it cannot be reached.
    """
    probe = ssl.create_default_context()
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    async with asyncio.timeout(PROBE_TIMEOUT_S):
        _, writer = await asyncio.open_connection(host, port, ssl=probe)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    server = f"{host}:{port}"
    if der is None:
        raise AuthError(f"{server} showed no TLS certificate, but its fingerprint is pinned")
    seen = fingerprint(der)
    if not hmac.compare_digest(seen, pin):
        raise AuthError(
            f"{server} showed the certificate {seen}, not the pinned {pin}: refusing to link "
            "(if the server's certificate changed, update --server-fingerprint)"
        )
    context = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(der))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the anchor
    return context
