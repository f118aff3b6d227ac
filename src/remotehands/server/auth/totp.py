"""Two-factor sign-in: TOTP (RFC 6238) codes from an authenticator app, and recovery codes.

A user enrolls (a new secret and its ``otpauth://`` URI, for a QR code), confirms with a code
(the secret is then in force and ten recovery codes are shown, once; only their SHA-256 is
kept), and from then on logs in with a code as well. A code is taken within one 30 s step
either side of the server's clock; a recovery code works once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp

__all__ = [
    "ISSUER",
    "RECOVERY_CODES",
    "hash_recovery",
    "new_recovery_codes",
    "new_secret",
    "otpauth_uri",
    "use_recovery",
    "verify_code",
]

ISSUER = "remotehands"
RECOVERY_CODES = 10


def new_secret() -> str:
    """A new random base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def otpauth_uri(secret: str, username: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (as a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def verify_code(secret: str, code: str, at: datetime) -> bool:
    """Whether ``code`` is the TOTP of ``secret`` at ``at``, give or take one 30 s step."""
    digits = code.strip().replace(" ", "")
    if not (digits.isdigit() and len(digits) == 6):
        return False
    return bool(pyotp.TOTP(secret).verify(digits, for_time=at, valid_window=1))


def hash_recovery(code: str) -> str:
    """The stored form of a recovery code (dashes and case ignored)."""
    normal = code.strip().replace("-", "").lower()
    return hashlib.sha256(normal.encode()).hexdigest()


def new_recovery_codes() -> tuple[list[str], list[str]]:
    """Fresh recovery codes (``xxxxx-xxxxx``, shown once) and their stored hashes."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(5)
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes, [hash_recovery(code) for code in codes]


def use_recovery(stored: list[str] | None, code: str) -> list[str] | None:
    """The stored hashes without ``code``'s when it is one of them (it is used up), else None."""
    if not stored:
        return None
    digest = hash_recovery(code)
    for index, candidate in enumerate(stored):
        if hmac.compare_digest(candidate, digest):
            return stored[:index] + stored[index + 1 :]
    return None
